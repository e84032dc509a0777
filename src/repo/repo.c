/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "repo.h"

#include <jansson.h>
#include <pthread.h>
#include <pwd.h>
#include <string.h>

#include "../base/log.h"
#include "../base/util.h"
#include "pack.h"

/* Ceilings for what a vault file may decode to (attacker-written input). */
#define CONFIG_MAX (64u * 1024)
#define KEYFILE_MAX (64u * 1024)
#define FILE_MAX (1024u * 1024 * 1024)

struct HfRepo {
        HfBackend *backend;
        HfKey key;
        HfId key_id;
        int version;
        char config_id[HF_ID_HEX_LEN + 1];
        HfPol pol;
        HfBuf config_json;
        HfIndex *index;
        HfCompression compression;
        size_t pack_size;
        pthread_mutex_t codec_lock;
        HfCodec *codec; /* for the slow paths, under codec_lock */
        /* Blobs of packs no index file lists, found through the packs' headers. */
        HfIndexEntry *recovered;
        size_t n_recovered, cap_recovered;
};

HfRepo *hf_repo_free(HfRepo *r)
{
        if (!r)
                return NULL;
        hf_backend_free(r->backend);
        hf_key_wipe(&r->key);
        hf_buf_free(&r->config_json);
        hf_index_free(r->index);
        hf_codec_free(r->codec);
        free(r->recovered);
        pthread_mutex_destroy(&r->codec_lock);
        free(r);
        return NULL;
}

static HfRepo *repo_alloc(HfBackend *b)
{
        HfRepo *r = calloc(1, sizeof(*r));

        if (!r) {
                hf_backend_free(b);
                return NULL;
        }
        r->backend = b;
        r->compression = HF_COMPRESSION_AUTO;
        r->pack_size = 16u * 1024 * 1024;
        hf_buf_init(&r->config_json, CONFIG_MAX);
        pthread_mutex_init(&r->codec_lock, NULL);
        return r;
}

HfBackend *hf_repo_backend(HfRepo *r)
{
        return r->backend;
}

const HfKey *hf_repo_key(HfRepo *r)
{
        return &r->key;
}

int hf_repo_version(HfRepo *r)
{
        return r->version;
}

HfPol hf_repo_pol(HfRepo *r)
{
        return r->pol;
}

const char *hf_repo_config_id(HfRepo *r)
{
        return r->config_id;
}

const HfId *hf_repo_key_id(HfRepo *r)
{
        return &r->key_id;
}

const HfBuf *hf_repo_config_json(HfRepo *r)
{
        return &r->config_json;
}

void hf_repo_set_compression(HfRepo *r, HfCompression c)
{
        r->compression = c;
}

HfCompression hf_repo_compression(HfRepo *r)
{
        return r->version >= 2 ? r->compression : HF_COMPRESSION_OFF;
}

void hf_repo_set_pack_size(HfRepo *r, size_t bytes)
{
        r->pack_size = bytes;
}

size_t hf_repo_pack_size(HfRepo *r)
{
        return r->pack_size;
}

int hf_repo_new_codec(HfRepo *r, HfCodec **ret)
{
        return hf_codec_new(&r->key, hf_repo_compression(r), ret);
}

const char *hf_username(void)
{
        static char name[256];
        struct passwd pw, *res = NULL;
        char buf[4096];

        if (name[0])
                return name;
        if (getpwuid_r(getuid(), &pw, buf, sizeof(buf), &res) == 0 && res)
                (void)snprintf(name, sizeof(name), "%s", res->pw_name);
        return name;
}

const char *hf_hostname(void)
{
        static char name[256];

        if (!name[0] && gethostname(name, sizeof(name) - 1) < 0)
                name[0] = 0;
        return name;
}

int hf_config_format(int version, const char *id_hex, HfPol pol, HfBuf *out)
{
        return hf_buf_printf(out, "{\"version\":%d,\"id\":\"%s\",\"chunker_polynomial\":\"%llx\"}",
                             version, id_hex, (unsigned long long)pol);
}

