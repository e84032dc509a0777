/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * HTTP basic authentication against an htpasswd file (htpasswd -B: bcrypt), checked with
 * libcrypt's crypt_rn. bcrypt costs milliseconds on purpose and restic sends the credentials
 * with every request, so a success is remembered for a few minutes as a keyed hash of
 * user and password (never the password itself).
 */
#include <crypt.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "../base/log.h"
#include "../crypto/crypto.h"
#include "internal.h"

#define HTPASSWD_MAX (1 << 20)
#define USERS_MAX 10000
#define HASH_MAX 512
#define CACHE_SLOTS 256
#define CACHE_SECONDS 300.0

typedef struct User {
        char *name;
        char *hash;
} User;

struct HfHtpasswd {
        User *users;
        size_t n;
};

HfHtpasswd *hf_htpasswd_free(HfHtpasswd *h)
{
        if (!h)
                return NULL;
        for (size_t i = 0; i < h->n; i++) {
                free(h->users[i].name);
                if (h->users[i].hash)
                        explicit_bzero(h->users[i].hash, strlen(h->users[i].hash));
                free(h->users[i].hash);
        }
        free(h->users);
        free(h);
        return NULL;
}

size_t hf_htpasswd_count(const HfHtpasswd *h)
{
        return h ? h->n : 0;
}

static char *memdup_str(const char *p, size_t n)
{
        char *s = malloc(n + 1);

        if (s) {
                memcpy(s, p, n);
                s[n] = 0;
        }
        return s;
}

