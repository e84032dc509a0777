/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The pull parser under the tree and index parsers (src/base/json.h), driven by a generic
 * walker over whatever the input holds: every value is read with the typed call that fits its
 * first byte (strings both decoded and raw), and the same text is skipped whole. Properties:
 * errors are sticky and stay inside the text, the depth limit holds, decoded strings are valid
 * UTF-8, and a document the walker reads whole is also one that hf_json_skip accepts.
 */
#include <string.h>

#include "../../src/base/json.h"
#include "../../src/base/util.h"
#include "fuzz.h"

static char peek(HfJson *j)
{
        const char *p = j->p;

        while (p < j->end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
                p++;
        return p < j->end ? *p : 0;
}

static int walk(HfJson *j, HfBuf *s)
{
        const char *k;
        size_t kl;
        int r;

        FUZZ_CHECK(j->p >= j->start && j->p <= j->end);
        FUZZ_CHECK(j->depth >= 0 && j->depth <= HF_JSON_MAX_DEPTH);
        switch (peek(j)) {
        case '{':
                r = hf_json_enter_object(j);
                while (r >= 0 && (r = hf_json_next_key(j, &k, &kl)) > 0) {
                        FUZZ_CHECK(k >= j->start && k + kl <= j->end);
                        r = walk(j, s);
                }
                return r;
        case '[':
                r = hf_json_enter_array(j);
                while (r >= 0 && (r = hf_json_next_item(j)) > 0)
                        r = walk(j, s);
                return r;
        case '"': {
                HfJson raw = *j;
                const char *rs;
                size_t rl;

                /* The raw form, on a copy: it either points into the text or refuses escapes. */
                if (hf_json_string_raw(&raw, &rs, &rl) == 0)
                        FUZZ_CHECK(rs >= j->start && rs + rl <= j->end && !memchr(rs, '\\', rl));
                hf_buf_reset(s);
                r = hf_json_string(j, s);
                if (r >= 0)
                        FUZZ_CHECK(hf_utf8_valid((const char *)s->data, s->len));
                return r;
        }
        case 't':
        case 'f': {
                bool b;
                return hf_json_bool(j, &b);
        }
        case 'n':
                r = hf_json_null(j);
                return r == 1 ? 0 : hf_json_skip(j);
        default: {
                HfJson num = *j;
                uint64_t v;

                /* Integers as the typed reader sees them; anything else as skip does. */
                if (hf_json_u64(&num, &v) == 0) {
                        *j = num;
                        return 0;
                }
                return hf_json_skip(j);
        }
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_buf_ HfBuf s = HF_BUF_INIT(1u << 20);
        char msg[128];
        HfJson j, k;
        int r, rs;

        hf_json_init(&j, data, size);
        r = walk(&j, &s);
        if (r >= 0)
                r = hf_json_end(&j);
        FUZZ_CHECK(j.p >= j.start && j.p <= j.end);
        if (r < 0) {
                /* Sticky: every later call fails the same way. */
                FUZZ_CHECK(j.error == r);
                FUZZ_CHECK(hf_json_enter_object(&j) == r && hf_json_next_item(&j) == r &&
                           hf_json_skip(&j) == r && hf_json_end(&j) == r);
                FUZZ_CHECK(hf_json_error(&j, msg, sizeof(msg)) == r);
                FUZZ_CHECK(memchr(msg, 0, sizeof(msg)) != NULL);
        }

        hf_json_init(&k, data, size);
        rs = hf_json_skip(&k);
        if (rs >= 0)
                rs = hf_json_end(&k);
        /* What the typed readers accept, skipping accepts too. */
        if (r >= 0)
                FUZZ_CHECK(rs >= 0);
        return 0;
}
