/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The blob saver: deduplicates blobs against the vault's index, packs new ones (data and tree
 * blobs in separate packs, as v2 requires), uploads finished packs on background threads, and
 * writes index files for packs that are safely stored. Order on storage: a pack, then the
 * index file naming it; the caller writes the snapshot only after hf_saver_finish().
 *
 * hf_saver_save() is thread safe: the expensive part (compression and encryption) runs on the
 * calling thread, so callers parallelise by calling from several workers.
 */

#include "repo.h"

typedef struct HfSaverStats {
        uint64_t data_blobs, tree_blobs; /* new blobs stored */
        uint64_t data_added;             /* plaintext bytes of new blobs */
        uint64_t data_added_packed;      /* bytes they take in packs */
        uint64_t packs, index_files;
} HfSaverStats;

typedef struct HfSaver HfSaver;

/* The repo's index must be loaded. uploaders: background upload threads (0 = default). */
int hf_saver_new(HfRepo *r, unsigned uploaders, HfSaver **ret);
/* Dry run: everything is encoded and counted, nothing is written. */
void hf_saver_set_dry_run(HfSaver *s, bool dry_run);
/* Stops threads; does not flush (call hf_saver_finish first to keep the work). */
HfSaver *hf_saver_free(HfSaver *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(HfSaver *, hf_saver_free);

/*
 * Stores one blob unless the vault (or this run) already has it. id must be the SHA-256 of
 * data. scratch is the caller's per-thread buffer for the encrypted blob. *ret_new (may be
 * NULL) tells whether it was new. Fails with the first upload error once one happened.
 */
int hf_saver_save(HfSaver *s, HfCodec *codec, HfBlobType t, const HfId *id, const void *data,
                  size_t n, HfBuf *scratch, bool *ret_new);
/* True when the vault or this run already has the blob. */
bool hf_saver_known(HfSaver *s, HfBlobType t, const HfId *id);

/* Flushes partial packs, waits for every upload, writes the remaining index entries. */
int hf_saver_finish(HfSaver *s);
/*
 * After a failure: drops the open packs, waits for uploads under way, and indexes the packs
 * that were stored, so the next run reuses them. Returns the index write's result.
 */
int hf_saver_abort(HfSaver *s);
void hf_saver_stats(HfSaver *s, HfSaverStats *ret);
