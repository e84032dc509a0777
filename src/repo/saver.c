/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "saver.h"

#include <pthread.h>
#include <string.h>

#include "../base/log.h"
#include "../base/queue.h"
#include "pack.h"

/* Write an index file once this many blobs are stored but not yet indexed (restic: 50,000). */
#define INDEX_FLUSH_BLOBS 50000
/* ... or when the oldest unindexed pack is this old, so an interrupted run can resume. */
#define INDEX_FLUSH_SECONDS 300.0
#define MAX_UPLOADERS 8

struct HfSaver {
        HfRepo *repo;
        HfIndex *index;
        size_t pack_size;

        pthread_mutex_t lock; /* index, packers, pool, unindexed, stats, error */
        HfPacker *packers[2]; /* one open pack per blob type */
        HfPacker *pool[2 * MAX_UPLOADERS + 4];
        size_t n_pool;
        pthread_cond_t pool_cond;

        /* Entries of stored packs not yet written to an index file, grouped by pack. */
        HfIndexEntry *unindexed;
        size_t n_unindexed, cap_unindexed;
        double unindexed_since;

        HfQueue *uploads;
        pthread_t threads[MAX_UPLOADERS];
        unsigned n_threads;
        unsigned in_flight; /* packs handed to uploaders and not yet done */
        pthread_cond_t idle;

        HfSaverStats stats;
        int error;
};

static void set_error(HfSaver *s, int r)
{
        if (s->error == 0)
                s->error = r;
}

/* Takes a packer from the pool (or makes one). Called with the lock held. */
static int get_packer(HfSaver *s, HfPacker **ret)
{
        if (s->n_pool > 0) {
                *ret = s->pool[--s->n_pool];
                return 0;
        }
        return hf_packer_new(ret);
}

static void put_packer(HfSaver *s, HfPacker *p)
{
        hf_packer_reset(p);
        if (s->n_pool < ELEMENTSOF(s->pool))
                s->pool[s->n_pool++] = p;
        else
                hf_packer_free(p);
}

/* Writes the collected index entries as one index file. Called with the lock held. */
static int write_index_locked(HfSaver *s)
{
        _cleanup_buf_ HfBuf json = HF_BUF_INIT(SIZE_MAX / 2);
        int r;

        if (s->n_unindexed == 0)
                return 0;
        r = hf_index_format(s->index, s->unindexed, s->n_unindexed, &json);
        if (r < 0)
                return r;
        r = hf_repo_save_file(s->repo, HF_FILE_INDEX, json.data, json.len, NULL);
        if (r < 0)
                return r;
        s->n_unindexed = 0;
        s->stats.index_files++;
        return 0;
}

static int add_unindexed(HfSaver *s, const HfIndexEntry *e)
{
        if (s->n_unindexed == s->cap_unindexed) {
                size_t ncap = s->cap_unindexed ? s->cap_unindexed * 2 : 1024;
                HfIndexEntry *nv = realloc(s->unindexed, ncap * sizeof(*nv));
                if (!nv)
                        return -ENOMEM;
                s->unindexed = nv;
                s->cap_unindexed = ncap;
        }
        if (s->n_unindexed == 0)
                s->unindexed_since = hf_now_mono();
        s->unindexed[s->n_unindexed++] = *e;
        return 0;
}

