/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Go strconv quoting of node names (restic-format.md §6.4): hf_go_unquote reads what a tree
 * says, hf_go_quote writes what holdfast stores. For any raw bytes x, unquote(quote(x)) == x,
 * or names would change on the way through a vault. Also checks that a failed unquote leaves
 * the buffer as it was, and that Go's JSON string encoder always yields valid UTF-8.
 */
#include <string.h>

#include "../../src/base/gojson.h"
#include "../../src/base/util.h"
#include "fuzz.h"

static void check_quote_roundtrip(const uint8_t *raw, size_t n)
{
        _cleanup_buf_ HfBuf q = HF_BUF_INIT(SIZE_MAX / 2), back = HF_BUF_INIT(SIZE_MAX / 2);

        FUZZ_CHECK(hf_go_quote(&q, (const char *)raw, n) == 0);
        /* Quoted text is printable, valid UTF-8, and has no raw '"' or newline. */
        FUZZ_CHECK(hf_utf8_valid((const char *)q.data, q.len));
        FUZZ_CHECK(!q.len || (!memchr(q.data, '\n', q.len) && !memchr(q.data, 0, q.len)));
        FUZZ_CHECK(hf_go_unquote(&back, (const char *)q.data, q.len) == 0);
        FUZZ_CHECK(back.len == n && (n == 0 || memcmp(back.data, raw, n) == 0));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_buf_ HfBuf out = HF_BUF_INIT(SIZE_MAX / 2), small = HF_BUF_INIT(16),
                            js = HF_BUF_INIT(SIZE_MAX / 2);
        int r;

        /* The input as a quoted name. */
        FUZZ_CHECK(hf_buf_append(&out, "keep", 4) == 0);
        r = hf_go_unquote(&out, (const char *)data, size);
        if (r < 0)
                FUZZ_CHECK(out.len == 4 && memcmp(out.data, "keep", 5) == 0);
        else
                check_quote_roundtrip(out.data + 4, out.len - 4);

        /* A ceiling hit midway must not leave half a result behind. */
        r = hf_go_unquote(&small, (const char *)data, size);
        FUZZ_CHECK(r >= 0 || small.len == 0);

        /* The input as a raw name. */
        check_quote_roundtrip(data, size);

        /* Go's encoding/json string: valid UTF-8, quoted, no raw control bytes. */
        FUZZ_CHECK(hf_json_put_string(&js, (const char *)data, size) == 0);
        FUZZ_CHECK(js.len >= 2 && js.data[0] == '"' && js.data[js.len - 1] == '"');
        FUZZ_CHECK(hf_utf8_valid((const char *)js.data, js.len));
        for (size_t i = 0; i < js.len; i++)
                FUZZ_CHECK(js.data[i] >= 0x20);
        return 0;
}