int hf_config_parse(const void *json, size_t n, int *ret_version, char ret_id[65], HfPol *ret_pol)
{
        json_error_t jerr;
        json_t *root = json_loadb(json, n, 0, &jerr), *v, *id, *pol;
        unsigned long long p = 0;
        int r = -EPROTO;

        if (!root || !json_is_object(root))
                goto out;
        v = json_object_get(root, "version");
        id = json_object_get(root, "id");
        pol = json_object_get(root, "chunker_polynomial");
        if (!v || !json_is_integer(v) || !id || !json_is_string(id) || !pol || !json_is_string(pol))
                goto out;
        if (json_integer_value(v) != 1 && json_integer_value(v) != 2) {
                r = -EOPNOTSUPP;
                goto out;
        }
        {
                /* 32 random bytes in hex; anything else would also end up in messages. */
                HfId tmp;
                if (hf_id_parse(json_string_value(id), json_string_length(id), &tmp) < 0)
                        goto out;
        }
        {
                const char *s = json_string_value(pol);
                size_t len = json_string_length(pol);
                if (len == 0 || len > 16)
                        goto out;
                for (size_t i = 0; i < len; i++) {
                        char c = s[i];
                        int d = c >= '0' && c <= '9'   ? c - '0'
                                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                       : -1;
                        if (d < 0)
                                goto out;
                        p = p << 4 | (unsigned)d;
                }
        }
        if (!hf_pol_irreducible((HfPol)p))
                goto out;
        *ret_version = (int)json_integer_value(v);
        (void)snprintf(ret_id, 65, "%s", json_string_value(id));
        *ret_pol = (HfPol)p;
        r = 0;
out:
        json_decref(root);
        return r;
}

static int load_config(HfRepo *r)
{
        _cleanup_buf_ HfBuf enc = HF_BUF_INIT(CONFIG_MAX);
        int k;

        k = hf_backend_load(r->backend, HF_FILE_CONFIG, "config", 0, 0, &enc);
        if (k < 0)
                return log_error_errno(k, "%s/config: cannot read: %m", r->backend->location);
        hf_buf_reset(&r->config_json);
        k = hf_decrypt_buf(&r->key, enc.data, enc.len, &r->config_json);
        if (k < 0)
                return log_error_errno(k,
                                       "%s/config: does not decrypt with the vault's key "
                                       "(damaged file)",
                                       r->backend->location);
        k = hf_config_parse(r->config_json.data, r->config_json.len, &r->version, r->config_id,
                            &r->pol);
        if (k == -EOPNOTSUPP)
                return log_error_errno(k,
                                       "%s/config: unsupported vault format version (this "
                                       "holdfast reads versions 1 and 2)",
                                       r->backend->location);
        if (k < 0)
                return log_error_errno(k,
                                       "%s/config: malformed (version, id or chunker "
                                       "polynomial missing or invalid)",
                                       r->backend->location);
        return 0;
}

int hf_repo_init(HfBackend *b, const char *password, const HfRepoOptions *opts, HfRepo **ret)
{
        _cleanup_(hf_repo_freep) HfRepo *r = repo_alloc(b);
        _cleanup_buf_ HfBuf json = HF_BUF_INIT(CONFIG_MAX), keyjson = HF_BUF_INIT(KEYFILE_MAX),
                            enc = HF_BUF_INIT(CONFIG_MAX);
        HfKdfParams kdf;
        uint8_t id[32];
        int k;

        if (!r)
                return -ENOMEM;
        r->version = opts && opts->version ? opts->version : 2;
        if (r->version != 1 && r->version != 2)
                return -EINVAL;
        k = b->ops->create(b);
        if (k == -EEXIST)
                return log_error_errno(k, "%s: a vault already exists there", b->location);
        if (k < 0)
                return log_error_errno(k, "%s: cannot create the vault: %m", b->location);
        k = hf_key_generate(&r->key);
        if (k < 0)
                return k;
        k = hf_random_bytes(id, sizeof(id));
        if (k < 0)
                return k;
        hf_hex_encode(id, sizeof(id), r->config_id);
        if (opts && opts->pol)
                r->pol = opts->pol;
        else {
                k = hf_pol_random(&r->pol);
                if (k < 0)
                        return k;
        }
        if (opts && opts->kdf)
                kdf = *opts->kdf;
        else {
                k = hf_kdf_calibrate(500, &kdf);
                if (k < 0)
                        return k;
        }
        /* The key file goes first: a config nobody can decrypt would be a dead vault. */
        k = hf_keyfile_create(password, &r->key, &kdf, hf_username(), hf_hostname(), &keyjson);
        if (k < 0)
                return k;
        hf_sha256(keyjson.data, keyjson.len, &r->key_id);
        {
                char hex[HF_ID_HEX_LEN + 1];
                hf_id_hex(&r->key_id, hex);
                k = hf_backend_save(b, HF_FILE_KEY, hex, keyjson.data, keyjson.len);
                if (k < 0)
                        return log_error_errno(k, "%s/keys/%s: cannot write: %m", b->location, hex);
        }
        k = hf_config_format(r->version, r->config_id, r->pol, &json);
        if (k < 0)
                return k;
        /* config is encrypted but never compressed, in every version. */
        k = hf_encrypt_buf(&r->key, json.data, json.len, &enc);
        if (k < 0)
                return k;
        k = hf_backend_save(b, HF_FILE_CONFIG, "config", enc.data, enc.len);
        if (k < 0)
                return log_error_errno(k, "%s/config: cannot write: %m", b->location);
        k = hf_buf_append(&r->config_json, json.data, json.len);
        if (k < 0)
                return k;
        *ret = TAKE_PTR(r);
        return 0;
}

