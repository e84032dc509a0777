/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Object Lock for a new snapshot: before a backup writes its snapshot, every object the
 * snapshot needs must stay undeletable for the backend's retention period counted from the
 * snapshot's time. Objects this backup wrote already are (they carry now + period); older packs
 * that the snapshot still refers to, every index file, the keys and the config may not be, and
 * get their retention extended (hf_backend_retain). Backends without retention cost nothing.
 *
 * Which packs: the snapshot's trees are walked (each distinct tree once) and every blob is
 * looked up in the index; a pack the snapshot does not use keeps the retention it had.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "../base/log.h"
#include "vault.h"

#define RETAIN_THREADS 8

/* A set of tree IDs (open addressing, grows at half load). */
typedef struct IdSet {
        HfId *v;
        bool *used;
        size_t cap, n;
} IdSet;

static void idset_free(IdSet *s)
{
        free(s->v);
        free(s->used);
}

/* 1 when added, 0 when already there. */
static int idset_add(IdSet *s, const HfId *id)
{
        size_t i;

        if (2 * (s->n + 1) > s->cap) {
                IdSet n = { .cap = s->cap ? s->cap * 2 : 1024 };
                n.v = malloc(n.cap * sizeof(HfId));
                n.used = calloc(n.cap, sizeof(bool));
                if (!n.v || !n.used) {
                        idset_free(&n);
                        return -ENOMEM;
                }
                for (size_t j = 0; j < s->cap; j++)
                        if (s->used[j])
                                (void)idset_add(&n, &s->v[j]);
                idset_free(s);
                *s = n;
        }
        for (i = hf_id_hash(id) & (s->cap - 1); s->used[i]; i = (i + 1) & (s->cap - 1))
                if (hf_id_eq(&s->v[i], id))
                        return 0;
        s->used[i] = true;
        s->v[i] = *id;
        s->n++;
        return 1;
}

typedef struct Target {
        HfFileType type;
        char name[HF_ID_HEX_LEN + 1];
} Target;

typedef struct Job {
        HfBackend *b;
        int64_t until;
        Target *v;
        size_t n;
        atomic_size_t next;
        atomic_int error;
        size_t failed_at;
} Job;

static void *worker(void *arg)
{
        Job *j = arg;

        for (;;) {
                size_t i = atomic_fetch_add(&j->next, 1);
                int r, expected = 0;

                if (i >= j->n || atomic_load(&j->error) < 0)
                        break;
                r = hf_backend_retain(j->b, j->v[i].type, j->v[i].name, j->until);
                if (r < 0 && atomic_compare_exchange_strong(&j->error, &expected, r))
                        j->failed_at = i;
        }
        return NULL;
}

typedef struct Collect {
        Target **v;
        size_t *n, *cap;
        HfFileType type;
} Collect;

static int push(Target **v, size_t *n, size_t *cap, HfFileType t, const char *name)
{
        if (*n == *cap) {
                size_t ncap = *cap ? *cap * 2 : 256;
                Target *nv = realloc(*v, ncap * sizeof(Target));
                if (!nv)
                        return -ENOMEM;
                *v = nv;
                *cap = ncap;
        }
        (*v)[*n].type = t;
        (void)snprintf((*v)[*n].name, sizeof((*v)[*n].name), "%s", name);
        (*n)++;
        return 0;
}

static int collect(void *userdata, const char *name, uint64_t size)
{
        Collect *c = userdata;

        return push(c->v, c->n, c->cap, c->type, name);
}

