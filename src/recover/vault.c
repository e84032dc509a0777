/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The vault as recover's last resort: the newest snapshot taken before the incident, read one
 * file at a time by walking its trees (cached) down the file's absolute path. Every blob is
 * verified by the repository layer (MAC and SHA-256) as it is loaded.
 */
#include <string.h>

#include "../base/log.h"
#include "../repo/snapshot.h"
#include "recover-internal.h"

#define TREE_CACHE 64

typedef struct CachedTree {
        HfId id;
        HfTree tree;
        bool used;
        uint64_t stamp;
} CachedTree;

struct HfVaultSrc {
        HfRepo *repo;
        HfCodec *codec;
        bool has_snap;
        bool index_loaded;
        HfSnapshot snap;
        HfSnapshot *all; /* every snapshot, oldest first */
        size_t n_all;
        CachedTree cache[TREE_CACHE];
        uint64_t clock;
};

HfVaultSrc *hf_vault_src_free(HfVaultSrc *v)
{
        if (!v)
                return NULL;
        for (size_t i = 0; i < TREE_CACHE; i++)
                if (v->cache[i].used)
                        hf_tree_done(&v->cache[i].tree);
        hf_codec_free(v->codec);
        if (v->has_snap)
                hf_snapshot_done(&v->snap);
        hf_snapshot_array_free(v->all, v->n_all);
        free(v);
        return NULL;
}

int hf_vault_src_new(HfRepo *repo, double before, HfVaultSrc **ret)
{
        _cleanup_(hf_vault_src_freep) HfVaultSrc *v = calloc(1, sizeof(*v));
        HfSnapshot *all = NULL;
        size_t n = 0;
        unsigned errors = 0;
        int r;

        if (!v)
                return -ENOMEM;
        v->repo = repo;
        r = hf_snapshot_load_all(repo, &all, &n, &errors);
        if (r < 0)
                return r;
        v->all = all;
        v->n_all = n;
        (void)hf_vault_src_pick(v, before);
        *ret = TAKE_PTR(v);
        return 0;
}

bool hf_vault_src_pick(HfVaultSrc *v, double before)
{
        /* Oldest first: the last one older than `before` wins. */
        ssize_t best = -1;
        for (size_t i = 0; i < v->n_all; i++) {
                double t = (double)v->all[i].time.sec + (double)v->all[i].time.nsec / 1e9;
                if (t < before)
                        best = (ssize_t)i;
        }
        if (best < 0)
                return v->has_snap = false;
        if (v->has_snap && hf_id_eq(&v->snap.id, &v->all[best].id))
                return true;
        if (v->has_snap)
                hf_snapshot_done(&v->snap);
        v->has_snap = false;
        /* A copy of the paths is all the lookups need beyond the IDs. */
        HfSnapshot *src = &v->all[best];
        v->snap = (HfSnapshot){ .id = src->id, .time = src->time, .tree = src->tree };
        for (size_t i = 0; i < src->n_paths; i++)
                if (hf_strv_push(&v->snap.paths, &v->snap.n_paths, src->paths[i]) < 0) {
                        hf_snapshot_done(&v->snap);
                        return false;
                }
        return v->has_snap = true;
}

bool hf_vault_src_snapshot(HfVaultSrc *v, char id8[9], double *ret_time)
{
        char hex[HF_ID_HEX_LEN + 1];

        if (!v || !v->has_snap)
                return false;
        hf_id_hex(&v->snap.id, hex);
        memcpy(id8, hex, 8);
        id8[8] = 0;
        if (ret_time)
                *ret_time = (double)v->snap.time.sec + (double)v->snap.time.nsec / 1e9;
        return true;
}