typedef struct IdList {
        HfId *ids;
        size_t n, cap;
} IdList;

static int collect_id(void *ud, const char *name, uint64_t size)
{
        IdList *l = ud;
        HfId id;

        if (hf_id_parse(name, strlen(name), &id) < 0)
                return 0;
        if (l->n == l->cap) {
                size_t ncap = l->cap ? l->cap * 2 : 64;
                HfId *nv = realloc(l->ids, ncap * sizeof(HfId));
                if (!nv)
                        return -ENOMEM;
                l->ids = nv;
                l->cap = ncap;
        }
        l->ids[l->n++] = id;
        return 0;
}

int hf_repo_list_ids(HfRepo *r, HfFileType t, HfId **ret, size_t *ret_n)
{
        IdList l = { 0 };
        int k = hf_backend_list(r->backend, t, collect_id, &l);

        if (k < 0) {
                free(l.ids);
                return k;
        }
        *ret = l.ids;
        *ret_n = l.n;
        return 0;
}

int hf_repo_open(HfBackend *b, const char *password, HfRepo **ret)
{
        _cleanup_(hf_repo_freep) HfRepo *r = repo_alloc(b);
        _cleanup_free_ HfId *keys = NULL;
        size_t n_keys = 0;
        uint64_t size;
        int k;

        if (!r)
                return -ENOMEM;
        k = hf_backend_stat(b, HF_FILE_CONFIG, "config", &size);
        if (k == -ENOENT || k == -ENOTDIR)
                return -ENOMEDIUM;
        if (k < 0)
                return log_error_errno(k, "%s/config: cannot read: %m", b->location);
        k = hf_repo_list_ids(r, HF_FILE_KEY, &keys, &n_keys);
        if (k < 0)
                return log_error_errno(k, "%s/keys: cannot list: %m", b->location);
        k = -ENOKEY;
        for (size_t i = 0; i < n_keys; i++) {
                _cleanup_buf_ HfBuf json = HF_BUF_INIT(KEYFILE_MAX), err = HF_BUF_INIT(256);
                char hex[HF_ID_HEX_LEN + 1];
                HfKeyFile kf;
                int q;

                hf_id_hex(&keys[i], hex);
                q = hf_backend_load(b, HF_FILE_KEY, hex, 0, 0, &json);
                if (q < 0) {
                        log_warning_errno(q, "%s/keys/%s: cannot read (skipped): %m", b->location,
                                          hex);
                        continue;
                }
                q = hf_keyfile_parse(json.data, json.len, &kf, &err);
                if (q < 0) {
                        log_warning("%s/keys/%s: %s (skipped)", b->location, hex,
                                    err.len ? (char *)err.data : "malformed key file");
                        continue;
                }
                q = hf_keyfile_open(&kf, password, &r->key);
                hf_keyfile_done(&kf);
                if (q == -EBADMSG)
                        continue; /* another password's key */
                if (q < 0) {
                        log_warning_errno(q, "%s/keys/%s: cannot be used (skipped): %m",
                                          b->location, hex);
                        continue;
                }
                r->key_id = keys[i];
                k = 0;
                break;
        }
        if (k < 0)
                return k;
        k = load_config(r);
        if (k < 0)
                return k;
        *ret = TAKE_PTR(r);
        return 0;
}

static int with_codec(HfRepo *r, HfCodec **ret)
{
        if (!r->codec) {
                int k = hf_codec_new(&r->key, HF_COMPRESSION_AUTO, &r->codec);
                if (k < 0)
                        return k;
        }
        *ret = r->codec;
        return 0;
}

