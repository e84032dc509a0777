/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Strict base64 (salts, key data, xattr values, link targets). Decoding is canonical: whatever
 * decodes must encode back to exactly the input, and a failure leaves the buffer as it was.
 */
#include <string.h>

#include "../../src/base/util.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_buf_ HfBuf out = HF_BUF_INIT(SIZE_MAX / 2), enc = HF_BUF_INIT(SIZE_MAX / 2),
                            small = HF_BUF_INIT(32);
        int r;

        FUZZ_CHECK(hf_buf_append(&out, "xy", 2) == 0);
        r = hf_base64_decode(&out, (const char *)data, size);
        if (r < 0) {
                FUZZ_CHECK(out.len == 2 && memcmp(out.data, "xy", 3) == 0);
        } else {
                FUZZ_CHECK(out.len - 2 == size / 4 * 3 - (size && data[size - 1] == '=') -
                                                  (size > 1 && data[size - 2] == '='));
                FUZZ_CHECK(out.data[out.len] == 0);
                FUZZ_CHECK(hf_base64_encode(&enc, out.data + 2, out.len - 2) == 0);
                FUZZ_CHECK(enc.len == size && (size == 0 || memcmp(enc.data, data, size) == 0));
        }

        /* Past a small ceiling: -E2BIG, nothing appended. */
        r = hf_base64_decode(&small, (const char *)data, size);
        FUZZ_CHECK(r >= 0 || small.len == 0);

        /* Encoding arbitrary bytes decodes back to them. */
        hf_buf_reset(&enc);
        hf_buf_reset(&out);
        FUZZ_CHECK(hf_base64_encode(&enc, data, size) == 0);
        FUZZ_CHECK(hf_base64_decode(&out, (const char *)enc.data, enc.len) == 0);
        FUZZ_CHECK(out.len == size && (size == 0 || memcmp(out.data, data, size) == 0));
        return 0;
}