static int ensure_ready(HfVaultSrc *v)
{
        int r;

        if (!v->index_loaded) {
                r = hf_repo_load_index(v->repo, NULL);
                if (r < 0)
                        return r;
                v->index_loaded = true;
        }
        if (!v->codec) {
                r = hf_repo_new_codec(v->repo, &v->codec);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int get_tree(HfVaultSrc *v, const HfId *id, const HfTree **ret)
{
        CachedTree *victim = NULL;
        int r;

        for (size_t i = 0; i < TREE_CACHE; i++) {
                CachedTree *c = &v->cache[i];
                if (c->used && hf_id_eq(&c->id, id)) {
                        c->stamp = ++v->clock;
                        *ret = &c->tree;
                        return 0;
                }
        }
        /* A free slot, else the least recently used. */
        for (size_t i = 0; i < TREE_CACHE; i++) {
                CachedTree *c = &v->cache[i];
                if (!c->used) {
                        victim = c;
                        break;
                }
                if (!victim || c->stamp < victim->stamp)
                        victim = c;
        }
        if (victim->used) {
                hf_tree_done(&victim->tree);
                victim->used = false;
        }
        r = hf_load_tree(v->repo, v->codec, id, &victim->tree);
        if (r < 0)
                return r;
        victim->id = *id;
        victim->used = true;
        victim->stamp = ++v->clock;
        *ret = &victim->tree;
        return 0;
}

/* Walks the components of rel (no leading '/') down from the snapshot's root tree. */
static int lookup_rel(HfVaultSrc *v, const char *rel, const HfNode **ret)
{
        const HfTree *t;
        const HfNode *node = NULL;
        HfId cur = v->snap.tree;
        const char *p = rel;
        int r;

        while (*p) {
                const char *slash = strchr(p, '/');
                size_t len = slash ? (size_t)(slash - p) : strlen(p);
                if (len == 0) {
                        p++;
                        continue;
                }
                r = get_tree(v, &cur, &t);
                if (r < 0)
                        return r;
                node = hf_tree_find(t, p, len);
                if (!node)
                        return -ENOENT;
                if (!slash || !slash[1])
                        break;
                if (node->type != HF_NODE_DIR || !node->has_subtree)
                        return -ENOENT;
                cur = node->subtree;
                p = slash + 1;
        }
        if (!node)
                return -ENOENT;
        *ret = node;
        return 0;
}

/* Is the component [s, s+len) one of the components of path? */
static bool component_of(const char *path, const char *s, size_t len)
{
        for (const char *p = path; *p;) {
                while (*p == '/')
                        p++;
                const char *e = strchrnul(p, '/');
                if ((size_t)(e - p) == len && len && memcmp(p, s, len) == 0)
                        return true;
                p = e;
        }
        return false;
}

int hf_vault_src_lookup(HfVaultSrc *v, const char *path, const HfNode **ret)
{
        const char *covering = NULL;
        int r;

        if (!v || !v->has_snap || path[0] != '/')
                return -ENOENT;
        /* The snapshot must hold a tree this path is below. */
        for (size_t i = 0; i < v->snap.n_paths; i++) {
                size_t l = strlen(v->snap.paths[i]);
                if (strncmp(path, v->snap.paths[i], l) == 0 &&
                    (path[l] == '/' || !path[l] || strcmp(v->snap.paths[i], "/") == 0))
                        covering = v->snap.paths[i];
        }
        if (!covering)
                return -ENOENT;
        r = ensure_ready(v);
        if (r < 0)
                return r;
        r = lookup_rel(v, path + 1, ret);
        if (r != -ENOENT)
                return r;
        /* A backup of a relative path ("mnt/srv") stores the tree from there, as restic does,
         * while its paths are absolute: try the tails that start inside the backed-up path. */
        for (const char *p = strchr(path + 1, '/'); p && p[1]; p = strchr(p + 1, '/')) {
                const char *e = strchrnul(p + 1, '/');
                if (!component_of(covering, p + 1, (size_t)(e - p - 1)))
                        continue;
                r = lookup_rel(v, p + 1, ret);
                if (r != -ENOENT)
                        return r;
        }
        return -ENOENT;
}

int hf_vault_src_write(HfVaultSrc *v, const HfNode *n, int fd, char hex[65], uint64_t *ret_size)
{
        _cleanup_(hf_sha256_freep) HfSha256 *h = NULL;
        _cleanup_buf_ HfBuf b = HF_BUF_INIT(HF_BLOB_MAX_PLAIN);
        uint64_t off = 0;
        HfId sum;
        int r;

        if (n->type != HF_NODE_FILE)
                return -EINVAL;
        r = ensure_ready(v);
        if (r < 0)
                return r;
        r = hf_sha256_new(&h);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n->n_content; i++) {
                hf_buf_reset(&b);
                r = hf_repo_load_blob(v->repo, v->codec, HF_BLOB_DATA, &n->content[i], &b);
                if (r < 0)
                        return r;
                hf_sha256_update(h, b.data, b.len);
                r = hf_write_all_at(fd, b.data, b.len, off);
                if (r < 0)
                        return r;
                off += b.len;
        }
        if (ftruncate(fd, (off_t)off) < 0)
                return -errno;
        hf_sha256_final(h, &sum);
        hf_hex_encode(sum.b, 32, hex);
        hex[64] = 0;
        *ret_size = off;
        return 0;
}
