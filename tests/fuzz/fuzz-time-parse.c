/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * RFC 3339 times in trees, snapshots, locks and keys. A time that parses must format (as Go
 * prints it) and parse back to the same instant and offset, since tree blobs are re-encoded
 * byte for byte. Formatting an arbitrary HfTime (from the raw input bytes) must not crash.
 */
#include <string.h>

#include "../../src/base/gojson.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_buf_ HfBuf out = HF_BUF_INIT(256), out2 = HF_BUF_INIT(256);
        HfTime t, t2, raw;

        if (hf_time_parse((const char *)data, size, &t) == 0) {
                FUZZ_CHECK(t.nsec >= 0 && t.nsec <= 999999999);
                FUZZ_CHECK(hf_time_format(&out, &t) == 0);
                FUZZ_CHECK(hf_time_parse((const char *)out.data, out.len, &t2) == 0);
                FUZZ_CHECK(t.sec == t2.sec && t.nsec == t2.nsec && t.off == t2.off);
                FUZZ_CHECK(hf_time_format(&out2, &t2) == 0);
                FUZZ_CHECK(out.len == out2.len && memcmp(out.data, out2.data, out.len) == 0);
        }

        /* Any in-memory time prints without overflow, within the buffer's ceiling. */
        if (size >= 16) {
                memcpy(&raw.sec, data, 8);
                memcpy(&raw.nsec, data + 8, 4);
                memcpy(&raw.off, data + 12, 4);
                hf_buf_reset(&out);
                FUZZ_CHECK(hf_time_format(&out, &raw) == 0);
                FUZZ_CHECK(out.len >= 20);
        }
        return 0;
}
