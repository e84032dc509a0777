/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "../base/log.h"
#include "../crypto/crypto.h"
#include "../repo/lock.h"
#include "cli.h"

/* Unpacked files (snapshots, indexes, locks) are JSON; ceilings as the repository layer's. */
#define JSON_MAX (1024u * 1024 * 1024)
#define KEYFILE_MAX (64u * 1024)
/* Packs are copied to stdout in slices of this size, so a big pack is never held whole. */
#define PACK_SLICE (4u * 1024 * 1024)

static int write_out(const void *p, size_t n)
{
        if (n && fwrite(p, 1, n, stdout) != n)
                return log_error_errno(errno_or_eio(), "cannot write the output: %m");
        return 0;
}

/* JSON documents end with a newline on a terminal and in files alike. */
static int write_json(const HfBuf *b)
{
        int r = write_out(b->data, b->len);

        if (r >= 0 && (b->len == 0 || b->data[b->len - 1] != '\n'))
                r = write_out("\n", 1);
        return r;
}

static int cat_file(HfRepo *repo, HfFileType t, const char *what)
{
        _cleanup_buf_ HfBuf json = HF_BUF_INIT(JSON_MAX);
        HfId id;
        int r;

        if (t == HF_FILE_SNAPSHOT && strcmp(what, "latest") == 0) {
                HfSnapshot s = { 0 };
                r = hf_snapshot_find(repo, what, NULL, &s);
                if (r < 0)
                        return r;
                id = s.id;
                hf_snapshot_done(&s);
        } else {
                r = hf_repo_find_id(repo, t, what, &id);
                if (r < 0)
                        return r;
        }
        r = hf_repo_load_file(repo, t, &id, &json, false);
        if (r < 0)
                return r;
        return write_json(&json);
}

/* Key files are plain JSON: printed byte for byte as stored. */
static int cat_key(HfRepo *repo, const char *what)
{
        _cleanup_buf_ HfBuf raw = HF_BUF_INIT(KEYFILE_MAX);
        char hex[HF_ID_HEX_LEN + 1];
        HfId id;
        int r;

        r = hf_repo_find_id(repo, HF_FILE_KEY, what, &id);
        if (r < 0)
                return r;
        hf_id_hex(&id, hex);
        r = hf_backend_load(hf_repo_backend(repo), HF_FILE_KEY, hex, 0, 0, &raw);
        if (r < 0)
                return log_error_errno(r, "%s/keys/%s: cannot read: %m",
                                       hf_repo_backend(repo)->location, hex);
        return write_json(&raw);
}

static int cat_masterkey(HfRepo *repo)
{
        HfBuf json = HF_BUF_INIT(4096);
        int r;

        r = hf_masterkey_format(hf_repo_key(repo), &json);
        if (r >= 0)
                r = write_json(&json);
        if (json.data)
                explicit_bzero(json.data, json.cap);
        hf_buf_free(&json);
        return r;
}

/* The raw pack file, streamed; a hash that does not match the name is worth a warning. */
static int cat_pack(HfRepo *repo, const char *what)
{
        HfBackend *b = hf_repo_backend(repo);
        _cleanup_(hf_sha256_freep) HfSha256 *sha = NULL;
        _cleanup_buf_ HfBuf slice = HF_BUF_INIT(PACK_SLICE);
        char hex[HF_ID_HEX_LEN + 1];
        uint64_t size, off;
        HfId id, got;
        int r;

        r = hf_repo_find_id(repo, HF_FILE_PACK, what, &id);
        if (r < 0)
                return r;
        hf_id_hex(&id, hex);
        r = hf_backend_stat(b, HF_FILE_PACK, hex, &size);
        if (r < 0)
                return log_error_errno(r, "%s/data/%.2s/%s: cannot read: %m", b->location, hex,
                                       hex);
        r = hf_sha256_new(&sha);
        if (r < 0)
                return r;
        hf_sha256_init(sha);
        for (off = 0; off < size; off += slice.len) {
                hf_buf_reset(&slice);
                r = hf_backend_load(b, HF_FILE_PACK, hex, off, (size_t)MIN(size - off, PACK_SLICE),
                                    &slice);
                if (r < 0)
                        return log_error_errno(r, "%s/data/%.2s/%s: cannot read: %m", b->location,
                                               hex, hex);
                hf_sha256_update(sha, slice.data, slice.len);
                r = write_out(slice.data, slice.len);
                if (r < 0)
                        return r;
        }
        hf_sha256_final(sha, &got);
        if (!hf_id_eq(&got, &id))
                log_warning("%s/data/%.2s/%s: the content does not hash to the file's name "
                            "(damaged pack)",
                            b->location, hex, hex);
        return 0;
}

