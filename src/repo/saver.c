/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Packs are built in place in a backend temp file, not in memory: a blob's bytes go straight
 * to their reserved offset with pwrite() from the worker that encoded them, so several workers
 * fill one pack at once and memory does not grow with the pack size. When a pack is full and
 * its last writer is done, an uploader appends the encrypted header, hashes the file to get
 * its name, and commits it; then its blobs enter the index.
 */
#include "saver.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "../base/log.h"
#include "../base/queue.h"
#include "pack.h"

/* Write an index file once this many blobs are stored but not yet indexed (restic: 50,000). */
#define INDEX_FLUSH_BLOBS 50000
/* ... or when the oldest unindexed pack is this old, so an interrupted run can resume. */
#define INDEX_FLUSH_SECONDS 120.0
#define MAX_UPLOADERS 8
#define HASH_BLOCK (1u << 20)

typedef struct OpenPack {
        int fd;
        HfBlobType type;
        uint64_t size; /* bytes reserved so far */
        HfPackBlob *blobs;
        size_t n_blobs, cap_blobs;
        size_t header_plain;
        unsigned writers; /* reservations not yet written */
        bool full;        /* takes no more blobs */
        int error;
} OpenPack;

struct HfSaver {
        HfRepo *repo;
        HfIndex *index;
        size_t pack_size;

        pthread_mutex_t lock; /* everything below */
        OpenPack *current[2]; /* the pack taking blobs, per blob type */

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
        bool dry_run;
        atomic_bool reported; /* a pack write failure was reported */
};

static void set_error(HfSaver *s, int r)
{
        if (s->error == 0)
                s->error = r;
}

static void pack_free(HfSaver *s, OpenPack *p)
{
        if (!p)
                return;
        if (p->fd >= 0)
                hf_backend_temp_abort(hf_repo_backend(s->repo), HF_FILE_PACK, p->fd);
        free(p->blobs);
        free(p);
}

static int pack_new(HfSaver *s, HfBlobType t, OpenPack **ret)
{
        OpenPack *p = calloc(1, sizeof(*p));
        int r;

        if (!p)
                return -ENOMEM;
        p->type = t;
        r = hf_backend_temp_open(hf_repo_backend(s->repo), HF_FILE_PACK, &p->fd);
        if (r < 0) {
                free(p);
                return log_error_errno(r, "%s/data: cannot create a pack file: %m",
                                       hf_repo_backend(s->repo)->location);
        }
        *ret = p;
        return 0;
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

/* Appends the header, names the pack by its hash, commits it, indexes its blobs. */
static int finish_pack(HfSaver *s, HfCipher *cipher, OpenPack *p, uint8_t *block)
{
        _cleanup_buf_ HfBuf tail = HF_BUF_INIT(HF_PACK_HEADER_MAX + 64);
        _cleanup_(hf_sha256_freep) HfSha256 *sha = NULL;
        char hex[HF_ID_HEX_LEN + 1];
        uint64_t off, total;
        HfId id;
        uint32_t pos;
        int r;

        r = hf_pack_encode_header(p->blobs, p->n_blobs, cipher, &tail);
        if (r >= 0)
                r = hf_write_all_at(p->fd, tail.data, tail.len, p->size);
        if (r >= 0)
                r = hf_sha256_new(&sha);
        if (r < 0)
                goto fail;
        total = p->size + tail.len;
        /* The bytes were written by several threads: hash them back from the page cache. */
        for (off = 0; off < p->size;) {
                size_t n = (size_t)MIN((uint64_t)HASH_BLOCK, p->size - off);
                r = hf_pread_all(p->fd, block, n, off);
                if (r < 0)
                        goto fail;
                hf_sha256_update(sha, block, n);
                off += n;
        }
        hf_sha256_update(sha, tail.data, tail.len);
        hf_sha256_final(sha, &id);
        hf_id_hex(&id, hex);
        r = hf_backend_temp_commit(hf_repo_backend(s->repo), HF_FILE_PACK, p->fd, hex);
        p->fd = -1; /* committed or not, the fd is gone */
        if (r < 0) {
                /* Only the first failure is worth a sentence; the rest are its echoes. */
                if (!atomic_exchange(&s->reported, true))
                        log_error_errno(r, "%s/data/%.2s/%s: cannot write pack: %m",
                                        hf_repo_backend(s->repo)->location, hex, hex);
                return r;
        }

        pthread_mutex_lock(&s->lock);
        r = hf_index_add_pack(s->index, &id, &pos);
        for (size_t i = 0; r >= 0 && i < p->n_blobs; i++) {
                HfIndexEntry e = {
                        .id = p->blobs[i].id,
                        .pack = pos,
                        .offset = p->blobs[i].offset,
                        .length = p->blobs[i].length,
                        .uncompressed_length = p->blobs[i].uncompressed_length,
                        .type = p->blobs[i].type,
                };
                r = hf_index_update(s->index, &e);
                if (r >= 0)
                        r = add_unindexed(s, &e);
        }
        if (r >= 0) {
                s->stats.packs++;
                s->stats.data_added_packed += total - p->size; /* the header */
                if (s->n_unindexed >= INDEX_FLUSH_BLOBS ||
                    hf_now_mono() - s->unindexed_since > INDEX_FLUSH_SECONDS)
                        r = write_index_locked(s);
        }
        pthread_mutex_unlock(&s->lock);
        return r;
fail:
        return log_error_errno(r, "%s/data: cannot finish a pack: %m",
                               hf_repo_backend(s->repo)->location);
}

static void *uploader(void *arg)
{
        HfSaver *s = arg;
        HfCipher *cipher = NULL;
        uint8_t *block = malloc(HASH_BLOCK);
        int r = block ? hf_cipher_new(hf_repo_key(s->repo), &cipher) : -ENOMEM;

        for (;;) {
                OpenPack *p = hf_queue_pop(s->uploads);
                int k = r;

                if (!p)
                        break;
                if (k >= 0)
                        k = p->error;
                if (k >= 0)
                        k = finish_pack(s, cipher, p, block);
                pthread_mutex_lock(&s->lock);
                if (k < 0) {
                        set_error(s, k);
                        /* Its blobs were never stored: forget them. */
                        for (size_t i = 0; i < p->n_blobs; i++)
                                (void)hf_index_remove(s->index, (HfBlobType)p->blobs[i].type,
                                                      &p->blobs[i].id);
                }
                pthread_mutex_unlock(&s->lock);
                /* Release a failed pack's space before anyone waiting writes an index (a full
                 * disk needs that room). */
                pack_free(s, p);
                pthread_mutex_lock(&s->lock);
                s->in_flight--;
                pthread_cond_broadcast(&s->idle);
                pthread_mutex_unlock(&s->lock);
        }
        hf_cipher_free(cipher);
        free(block);
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
        pthread_cond_init(&s->idle, NULL);
        if (uploaders == 0)
                uploaders = 2;
        uploaders = MIN(uploaders, (unsigned)MAX_UPLOADERS);
        k = hf_queue_new(uploaders * 2, &s->uploads);
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
                pack_free(s, s->current[t]);
        free(s->unindexed);
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->idle);
        free(s);
        return NULL;
}

