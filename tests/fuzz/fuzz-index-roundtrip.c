/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Index files must survive parse -> format -> parse with the same entries (blob ID, type, pack
 * ID, offset, length, uncompressed length), and formatting must be deterministic and
 * idempotent. This is the path of every index holdfast rewrites from one it read.
 */
#include <string.h>

#include "../../src/repo/index.h"
#include "fuzz.h"

static int format_all(const HfIndex *idx, HfBuf *out)
{
        _cleanup_free_ HfIndexEntry *v = NULL;
        size_t n;
        int r;

        r = hf_index_sorted_by_pack(idx, &v, &n);
        if (r < 0)
                return r;
        return hf_index_format(idx, v, n, out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_(hf_index_freep) HfIndex *a = NULL, *b = NULL;
        _cleanup_buf_ HfBuf out1 = HF_BUF_INIT(256u << 20), out2 = HF_BUF_INIT(256u << 20),
                            out3 = HF_BUF_INIT(256u << 20), err = HF_BUF_INIT(4096);
        _cleanup_free_ HfIndexEntry *v = NULL;
        size_t n;

        if (hf_index_new(&a) < 0 || hf_index_new(&b) < 0)
                return 0;
        if (hf_index_parse(a, data, size, NULL) < 0)
                return 0;
        FUZZ_CHECK(format_all(a, &out1) == 0);
        FUZZ_CHECK(format_all(a, &out2) == 0);
        FUZZ_CHECK(out1.len == out2.len && memcmp(out1.data, out2.data, out1.len) == 0);

        FUZZ_CHECK(hf_index_parse(b, out1.data, out1.len, &err) == 0);
        FUZZ_CHECK(hf_index_count(a) == hf_index_count(b));
        if (hf_index_sorted_by_pack(a, &v, &n) < 0)
                return 0;
        for (size_t i = 0; i < n; i++) {
                const HfIndexEntry *x = &v[i], *y = hf_index_lookup(b, x->type, &x->id);
                FUZZ_CHECK(y);
                FUZZ_CHECK(hf_id_eq(hf_index_pack_id(a, x->pack), hf_index_pack_id(b, y->pack)));
                FUZZ_CHECK(x->offset == y->offset && x->length == y->length &&
                           x->uncompressed_length == y->uncompressed_length);
        }

        FUZZ_CHECK(format_all(b, &out3) == 0);
        FUZZ_CHECK(out1.len == out3.len && memcmp(out1.data, out3.data, out1.len) == 0);
        return 0;
}