typedef struct BlobMatch {
        const char *prefix;
        size_t plen;
        bool trees_only;
        HfId id;
        HfBlobType type;
        size_t matches; /* distinct IDs */
} BlobMatch;

static int match_blob(void *ud, const HfIndexEntry *e)
{
        BlobMatch *m = ud;
        char hex[HF_ID_HEX_LEN + 1];

        if (m->trees_only && e->type != HF_BLOB_TREE)
                return 0;
        hf_id_hex(&e->id, hex);
        if (strncasecmp(hex, m->prefix, m->plen) != 0)
                return 0;
        if (m->matches > 0 && hf_id_eq(&m->id, &e->id)) {
                /* The same ID as a data and a tree blob: data first, as restic does. */
                if (e->type == HF_BLOB_DATA)
                        m->type = HF_BLOB_DATA;
                return 0;
        }
        m->matches++;
        m->id = e->id;
        m->type = (HfBlobType)e->type;
        return 0;
}

/* A blob ID or unique prefix of one, looked up in the index. */
static int find_blob(HfRepo *repo, const char *what, bool trees_only, HfBlobType *ret_type,
                     HfId *ret_id)
{
        const HfIndex *idx = hf_repo_index(repo);
        const char *kind = trees_only ? "tree" : "blob";
        BlobMatch m = { .prefix = what, .plen = strlen(what), .trees_only = trees_only };
        int r;

        if (m.plen == 0 || m.plen > HF_ID_HEX_LEN ||
            strspn(what, "0123456789abcdefABCDEF") != m.plen)
                return log_error_errno(EINVAL, "\"%s\" is not a %s ID or an ID prefix", what, kind);
        if (m.plen == HF_ID_HEX_LEN) {
                r = hf_id_parse(what, m.plen, &m.id);
                if (r < 0)
                        return r;
                if (!trees_only && hf_index_lookup(idx, HF_BLOB_DATA, &m.id))
                        m.type = HF_BLOB_DATA;
                else if (hf_index_lookup(idx, HF_BLOB_TREE, &m.id))
                        m.type = HF_BLOB_TREE;
                else
                        return log_error_errno(ENOENT, "no %s with ID %s in the index", kind, what);
                m.matches = 1;
        } else {
                r = hf_index_foreach(idx, match_blob, &m);
                if (r < 0)
                        return r;
        }
        if (m.matches == 0)
                return log_error_errno(ENOENT, "no %s ID in the index starts with \"%s\"", kind,
                                       what);
        if (m.matches > 1)
                return log_error_errno(ENOTUNIQ,
                                       "%zu %s IDs in the index start with \"%s\": give more "
                                       "digits",
                                       m.matches, kind, what);
        *ret_type = m.type;
        *ret_id = m.id;
        return 0;
}

static int cat_blob(HfRepo *repo, const char *what, bool trees_only)
{
        _cleanup_(hf_codec_freep) HfCodec *codec = NULL;
        _cleanup_buf_ HfBuf plain = HF_BUF_INIT(HF_BLOB_MAX_PLAIN);
        char hex[HF_ID_HEX_LEN + 1];
        HfBlobType t = HF_BLOB_DATA;
        HfId id;
        int r;

        r = hf_repo_load_index(repo, NULL);
        if (r < 0)
                return r;
        r = find_blob(repo, what, trees_only, &t, &id);
        if (r < 0)
                return r;
        r = hf_repo_new_codec(repo, &codec);
        if (r < 0)
                return r;
        hf_id_hex(&id, hex);
        r = hf_repo_load_blob(repo, codec, t, &id, &plain);
        if (r == -EBADMSG)
                return log_error_errno(r, "%s blob %s is damaged (MAC or hash mismatch)",
                                       hf_blob_type_name(t), hex);
        if (r == -EPROTO)
                return log_error_errno(r, "%s blob %s does not decompress (damaged)",
                                       hf_blob_type_name(t), hex);
        if (r < 0)
                return log_error_errno(r, "%s blob %s cannot be read: %m", hf_blob_type_name(t),
                                       hex);
        return write_out(plain.data, plain.len);
}

