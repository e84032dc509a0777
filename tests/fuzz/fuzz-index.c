/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Index JSON (restic-format.md §6.1) into the blob index. Besides not crashing, the hash table
 * must stay consistent with IDs an attacker chose (clustered hashes): merging the same file a
 * second time adds nothing, every entry can be looked up, and removing every entry one by one
 * (backward-shift deletion) keeps all the others findable and leaves the table empty.
 */
#include <stdbool.h>

#include "../../src/repo/index.h"
#include "fuzz.h"

static bool same_entry(const HfIndexEntry *a, const HfIndexEntry *b)
{
        return hf_id_eq(&a->id, &b->id) && a->type == b->type && a->pack == b->pack &&
               a->offset == b->offset && a->length == b->length &&
               a->uncompressed_length == b->uncompressed_length;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_(hf_index_freep) HfIndex *idx = NULL;
        _cleanup_buf_ HfBuf err = HF_BUF_INIT(4096);
        _cleanup_free_ HfIndexEntry *all = NULL;
        size_t n = 0, count;
        int r;

        if (hf_index_new(&idx) < 0)
                return 0;
        r = hf_index_parse(idx, data, size, &err);
        if (r < 0) {
                /* A malformed file leaves a sentence for the user. */
                FUZZ_CHECK(r != -EPROTO || err.len > 0);
                return 0;
        }
        count = hf_index_count(idx);
        FUZZ_CHECK(hf_index_parse(idx, data, size, NULL) == 0);
        FUZZ_CHECK(hf_index_count(idx) == count);

        if (hf_index_sorted_by_pack(idx, &all, &n) < 0)
                return 0;
        FUZZ_CHECK(n == count);
        for (size_t i = 0; i < n; i++) {
                const HfIndexEntry *e = hf_index_lookup(idx, all[i].type, &all[i].id);
                FUZZ_CHECK(e && same_entry(e, &all[i]));
                FUZZ_CHECK(hf_index_pack_id(idx, e->pack) != NULL);
                FUZZ_CHECK(e->length >= HF_CRYPTO_OVERHEAD);
                if (i > 0)
                        FUZZ_CHECK(all[i - 1].pack < all[i].pack ||
                                   (all[i - 1].pack == all[i].pack &&
                                    all[i - 1].offset <= all[i].offset));
        }
        for (size_t i = 0; i < n; i++) {
                FUZZ_CHECK(hf_index_remove(idx, all[i].type, &all[i].id) == 0);
                FUZZ_CHECK(hf_index_lookup(idx, all[i].type, &all[i].id) == NULL);
                /* Removal must not lose neighbours in the probe chain (all checked when few). */
                for (size_t j = n <= 64 ? i + 1 : n - 1; i + 1 < n && j < n; j++)
                        FUZZ_CHECK(hf_index_lookup(idx, all[j].type, &all[j].id));
        }
        FUZZ_CHECK(hf_index_count(idx) == 0);
        return 0;
}
