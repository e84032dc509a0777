/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hf_zstd_decompress_stream on raw bytes with small ceilings: the v2 file decoder, fed what a
 * key holder sealed. It must stop at max (+1 to see "too big"), never loop, and report
 * truncated or corrupt frames.
 *
 * Input: byte 0 selects the ceiling (bits 0-2), whether the output buffer already holds bytes
 * (bit 3) and whether the buffer itself has a small ceiling (bit 4); the rest is the stream.
 */
#include <string.h>

#include "../../src/repo/codec.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const size_t maxes[8] = { 0, 1, 63, 64, 4096, 65536, 1u << 20, 3u << 20 };
        HfBuf out;
        size_t max, prefix = 0;
        uint8_t sel;
        int r;

        if (size < 1)
                return 0;
        sel = data[0];
        data++;
        size--;
        max = maxes[sel & 7];
        hf_buf_init(&out, (sel & 0x10) ? 1000 : (8u << 20));
        if (sel & 0x08) {
                FUZZ_CHECK(hf_buf_append(&out, "prefix", 6) == 0);
                prefix = 6;
        }
        r = hf_zstd_decompress_stream(data, size, max, &out);
        FUZZ_CHECK(out.len >= prefix && out.len <= out.max);
        if (r >= 0)
                FUZZ_CHECK(out.len - prefix <= max);
        else
                FUZZ_CHECK(r == -EPROTO || r == -E2BIG || r == -ENOMEM);
        if (out.data) {
                FUZZ_CHECK(out.data[out.len] == 0);
                FUZZ_CHECK(!prefix || memcmp(out.data, "prefix", 6) == 0);
        }
        hf_buf_free(&out);
        return 0;
}