int hf_repo_save_file(HfRepo *r, HfFileType t, const void *json, size_t n, HfId *ret_id)
{
        _cleanup_buf_ HfBuf enc = HF_BUF_INIT(FILE_MAX + 1024);
        char hex[HF_ID_HEX_LEN + 1];
        HfCodec *c;
        HfId id;
        int k;

        pthread_mutex_lock(&r->codec_lock);
        k = with_codec(r, &c);
        if (k >= 0)
                k = hf_codec_seal_file(c, r->version, json, n, &enc);
        pthread_mutex_unlock(&r->codec_lock);
        if (k < 0)
                return k;
        hf_sha256(enc.data, enc.len, &id);
        hf_id_hex(&id, hex);
        k = hf_backend_save(r->backend, t, hex, enc.data, enc.len);
        if (k < 0)
                return log_error_errno(k, "%s/%s/%s: cannot write: %m", r->backend->location,
                                       hf_file_type_dir(t), hex);
        if (ret_id)
                *ret_id = id;
        return 0;
}

int hf_repo_load_file(HfRepo *r, HfFileType t, const HfId *id, HfBuf *out, bool quiet)
{
        _cleanup_buf_ HfBuf enc = HF_BUF_INIT(FILE_MAX + 1024);
        char hex[HF_ID_HEX_LEN + 1];
        const char *what;
        HfCodec *c;
        HfId got;
        int k;

        enc.hint_huge = true; /* index files run to megabytes */
        hf_id_hex(id, hex);
        k = hf_backend_load(r->backend, t, hex, 0, 0, &enc);
        if (k < 0) {
                what = k == -ENOENT ? "does not exist" : "cannot be read";
                goto fail;
        }
        hf_sha256(enc.data, enc.len, &got);
        if (!hf_id_eq(&got, id)) {
                k = -EBADMSG;
                what = "is damaged: its content does not match its name (truncated or altered)";
                goto fail;
        }
        pthread_mutex_lock(&r->codec_lock);
        k = with_codec(r, &c);
        if (k >= 0)
                k = hf_codec_open_file(c, r->version, enc.data, enc.len, FILE_MAX, out);
        pthread_mutex_unlock(&r->codec_lock);
        if (k == -EBADMSG)
                what = "does not decrypt with the vault's key (damaged)";
        else if (k < 0)
                what = "has an unreadable encoding (not JSON or bad compression)";
        if (k >= 0)
                return 0;
fail:
        if (!quiet)
                log_error("%s/%s/%s: %s", r->backend->location, hf_file_type_dir(t), hex, what);
        return k;
}

int hf_repo_find_id(HfRepo *r, HfFileType t, const char *prefix, HfId *ret)
{
        _cleanup_free_ HfId *ids = NULL;
        size_t n = 0, plen = strlen(prefix), matches = 0;
        HfId found = { 0 };
        int k;

        if (plen == HF_ID_HEX_LEN && hf_id_parse(prefix, plen, ret) >= 0) {
                char hex[HF_ID_HEX_LEN + 1];
                hf_id_hex(ret, hex);
                k = hf_backend_stat(r->backend, t, hex, NULL);
                if (k == -ENOENT)
                        return log_error_errno(k, "no %s with ID %s in this vault",
                                               hf_file_type_name(t), prefix);
                return k;
        }
        if (plen == 0 || plen > HF_ID_HEX_LEN)
                return log_error_errno(EINVAL, "\"%s\" is not an ID or an ID prefix", prefix);
        for (size_t i = 0; i < plen; i++)
                if (!strchr("0123456789abcdefABCDEF", prefix[i]))
                        return log_error_errno(EINVAL, "\"%s\" is not an ID or an ID prefix",
                                               prefix);
        k = hf_repo_list_ids(r, t, &ids, &n);
        if (k < 0)
                return log_error_errno(k, "%s/%s: cannot list: %m", r->backend->location,
                                       hf_file_type_dir(t));
        _cleanup_buf_ HfBuf names = HF_BUF_INIT(4096);
        for (size_t i = 0; i < n; i++) {
                char hex[HF_ID_HEX_LEN + 1];
                hf_id_hex(&ids[i], hex);
                if (strncasecmp(hex, prefix, plen) == 0) {
                        if (matches++ == 0)
                                found = ids[i];
                        if (matches <= 5)
                                (void)hf_buf_printf(&names, "%s%.16s", matches > 1 ? ", " : "",
                                                    hex);
                }
        }
        if (matches == 0)
                return log_error_errno(ENOENT, "no %s ID starts with \"%s\"", hf_file_type_name(t),
                                       prefix);
        if (matches > 1)
                return log_error_errno(
                        ENOTUNIQ, "%zu %s IDs start with \"%s\" (%s%s): give more digits", matches,
                        hf_file_type_name(t), prefix, names.data ? (char *)names.data : "",
                        matches > 5 ? ", ..." : "");
        *ret = found;
        return 0;
}