void hf_saver_set_dry_run(HfSaver *s, bool dry_run)
{
        s->dry_run = dry_run;
}

bool hf_saver_known(HfSaver *s, HfBlobType t, const HfId *id)
{
        bool known;

        pthread_mutex_lock(&s->lock);
        known = hf_index_lookup(s->index, t, id) != NULL;
        pthread_mutex_unlock(&s->lock);
        return known;
}

/* Hands a pack to the uploaders (called without the lock; may wait for room). */
static int ship(HfSaver *s, OpenPack *p)
{
        int r = hf_queue_push(s->uploads, p);

        if (r < 0) {
                pthread_mutex_lock(&s->lock);
                s->in_flight--;
                set_error(s, r);
                pthread_cond_broadcast(&s->idle);
                pthread_mutex_unlock(&s->lock);
                pack_free(s, p);
        }
        return r;
}

/*
 * Reserves room for one blob in the current pack of its type (opening one when needed).
 * Called with the lock held. A pack that is full after this blob stops taking others.
 */
static int reserve(HfSaver *s, HfBlobType t, const HfId *id, size_t len, uint32_t ulen,
                   OpenPack **ret_pack, uint64_t *ret_off, OpenPack **ret_ship)
{
        size_t entry = hf_pack_entry_size(ulen);
        OpenPack *p = s->current[t];
        int r;

        *ret_ship = NULL;
        if (p && (p->header_plain + entry + HF_CRYPTO_OVERHEAD > HF_PACK_HEADER_MAX ||
                  p->size + len > UINT32_MAX)) {
                /* Header full: close this pack, start another. */
                p->full = true;
                s->current[t] = NULL;
                if (p->writers == 0) {
                        s->in_flight++;
                        *ret_ship = p;
                }
                p = NULL;
        }
        if (!p) {
                r = pack_new(s, t, &p);
                if (r < 0)
                        return r;
                s->current[t] = p;
        }
        if (p->n_blobs == p->cap_blobs) {
                size_t ncap = p->cap_blobs ? p->cap_blobs * 2 : 64;
                HfPackBlob *nv = realloc(p->blobs, ncap * sizeof(*nv));
                if (!nv)
                        return -ENOMEM;
                p->blobs = nv;
                p->cap_blobs = ncap;
        }
        p->blobs[p->n_blobs++] = (HfPackBlob){
                .id = *id,
                .type = (uint8_t)t,
                .offset = (uint32_t)p->size,
                .length = (uint32_t)len,
                .uncompressed_length = ulen,
        };
        p->header_plain += entry;
        *ret_off = p->size;
        p->size += len;
        p->writers++;
        if (p->size >= s->pack_size) {
                p->full = true;
                s->current[t] = NULL;
        }
        *ret_pack = p;
        return 0;
}