static const struct {
        const char *name;
        bool needs_id;
        bool lock; /* reads data that prune may be removing */
} kinds[] = {
        { "config", false, false }, { "masterkey", false, false }, { "key", true, false },
        { "lock", true, false },    { "snapshot", true, true },    { "index", true, true },
        { "blob", true, true },     { "tree", true, true },        { "pack", true, true },
};

static int run(CliContext *ctx, int argc, char **argv)
{
        _cleanup_(hf_repo_freep) HfRepo *repo = NULL;
        _cleanup_(hf_lock_releasep) HfLock *lock = NULL;
        const char *what = NULL;
        size_t k;
        int r;

        if (argc < 1)
                return cli_usage_error("cat needs an object type: config, masterkey, snapshot, "
                                       "index, key, lock, blob, tree or pack");
        for (k = 0; k < ELEMENTSOF(kinds); k++)
                if (strcmp(argv[0], kinds[k].name) == 0)
                        break;
        if (k == ELEMENTSOF(kinds))
                return cli_usage_error("unknown object type \"%s\" (config, masterkey, snapshot, "
                                       "index, key, lock, blob, tree or pack)",
                                       argv[0]);
        if (kinds[k].needs_id && argc != 2)
                return cli_usage_error("cat %s needs one ID (or a unique prefix)", argv[0]);
        if (!kinds[k].needs_id && argc != 1)
                return cli_usage_error("cat %s takes no ID", argv[0]);
        what = argc > 1 ? argv[1] : NULL;
        if (kinds[k].needs_id && !what)
                return EXIT_USAGE; /* checked above; keeps the ID handlers' input non-NULL */

        r = cli_open_repo(ctx, &repo);
        if (r != EXIT_OK)
                return r;
        if (kinds[k].lock && !ctx->no_lock && hf_lock_acquire(repo, false, &lock) < 0)
                return EXIT_FAILED;

        if (strcmp(argv[0], "config") == 0)
                r = write_json(hf_repo_config_json(repo));
        else if (strcmp(argv[0], "masterkey") == 0)
                r = cat_masterkey(repo);
        else if (!what)
                r = -EINVAL;
        else if (strcmp(argv[0], "key") == 0)
                r = cat_key(repo, what);
        else if (strcmp(argv[0], "lock") == 0)
                r = cat_file(repo, HF_FILE_LOCK, what);
        else if (strcmp(argv[0], "snapshot") == 0)
                r = cat_file(repo, HF_FILE_SNAPSHOT, what);
        else if (strcmp(argv[0], "index") == 0)
                r = cat_file(repo, HF_FILE_INDEX, what);
        else if (strcmp(argv[0], "pack") == 0)
                r = cat_pack(repo, what);
        else
                r = cat_blob(repo, what, strcmp(argv[0], "tree") == 0);
        if (r >= 0 && fflush(stdout) != 0)
                r = log_error_errno(errno_or_eio(), "cannot write the output: %m");
        return cli_exit_code(r);
}

const CliCommand cmd_cat = {
        .name = "cat",
        .usage = "config|masterkey|snapshot ID|index ID|key ID|lock ID|blob ID|tree ID|pack ID",
        .summary = "print a vault object (for debugging)",
        .details =
                "config, snapshot, index and lock print the decrypted JSON as stored; key prints "
                "the key file as stored (it is not encrypted as a whole); blob and tree print "
                "the decoded plaintext of a data or tree blob found through the index; pack "
                "copies the raw pack file (encrypted) to stdout.\n"
                "IDs may be unique prefixes; snapshot also accepts \"latest\".\n"
                "masterkey prints the vault's master key in the clear. Anyone who has it can "
                "read and forge everything in the vault, with or without a password, and "
                "removing keys does not revoke it. Do not store or share that output.\n"
                "snapshot, index, blob, tree and pack take a non-exclusive lock (unless "
                "--no-lock); config, masterkey, key and lock take none, so a locked vault can "
                "still be inspected.",
        .run = run,
};