HfIndex *hf_repo_index(HfRepo *r)
{
        return r->index;
}

typedef struct PackList {
        HfId *ids;
        uint64_t *sizes;
        size_t n, cap;
} PackList;

static int collect_pack(void *ud, const char *name, uint64_t size)
{
        PackList *l = ud;
        HfId id;

        if (hf_id_parse(name, strlen(name), &id) < 0)
                return 0;
        if (l->n == l->cap) {
                size_t ncap = l->cap ? l->cap * 2 : 256;
                HfId *ni = realloc(l->ids, ncap * sizeof(HfId));
                if (!ni)
                        return -ENOMEM;
                l->ids = ni;
                uint64_t *ns = realloc(l->sizes, ncap * sizeof(uint64_t));
                if (!ns)
                        return -ENOMEM;
                l->sizes = ns;
                l->cap = ncap;
        }
        l->ids[l->n] = id;
        l->sizes[l->n++] = size;
        return 0;
}

int hf_repo_list_packs(HfRepo *r, HfId **ret_ids, uint64_t **ret_sizes, size_t *ret_n)
{
        PackList l = { 0 };
        int k = hf_backend_list(r->backend, HF_FILE_PACK, collect_pack, &l);

        if (k < 0) {
                free(l.ids);
                free(l.sizes);
                return k;
        }
        *ret_ids = l.ids;
        *ret_sizes = l.sizes;
        *ret_n = l.n;
        return 0;
}

/* Adds the blobs of packs no index lists, read from their headers. */
static int index_unindexed_packs(HfRepo *r, unsigned *errors)
{
        PackList l = { 0 };
        _cleanup_(hf_cipher_freep) HfCipher *cipher = NULL;
        unsigned added = 0;
        int k;

        k = hf_cipher_new(&r->key, &cipher);
        if (k < 0)
                return k;
        k = hf_repo_list_packs(r, &l.ids, &l.sizes, &l.n);
        if (k < 0)
                goto out;
        for (size_t i = 0; i < l.n; i++) {
                _cleanup_free_ HfPackBlob *blobs = NULL;
                _cleanup_buf_ HfBuf err = HF_BUF_INIT(256);
                char hex[HF_ID_HEX_LEN + 1];
                uint32_t pos;
                size_t nb;

                if (hf_index_find_pack(r->index, &l.ids[i], &pos) >= 0)
                        continue;
                hf_id_hex(&l.ids[i], hex);
                k = hf_pack_read_header(r->backend, cipher, hex, l.sizes[i], &blobs, &nb, &err);
                if (k < 0) {
                        log_warning("%s/data/%.2s/%s: %s", r->backend->location, hex, hex,
                                    err.len ? (char *)err.data : "unreadable pack");
                        (*errors)++;
                        continue;
                }
                k = hf_index_add_pack(r->index, &l.ids[i], &pos);
                if (k < 0)
                        goto out;
                if (r->n_recovered + nb > r->cap_recovered) {
                        size_t ncap = MAX(r->cap_recovered * 2, r->n_recovered + nb + 64);
                        HfIndexEntry *nv = realloc(r->recovered, ncap * sizeof(*nv));
                        if (!nv) {
                                k = -ENOMEM;
                                goto out;
                        }
                        r->recovered = nv;
                        r->cap_recovered = ncap;
                }
                for (size_t j = 0; j < nb; j++) {
                        HfIndexEntry e = {
                                .id = blobs[j].id,
                                .pack = pos,
                                .offset = blobs[j].offset,
                                .length = blobs[j].length,
                                .uncompressed_length = blobs[j].uncompressed_length,
                                .type = blobs[j].type,
                        };
                        k = hf_index_add(r->index, &e);
                        if (k < 0)
                                goto out;
                        r->recovered[r->n_recovered++] = e;
                }
                added++;
        }
        if (added)
                log_notice("%u pack(s) that no index file lists were read from their headers",
                           added);
        k = 0;
out:
        free(l.ids);
        free(l.sizes);
        return k;
}