int hf_saver_save(HfSaver *s, HfCodec *codec, HfBlobType t, const HfId *id, const void *data,
                  size_t n, HfBuf *scratch, bool *ret_new)
{
        HfIndexEntry pending = {
                .id = *id, .pack = HF_INDEX_PACK_PENDING, .length = 1, .type = (uint8_t)t
        };
        OpenPack *p = NULL, *to_ship = NULL, *done = NULL;
        uint64_t off = 0;
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

        if (r >= 0 && s->dry_run) {
                /* Counted as if stored; the pending entry keeps later copies deduplicated. */
                pthread_mutex_lock(&s->lock);
                if (t == HF_BLOB_DATA)
                        s->stats.data_blobs++;
                else
                        s->stats.tree_blobs++;
                s->stats.data_added += n;
                s->stats.data_added_packed += scratch->len;
                pthread_mutex_unlock(&s->lock);
                if (ret_new)
                        *ret_new = true;
                return 0;
        }
        pthread_mutex_lock(&s->lock);
        if (r >= 0)
                r = reserve(s, t, id, scratch->len, ulen, &p, &off, &to_ship);
        if (r < 0) {
                (void)hf_index_remove(s->index, t, id);
                set_error(s, r);
        }
        pthread_mutex_unlock(&s->lock);
        if (to_ship)
                (void)ship(s, to_ship);
        if (r < 0)
                return r;

        /* The copy into the pack happens outside any lock: offsets are reserved. */
        r = hf_write_all_at(p->fd, scratch->data, scratch->len, off);

        pthread_mutex_lock(&s->lock);
        if (r < 0) {
                if (p->error == 0)
                        p->error = r;
                set_error(s, log_error_errno(r, "%s/data: cannot write to a pack: %m",
                                             hf_repo_backend(s->repo)->location));
        } else {
                if (t == HF_BLOB_DATA)
                        s->stats.data_blobs++;
                else
                        s->stats.tree_blobs++;
                s->stats.data_added += n;
                s->stats.data_added_packed += scratch->len;
        }
        p->writers--;
        if (p->full && p->writers == 0) {
                s->in_flight++;
                done = p;
        }
        pthread_mutex_unlock(&s->lock);
        if (done)
                (void)ship(s, done);
        if (ret_new)
                *ret_new = r >= 0;
        return r;
}

int hf_saver_finish(HfSaver *s)
{
        OpenPack *last[2] = { NULL, NULL };
        int r;

        pthread_mutex_lock(&s->lock);
        for (int t = 0; t < 2; t++) {
                OpenPack *p = s->current[t];
                if (!p)
                        continue;
                s->current[t] = NULL;
                p->full = true;
                if (p->n_blobs == 0) {
                        pack_free(s, p);
                        continue;
                }
                /* All writers are done when finish is called; a pack still written to is
                 * shipped by its last writer. */
                if (p->writers == 0) {
                        s->in_flight++;
                        last[t] = p;
                }
        }
        pthread_mutex_unlock(&s->lock);
        for (int t = 0; t < 2; t++)
                if (last[t])
                        (void)ship(s, last[t]);
        pthread_mutex_lock(&s->lock);
        while (s->in_flight > 0)
                pthread_cond_wait(&s->idle, &s->lock);
        r = s->error;
        if (r >= 0 && !s->dry_run)
                r = write_index_locked(s);
        pthread_mutex_unlock(&s->lock);
        return r;
}

int hf_saver_abort(HfSaver *s)
{
        int r;

        pthread_mutex_lock(&s->lock);
        for (int t = 0; t < 2; t++) {
                OpenPack *p = s->current[t];
                if (!p)
                        continue;
                /* Blobs only in this pack are forgotten: they were never stored. */
                for (size_t i = 0; i < p->n_blobs; i++)
                        (void)hf_index_remove(s->index, (HfBlobType)p->blobs[i].type,
                                              &p->blobs[i].id);
                s->current[t] = NULL;
                if (p->writers == 0)
                        pack_free(s, p);
                else {
                        /* Its last writer ships it; the uploader drops it for the error. */
                        p->full = true;
                        p->error = -ECANCELED;
                }
        }
        set_error(s, -ECANCELED);
        while (s->in_flight > 0)
                pthread_cond_wait(&s->idle, &s->lock);
        /* Best effort after a failure that was already reported: stay quiet if it fails too
         * (the storage is likely still unavailable). */
        hf_log_quiet(true);
        r = write_index_locked(s);
        hf_log_quiet(false);
        pthread_mutex_unlock(&s->lock);
        return r;
}

void hf_saver_stats(HfSaver *s, HfSaverStats *ret)
{
        pthread_mutex_lock(&s->lock);
        *ret = s->stats;
        pthread_mutex_unlock(&s->lock);
}