/* Finishes and stores one pack, then records its blobs in the index. */
static int upload_pack(HfSaver *s, HfCipher *cipher, HfPacker *p)
{
        const HfPackBlob *blobs = hf_packer_blobs(p);
        size_t n = hf_packer_count(p), len;
        const uint8_t *data;
        char hex[HF_ID_HEX_LEN + 1];
        HfId id;
        uint32_t pos;
        int r;

        r = hf_packer_finish(p, cipher, &id);
        if (r < 0)
                return r;
        data = hf_packer_data(p, &len);
        hf_id_hex(&id, hex);
        r = hf_backend_save(hf_repo_backend(s->repo), HF_FILE_PACK, hex, data, len);
        if (r == -EEXIST)
                r = 0; /* the same pack bytes were stored before: fine */
        if (r < 0)
                return log_error_errno(r, "%s/data/%.2s/%s: cannot write pack: %m",
                                       hf_repo_backend(s->repo)->location, hex, hex);

        pthread_mutex_lock(&s->lock);
        r = hf_index_add_pack(s->index, &id, &pos);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                HfIndexEntry e = {
                        .id = blobs[i].id,
                        .pack = pos,
                        .offset = blobs[i].offset,
                        .length = blobs[i].length,
                        .uncompressed_length = blobs[i].uncompressed_length,
                        .type = blobs[i].type,
                };
                r = hf_index_update(s->index, &e);
                if (r >= 0)
                        r = add_unindexed(s, &e);
        }
        if (r >= 0) {
                s->stats.packs++;
                if (s->n_unindexed >= INDEX_FLUSH_BLOBS ||
                    hf_now_mono() - s->unindexed_since > INDEX_FLUSH_SECONDS)
                        r = write_index_locked(s);
        }
        pthread_mutex_unlock(&s->lock);
        return r;
}

static void *uploader(void *arg)
{
        HfSaver *s = arg;
        HfCipher *cipher = NULL;
        int r = hf_cipher_new(hf_repo_key(s->repo), &cipher);

        for (;;) {
                HfPacker *p = hf_queue_pop(s->uploads);
                if (!p)
                        break;
                if (r >= 0)
                        r = upload_pack(s, cipher, p);
                pthread_mutex_lock(&s->lock);
                if (r < 0)
                        set_error(s, r);
                put_packer(s, p);
                s->in_flight--;
                pthread_cond_broadcast(&s->idle);
                pthread_mutex_unlock(&s->lock);
        }
        hf_cipher_free(cipher);
        return NULL;
}

int hf_saver_new(HfRepo *r, unsigned uploaders, HfSaver **ret)
{
        HfSaver *s;
        int k;

        if (!hf_repo_index(r))
                return -EINVAL;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->repo = r;
        s->index = hf_repo_index(r);
        s->pack_size = hf_repo_pack_size(r);
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->pool_cond, NULL);
        pthread_cond_init(&s->idle, NULL);
        if (uploaders == 0)
                uploaders = 2;
        uploaders = MIN(uploaders, (unsigned)MAX_UPLOADERS);
        /* A short queue bounds memory: each queued pack holds up to pack_size bytes. */
        k = hf_queue_new(uploaders, &s->uploads);
        if (k < 0) {
                hf_saver_free(s);
                return k;
        }
        for (unsigned i = 0; i < uploaders; i++) {
                if (pthread_create(&s->threads[i], NULL, uploader, s) != 0) {
                        hf_saver_free(s);
                        return -EAGAIN;
                }
                s->n_threads++;
        }
        *ret = s;
        return 0;
}

HfSaver *hf_saver_free(HfSaver *s)
{
        if (!s)
                return NULL;
        if (s->uploads)
                hf_queue_close(s->uploads);
        for (unsigned i = 0; i < s->n_threads; i++)
                pthread_join(s->threads[i], NULL);
        hf_queue_free(s->uploads);
        for (int t = 0; t < 2; t++)
                hf_packer_free(s->packers[t]);
        for (size_t i = 0; i < s->n_pool; i++)
                hf_packer_free(s->pool[i]);
        free(s->unindexed);
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->pool_cond);
        pthread_cond_destroy(&s->idle);
        free(s);
        return NULL;
}

bool hf_saver_known(HfSaver *s, HfBlobType t, const HfId *id)
{
        bool known;

        pthread_mutex_lock(&s->lock);
        known = hf_index_lookup(s->index, t, id) != NULL;
        pthread_mutex_unlock(&s->lock);
        return known;
}

/* Hands a full packer to the uploaders. Called with the lock held; drops it while queueing. */
static int ship_locked(HfSaver *s, HfBlobType t)
{
        HfPacker *p = s->packers[t];
        int r;

        s->packers[t] = NULL;
        s->in_flight++;
        pthread_mutex_unlock(&s->lock);
        r = hf_queue_push(s->uploads, p);
        pthread_mutex_lock(&s->lock);
        if (r < 0) {
                s->in_flight--;
                put_packer(s, p);
        }
        return r;
}