int hf_repo_load_index(HfRepo *r, unsigned *ret_errors)
{
        _cleanup_free_ HfId *ids = NULL;
        unsigned errors = 0;
        size_t n = 0;
        int k;

        if (!r->index) {
                k = hf_index_new(&r->index);
                if (k < 0)
                        return k;
        }
        k = hf_repo_list_ids(r, HF_FILE_INDEX, &ids, &n);
        if (k < 0)
                return log_error_errno(k, "%s/index: cannot list: %m", r->backend->location);
        /* One buffer for every file: decoded index files run to megabytes, and memory used
         * once is not faulted in again. */
        _cleanup_buf_ HfBuf json = HF_BUF_INIT(FILE_MAX);
        json.hint_huge = true;
        for (size_t i = 0; i < n; i++) {
                _cleanup_buf_ HfBuf err = HF_BUF_INIT(512);
                char hex[HF_ID_HEX_LEN + 1];

                hf_id_hex(&ids[i], hex);
                hf_buf_reset(&json);
                k = hf_repo_load_file(r, HF_FILE_INDEX, &ids[i], &json, false);
                if (k < 0) {
                        errors++;
                        continue;
                }
                k = hf_index_parse(r->index, json.data, json.len, &err);
                if (k == -EPROTO) {
                        log_error("%s/index/%s: malformed index: %s", r->backend->location, hex,
                                  (char *)err.data);
                        errors++;
                        continue;
                }
                if (k < 0)
                        return k;
        }
        /* Packs of an interrupted run, or whose index file was lost or damaged: their
         * headers still say what they hold, so nothing in them is out of reach. */
        k = index_unindexed_packs(r, &errors);
        if (k < 0)
                return k;
        if (ret_errors)
                *ret_errors = errors;
        return 0;
}

int hf_repo_save_recovered_index(HfRepo *r)
{
        _cleanup_buf_ HfBuf json = HF_BUF_INIT(FILE_MAX);
        int k;

        if (r->n_recovered == 0)
                return 0;
        /* Entries were added pack by pack, so they are grouped as the format wants. */
        k = hf_index_format(r->index, r->recovered, r->n_recovered, &json);
        if (k < 0)
                return k;
        k = hf_repo_save_file(r, HF_FILE_INDEX, json.data, json.len, NULL);
        if (k < 0)
                return k;
        log_notice("wrote an index file for %zu blobs found only in pack headers", r->n_recovered);
        r->n_recovered = 0;
        return 0;
}

int hf_repo_load_blob_unhashed(HfRepo *r, HfCodec *codec, HfBlobType t, const HfId *id, HfBuf *out)
{
        const HfIndexEntry *e = r->index ? hf_index_lookup(r->index, t, id) : NULL;
        HfBuf *raw = hf_codec_raw(codec);
        char hex[HF_ID_HEX_LEN + 1];
        size_t start = out->len;
        int k;

        if (!e || e->pack == HF_INDEX_PACK_PENDING)
                return -ENOENT;
        hf_id_hex(hf_index_pack_id(r->index, e->pack), hex);
        hf_buf_reset(raw);
        k = hf_buf_reserve(raw, e->length);
        if (k < 0)
                return k;
        k = hf_backend_read_at(r->backend, HF_FILE_PACK, hex, e->offset, e->length, raw->data);
        if (k < 0)
                return k;
        k = hf_codec_open_inplace(codec, raw->data, e->length, e->uncompressed_length, out);
        if (k < 0)
                out->len = start;
        return k;
}

void hf_repo_prefetch(HfRepo *r, uint32_t pack, uint64_t off, size_t len)
{
        char hex[HF_ID_HEX_LEN + 1];

        if (!r->index || pack == HF_INDEX_PACK_PENDING || len == 0)
                return;
        hf_id_hex(hf_index_pack_id(r->index, pack), hex);
        hf_backend_prefetch(r->backend, HF_FILE_PACK, hex, off, len);
}

int hf_repo_load_blob(HfRepo *r, HfCodec *codec, HfBlobType t, const HfId *id, HfBuf *out)
{
        size_t start = out->len;
        HfId got;
        int k;

        k = hf_repo_load_blob_unhashed(r, codec, t, id, out);
        if (k < 0)
                return k;
        hf_sha256(out->data + start, out->len - start, &got);
        if (!hf_id_eq(&got, id)) {
                out->len = start;
                return -EBADMSG;
        }
        return 0;
}
