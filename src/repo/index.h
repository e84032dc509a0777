/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The in-memory blob index: which pack holds a blob, where, and how long it is. Open addressing
 * with fixed-size entries, so memory grows by about 64 bytes per blob, not by objects. Keys are
 * (blob ID, blob type). Pack IDs are kept once in a table and referenced by position.
 *
 * Not thread safe: callers that share an index across threads hold their own lock.
 */

#include "../base/buf.h"
#include "../base/util.h"
#include "codec.h"

typedef struct HfIndexEntry {
        HfId id;
        uint32_t pack;                /* position in the pack table */
        uint32_t offset;              /* of the encrypted blob in the pack */
        uint32_t length;              /* encrypted length, overhead included; 0 = empty slot */
        uint32_t uncompressed_length; /* 0 when stored uncompressed */
        uint8_t type;                 /* HfBlobType */
} HfIndexEntry;

/* The plaintext length of the blob of e (its uncompressed size). */
static inline uint64_t hf_index_entry_plain_len(const HfIndexEntry *e)
{
        return e->uncompressed_length ? e->uncompressed_length
                                      : (uint64_t)e->length - HF_CRYPTO_OVERHEAD;
}

/* A pack position that is not (yet) in the pack table: a blob being written. */
#define HF_INDEX_PACK_PENDING UINT32_MAX

typedef struct HfIndex HfIndex;

int hf_index_new(HfIndex **ret);
HfIndex *hf_index_free(HfIndex *idx);
DEFINE_TRIVIAL_CLEANUP_FUNC(HfIndex *, hf_index_free);

/* Adds a pack ID (or finds it) and returns its position. */
int hf_index_add_pack(HfIndex *idx, const HfId *pack, uint32_t *ret_pos);
/* -ENOENT when the pack is not known. */
int hf_index_find_pack(const HfIndex *idx, const HfId *pack, uint32_t *ret_pos);
const HfId *hf_index_pack_id(const HfIndex *idx, uint32_t pos);
size_t hf_index_n_packs(const HfIndex *idx);

/*
 * Inserts e. Returns 1 when inserted, 0 when (id, type) was already there (the first copy is
 * kept, as any copy of a blob is as good as another). -EINVAL for length 0.
 */
int hf_index_add(HfIndex *idx, const HfIndexEntry *e);
/* Makes room for n entries in all (n counts those already in), so that adding up to that many
 * does not grow the table step by step. */
int hf_index_reserve(HfIndex *idx, size_t n);
/* Replaces the location of an existing entry (a pending blob that landed in a pack). */
int hf_index_update(HfIndex *idx, const HfIndexEntry *e);
/* Removes (id, type); -ENOENT when absent. */
int hf_index_remove(HfIndex *idx, HfBlobType type, const HfId *id);
/* NULL when absent. The pointer is valid until the next insertion. */
const HfIndexEntry *hf_index_lookup(const HfIndex *idx, HfBlobType type, const HfId *id);
size_t hf_index_count(const HfIndex *idx);
/* For tests: the blob table's memory. */
const void *hf_index_table(const HfIndex *idx, size_t *ret_bytes);

/* Calls fn for every entry; a negative return stops and is returned. */
int hf_index_foreach(const HfIndex *idx, int (*fn)(void *ud, const HfIndexEntry *e), void *ud);

/*
 * Entries grouped by pack: an array of all entries sorted by (pack, offset). The caller frees
 * it. Used by check and restore to stream packs in order.
 */
int hf_index_sorted_by_pack(const HfIndex *idx, HfIndexEntry **ret, size_t *ret_n);

/*
 * Merges an index file's JSON (restic-format.md §6.1) into idx. Unknown fields are ignored;
 * every field restic requires is checked: -EPROTO with a message in err (if not NULL) for
 * malformed input.
 */
int hf_index_parse(HfIndex *idx, const void *json, size_t n, HfBuf *err);

/*
 * Writes index JSON for the given packs (restic's encoding, trailing newline). Each pack lists
 * the entries that refer to it. entries must be sorted by pack.
 */
int hf_index_format(const HfIndex *idx, const HfIndexEntry *entries, size_t n, HfBuf *out);