/* Marks the packs of every blob below tree. */
static int walk_trees(HfRepo *repo, const HfId *root, bool *used)
{
        _cleanup_(hf_codec_freep) HfCodec *codec = NULL;
        HfIndex *index = hf_repo_index(repo);
        IdSet seen = { 0 };
        HfId *stack = NULL;
        size_t n_stack = 0, cap_stack = 0;
        int r;

        r = hf_repo_new_codec(repo, &codec);
        if (r < 0)
                return r;
        r = idset_add(&seen, root);
        if (r < 0)
                goto out;
        stack = malloc(64 * sizeof(HfId));
        if (!stack) {
                r = -ENOMEM;
                goto out;
        }
        cap_stack = 64;
        stack[n_stack++] = *root;
        while (n_stack > 0) {
                HfId id = stack[--n_stack];
                const HfIndexEntry *e = hf_index_lookup(index, HF_BLOB_TREE, &id);
                HfTree tree = { 0 };

                if (!e || e->pack == HF_INDEX_PACK_PENDING) {
                        r = -ENOENT;
                        goto out;
                }
                used[e->pack] = true;
                r = hf_load_tree(repo, codec, &id, &tree);
                if (r < 0)
                        goto out;
                for (size_t i = 0; i < tree.n && r >= 0; i++) {
                        const HfNode *node = &tree.nodes[i];
                        for (size_t k = 0; k < node->n_content; k++) {
                                e = hf_index_lookup(index, HF_BLOB_DATA, &node->content[k]);
                                if (!e || e->pack == HF_INDEX_PACK_PENDING) {
                                        char hex[HF_ID_HEX_LEN + 1];
                                        hf_id_hex(&node->content[k], hex);
                                        r = log_error_errno(
                                                ENOENT, "data blob %.16s is not in the index", hex);
                                        break;
                                }
                                used[e->pack] = true;
                        }
                        if (r < 0 || !node->has_subtree)
                                continue;
                        r = idset_add(&seen, &node->subtree);
                        if (r <= 0)
                                continue;
                        if (n_stack == cap_stack) {
                                HfId *ns = realloc(stack, 2 * cap_stack * sizeof(HfId));
                                if (!ns) {
                                        r = -ENOMEM;
                                        break;
                                }
                                stack = ns;
                                cap_stack *= 2;
                        }
                        stack[n_stack++] = node->subtree;
                        r = 0;
                }
                hf_tree_done(&tree);
                if (r < 0)
                        goto out;
        }
        r = 0;
out:
        free(stack);
        idset_free(&seen);
        return r;
}

int hf_retain_snapshot(HfRepo *repo, const HfId *tree, const HfTime *time)
{
        HfBackend *b = hf_repo_backend(repo);
        int64_t period = hf_backend_retention(b);
        HfIndex *index = hf_repo_index(repo);
        _cleanup_free_ bool *used = NULL;
        _cleanup_free_ Target *v = NULL;
        size_t n = 0, cap = 0, n_packs;
        pthread_t threads[RETAIN_THREADS];
        unsigned n_threads = 0;
        double t0 = hf_now_mono();
        Job job;
        int r;

        if (period <= 0)
                return 0;
        if (!index)
                return -EINVAL;
        n_packs = hf_index_n_packs(index);
        used = calloc(n_packs ? n_packs : 1, sizeof(bool));
        if (!used)
                return -ENOMEM;
        r = walk_trees(repo, tree, used);
        if (r < 0)
                return log_error_errno(r,
                                       "%s: cannot find the packs the new snapshot needs, so "
                                       "their Object Lock retention cannot be extended: %m",
                                       b->location);
        for (size_t i = 0; i < n_packs && r >= 0; i++) {
                char hex[HF_ID_HEX_LEN + 1];
                if (!used[i])
                        continue;
                hf_id_hex(hf_index_pack_id(index, (uint32_t)i), hex);
                r = push(&v, &n, &cap, HF_FILE_PACK, hex);
        }
        for (HfFileType t = HF_FILE_KEY; t <= HF_FILE_INDEX && r >= 0; t++) {
                Collect c = { &v, &n, &cap, t };
                if (t == HF_FILE_SNAPSHOT)
                        continue; /* each snapshot keeps the retention it was written with */
                r = hf_backend_list(b, t, collect, &c);
        }
        if (r >= 0)
                r = push(&v, &n, &cap, HF_FILE_CONFIG, "config");
        if (r < 0)
                return log_error_errno(r, "%s: cannot list what the new snapshot needs: %m",
                                       b->location);

        job = (Job){ .b = b, .until = time->sec + period, .v = v, .n = n };
        for (unsigned i = 0; i < RETAIN_THREADS; i++) {
                if (pthread_create(&threads[i], NULL, worker, &job) != 0)
                        break;
                n_threads++;
        }
        if (n_threads == 0)
                worker(&job);
        for (unsigned i = 0; i < n_threads; i++)
                pthread_join(threads[i], NULL);
        r = atomic_load(&job.error);
        if (r < 0) {
                const Target *f = &v[job.failed_at];
                return log_error_errno(r,
                                       "%s/%s%s%s: cannot extend its Object Lock retention "
                                       "(the snapshot would not stay restorable for the promised "
                                       "time): %m",
                                       b->location, hf_file_type_dir(f->type),
                                       f->type == HF_FILE_CONFIG ? "" : "/",
                                       f->type == HF_FILE_CONFIG ? "" : f->name);
        }
        log_info("%s: Object Lock retention checked for %zu objects in %.1f s", b->location, n,
                 hf_now_mono() - t0);
        return 0;
}