static bool hash_usable(const char *s, size_t n)
{
        static const char *const prefixes[] = { "$2a$", "$2b$", "$2y$", "$5$", "$6$", "$y$" };

        if (n < 8 || n > HASH_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
                        return false;
        for (size_t i = 0; i < ELEMENTSOF(prefixes); i++)
                if (strncmp(s, prefixes[i], strlen(prefixes[i])) == 0)
                        return true;
        return false;
}

int hf_htpasswd_parse(const char *text, size_t n, HfHtpasswd **ret, unsigned *ret_skipped)
{
        _cleanup_(hf_htpasswd_freep) HfHtpasswd *h = calloc(1, sizeof(*h));
        unsigned skipped = 0, lineno = 0;
        size_t cap = 0;

        if (!h)
                return -ENOMEM;
        if (n > HTPASSWD_MAX)
                return -E2BIG;
        for (size_t i = 0; i < n;) {
                const char *line = text + i, *colon;
                const char *nl = memchr(line, '\n', n - i);
                size_t len = nl ? (size_t)(nl - line) : n - i, ulen, hlen;
                bool dup = false;

                i += len + (nl ? 1 : 0);
                lineno++;
                if (len && line[len - 1] == '\r')
                        len--;
                if (len == 0 || line[0] == '#')
                        continue;
                colon = memchr(line, ':', len);
                ulen = colon ? (size_t)(colon - line) : 0;
                hlen = colon ? len - ulen - 1 : 0;
                if (!colon || ulen == 0 || ulen > HF_USER_NAME_MAX || memchr(line, 0, len) ||
                    !hf_utf8_valid(line, ulen) || !hash_usable(colon + 1, hlen)) {
                        log_debug("htpasswd line %u: not \"user:hash\" with a bcrypt, SHA-crypt "
                                  "or yescrypt hash (skipped)",
                                  lineno);
                        skipped++;
                        continue;
                }
                for (size_t k = 0; k < ulen; k++)
                        if ((unsigned char)line[k] < 0x20 || line[k] == 0x7f)
                                dup = true;
                for (size_t k = 0; !dup && k < h->n; k++)
                        if (strlen(h->users[k].name) == ulen &&
                            memcmp(h->users[k].name, line, ulen) == 0)
                                dup = true;
                if (dup) {
                        log_debug("htpasswd line %u: bad or repeated user name (skipped)", lineno);
                        skipped++;
                        continue;
                }
                if (h->n == USERS_MAX)
                        return -E2BIG;
                if (h->n == cap) {
                        size_t ncap = cap ? cap * 2 : 16;
                        User *nu = realloc(h->users, ncap * sizeof(User));
                        if (!nu)
                                return -ENOMEM;
                        h->users = nu;
                        cap = ncap;
                }
                /* The lines are not NUL-terminated: copy exactly, no strndup. */
                h->users[h->n].name = memdup_str(line, ulen);
                h->users[h->n].hash = memdup_str(colon + 1, hlen);
                if (!h->users[h->n].name || !h->users[h->n].hash) {
                        h->n++;
                        return -ENOMEM;
                }
                h->n++;
        }
        if (ret_skipped)
                *ret_skipped = skipped;
        *ret = TAKE_PTR(h);
        return 0;
}

bool hf_htpasswd_check(const HfHtpasswd *h, const char *user, const char *password)
{
        /* A valid hash of a random password: unknown users cost the same time as known ones. */
        static const char dummy[] = "$2b$05$gB1H/L38bGNcy/m4g.B8UeQTqiWGMBY3XSCjsnQF6m8im84SWAlH2";
        _cleanup_free_ struct crypt_data *cd = calloc(1, sizeof(struct crypt_data));
        const char *hash = dummy, *out;
        bool known = false;
        size_t hl;

        if (!cd || !user || !password)
                return false;
        for (size_t i = 0; h && i < h->n; i++)
                if (strcmp(h->users[i].name, user) == 0) {
                        hash = h->users[i].hash;
                        known = true;
                        break;
                }
        /* crypt_rn, not crypt_r: the same function, but sanitizer runtimes intercept crypt_r
         * and call through a null pointer with libxcrypt (GCC 12). */
        out = crypt_rn(password, hash, cd, (int)sizeof(*cd));
        hl = strlen(hash);
        if (!out || out[0] == '*' || strlen(out) != hl) {
                explicit_bzero(cd, sizeof(*cd));
                return false;
        }
        bool ok = hf_memcmp_ct(out, hash, hl) == 0 && known;
        explicit_bzero(cd, sizeof(*cd));
        return ok;
}

/* ---- the file, reloadable, and the cache of recent successes ---- */

typedef struct CacheSlot {
        HfId tag; /* SHA-256(pepper || user || 0 || password) */
        double until;
} CacheSlot;

struct HfAuth {
        char *path;
        pthread_rwlock_t rw; /* users */
        HfHtpasswd *users;
        pthread_mutex_t cache_lock;
        CacheSlot cache[CACHE_SLOTS];
        uint8_t pepper[32];
};

static int load_file(const char *path, HfHtpasswd **ret)
{
        _cleanup_buf_ HfBuf b = HF_BUF_INIT(HTPASSWD_MAX);
        unsigned skipped = 0;
        int r;

        r = hf_read_file_at(AT_FDCWD, path, HTPASSWD_MAX, &b);
        if (r == -E2BIG)
                return log_error_errno(r, "%s: larger than 1 MiB: not an htpasswd file", path);
        if (r < 0)
                return log_error_errno(r, "%s: cannot read the htpasswd file: %m", path);
        r = hf_htpasswd_parse((const char *)b.data, b.len, ret, &skipped);
        if (b.data)
                explicit_bzero(b.data, b.len);
        if (r < 0)
                return log_error_errno(r, "%s: cannot parse the htpasswd file: %m", path);
        if (skipped)
                log_warning("%s: %u line(s) skipped: each line must be \"user:hash\" with a "
                            "bcrypt hash (htpasswd -B), SHA-crypt or yescrypt",
                            path, skipped);
        if (hf_htpasswd_count(*ret) == 0)
                log_warning("%s: no usable user: every request will be refused", path);
        return 0;
}

int hf_auth_new(const char *htpasswd_path, HfAuth **ret)
{
        HfAuth *a = calloc(1, sizeof(*a));
        int r;

        if (!a)
                return -ENOMEM;
        pthread_rwlock_init(&a->rw, NULL);
        pthread_mutex_init(&a->cache_lock, NULL);
        a->path = strdup(htpasswd_path);
        r = a->path ? hf_random_bytes(a->pepper, sizeof(a->pepper)) : -ENOMEM;
        if (r >= 0)
                r = load_file(a->path, &a->users);
        if (r < 0) {
                hf_auth_free(a);
                return r;
        }
        *ret = a;
        return 0;
}

HfAuth *hf_auth_free(HfAuth *a)
{
        if (!a)
                return NULL;
        hf_htpasswd_free(a->users);
        pthread_rwlock_destroy(&a->rw);
        pthread_mutex_destroy(&a->cache_lock);
        explicit_bzero(a->pepper, sizeof(a->pepper));
        free(a->path);
        free(a);
        return NULL;
}

int hf_auth_reload(HfAuth *a)
{
        HfHtpasswd *n = NULL, *old;
        int r = load_file(a->path, &n);

        if (r < 0)
                return r; /* keep serving the users we have */
        pthread_rwlock_wrlock(&a->rw);
        old = a->users;
        a->users = n;
        pthread_rwlock_unlock(&a->rw);
        pthread_mutex_lock(&a->cache_lock);
        memset(a->cache, 0, sizeof(a->cache));
        pthread_mutex_unlock(&a->cache_lock);
        hf_htpasswd_free(old);
        log_info("%s: reloaded, %zu user(s)", a->path, hf_htpasswd_count(n));
        return 0;
}

static void cache_tag(HfAuth *a, const char *user, const char *password, HfId *ret)
{
        _cleanup_(hf_sha256_freep) HfSha256 *h = NULL;

        if (hf_sha256_new(&h) < 0) {
                memset(ret, 0, sizeof(*ret));
                return;
        }
        hf_sha256_update(h, a->pepper, sizeof(a->pepper));
        hf_sha256_update(h, user, strlen(user) + 1);
        hf_sha256_update(h, password, strlen(password));
        hf_sha256_final(h, ret);
}

bool hf_auth_check(HfAuth *a, const char *user, const char *password)
{
        double now = hf_now_mono();
        size_t slot;
        HfId tag;
        bool ok;

        if (!user || !password || strlen(user) > HF_USER_NAME_MAX || strlen(password) > 4096)
                return false;
        cache_tag(a, user, password, &tag);
        if (hf_id_is_zero(&tag))
                return false;
        slot = hf_id_hash(&tag) % CACHE_SLOTS;
        pthread_mutex_lock(&a->cache_lock);
        ok = a->cache[slot].until > now && hf_memcmp_ct(&a->cache[slot].tag, &tag, 32) == 0;
        pthread_mutex_unlock(&a->cache_lock);
        if (ok)
                return true;

        pthread_rwlock_rdlock(&a->rw);
        ok = hf_htpasswd_check(a->users, user, password);
        pthread_rwlock_unlock(&a->rw);
        if (ok) {
                pthread_mutex_lock(&a->cache_lock);
                a->cache[slot] = (CacheSlot){ .tag = tag, .until = now + CACHE_SECONDS };
                pthread_mutex_unlock(&a->cache_lock);
        }
        return ok;
}