int hf_saver_save(HfSaver *s, HfCodec *codec, HfBlobType t, const HfId *id, const void *data,
                  size_t n, HfBuf *scratch, bool *ret_new)
{
        HfIndexEntry pending = {
                .id = *id, .pack = HF_INDEX_PACK_PENDING, .length = 1, .type = (uint8_t)t
        };
        uint32_t ulen;
        int r;

        pthread_mutex_lock(&s->lock);
        r = s->error;
        if (r == 0)
                r = hf_index_add(s->index, &pending);
        pthread_mutex_unlock(&s->lock);
        if (r <= 0) {
                /* 0: known already (stored before, or being stored by another thread). */
                if (ret_new)
                        *ret_new = false;
                return r;
        }

        /* Tree blobs are always compressed in v2; data blobs as configured. */
        r = hf_codec_seal(
                codec, data, n,
                hf_repo_version(s->repo) >= 2 &&
                        (t == HF_BLOB_TREE || hf_repo_compression(s->repo) != HF_COMPRESSION_OFF),
                scratch, &ulen);

        pthread_mutex_lock(&s->lock);
        if (r >= 0 && !s->packers[t])
                r = get_packer(s, &s->packers[t]);
        if (r >= 0) {
                r = hf_packer_add(s->packers[t], t, id, scratch->data, scratch->len, ulen);
                if (r == -E2BIG) {
                        /* Header full: ship this pack and start another. */
                        r = ship_locked(s, t);
                        /* Another thread may have opened a new pack while unlocked. */
                        if (r >= 0 && !s->packers[t])
                                r = get_packer(s, &s->packers[t]);
                        if (r >= 0)
                                r = hf_packer_add(s->packers[t], t, id, scratch->data, scratch->len,
                                                  ulen);
                }
        }
        if (r < 0) {
                (void)hf_index_remove(s->index, t, id);
                set_error(s, r);
                pthread_mutex_unlock(&s->lock);
                return r;
        }
        if (t == HF_BLOB_DATA)
                s->stats.data_blobs++;
        else
                s->stats.tree_blobs++;
        s->stats.data_added += n;
        s->stats.data_added_packed += scratch->len;
        if (hf_packer_size(s->packers[t]) >= s->pack_size)
                r = ship_locked(s, t);
        pthread_mutex_unlock(&s->lock);
        if (ret_new)
                *ret_new = true;
        return r;
}

int hf_saver_finish(HfSaver *s)
{
        int r = 0;

        pthread_mutex_lock(&s->lock);
        for (int t = 0; t < 2 && r >= 0; t++)
                if (s->packers[t] && hf_packer_count(s->packers[t]) > 0)
                        r = ship_locked(s, (HfBlobType)t);
        while (s->in_flight > 0)
                pthread_cond_wait(&s->idle, &s->lock);
        if (r >= 0)
                r = s->error;
        if (r >= 0)
                r = write_index_locked(s);
        pthread_mutex_unlock(&s->lock);
        return r;
}

int hf_saver_abort(HfSaver *s)
{
        int r;

        pthread_mutex_lock(&s->lock);
        for (int t = 0; t < 2; t++)
                if (s->packers[t]) {
                        /* Blobs only in this pack are forgotten: they were never stored. */
                        const HfPackBlob *b = hf_packer_blobs(s->packers[t]);
                        for (size_t i = 0; i < hf_packer_count(s->packers[t]); i++)
                                (void)hf_index_remove(s->index, (HfBlobType)b[i].type, &b[i].id);
                        put_packer(s, s->packers[t]);
                        s->packers[t] = NULL;
                }
        while (s->in_flight > 0)
                pthread_cond_wait(&s->idle, &s->lock);
        r = write_index_locked(s);
        pthread_mutex_unlock(&s->lock);
        return r;
}

void hf_saver_stats(HfSaver *s, HfSaverStats *ret)
{
        pthread_mutex_lock(&s->lock);
        *ret = s->stats;
        pthread_mutex_unlock(&s->lock);
}
