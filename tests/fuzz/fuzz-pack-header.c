/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Decrypted pack headers (restic-format.md §4): entries of type byte, LE32 length, [LE32
 * uncompressed length,] 32-byte ID. The header is behind the pack's MAC, but anyone with the
 * vault key (every client) writes packs. Offsets are derived, so the blobs must tile the data
 * part exactly and never overflow 32 bits.
 */
#include "../../src/repo/pack.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_free_ HfPackBlob *v = NULL;
        uint64_t data_len, sum = 0;
        size_t n;

        if (hf_pack_parse_header(data, size, &v, &n, &data_len) < 0)
                return 0;
        FUZZ_CHECK(n == 0 || v);
        for (size_t i = 0; i < n; i++) {
                FUZZ_CHECK(v[i].type == HF_BLOB_DATA || v[i].type == HF_BLOB_TREE);
                FUZZ_CHECK(v[i].length >= HF_CRYPTO_OVERHEAD);
                FUZZ_CHECK(v[i].offset == sum);
                sum += v[i].length;
        }
        FUZZ_CHECK(sum == data_len && data_len <= UINT32_MAX);
        return 0;
}
