/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "json.h"

#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "util.h"

void hf_json_init(HfJson *j, const void *text, size_t len)
{
        memset(j, 0, sizeof(*j));
        j->p = j->start = text;
        j->end = j->p + len;
}

static int fail(HfJson *j, const char *what)
{
        if (j->error == 0) {
                j->error = -EPROTO;
                j->what = what;
        }
        return j->error;
}

int hf_json_error(const HfJson *j, char *buf, size_t n)
{
        (void)snprintf(buf, n, "at byte %zu: %s", (size_t)(j->p - j->start),
                       j->what ? j->what : "malformed JSON");
        return j->error;
}

static void ws(HfJson *j)
{
        while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t'))
                j->p++;
}

static int expect(HfJson *j, char c, const char *what)
{
        ws(j);
        if (j->p >= j->end || *j->p != c)
                return fail(j, what);
        j->p++;
        return 0;
}

static int enter(HfJson *j, char c, const char *what)
{
        if (j->error)
                return j->error;
        if (j->depth >= HF_JSON_MAX_DEPTH)
                return fail(j, "nested too deeply");
        if (expect(j, c, what) < 0)
                return j->error;
        j->depth++;
        j->need_comma[j->depth] = false;
        return 0;
}

int hf_json_enter_object(HfJson *j)
{
        return enter(j, '{', "expected an object");
}

int hf_json_enter_array(HfJson *j)
{
        return enter(j, '[', "expected an array");
}

/* The first byte of [p, end) that a string scan must look at: a quote, a backslash or a
 * control character; end when there is none. Sixteen bytes at a time where SSE2 is there. */
static const char *plain_run(const char *p, const char *end)
{
#ifdef __SSE2__
        const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'),
                      ctl = _mm_set1_epi8(0x1f);

        while (end - p >= 16) {
                __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
                /* v <= 0x1f (unsigned) exactly when max(v, 0x1f) is 0x1f. */
                __m128i m = _mm_or_si128(
                        _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
                        _mm_cmpeq_epi8(_mm_max_epu8(v, ctl), ctl));
                unsigned mask = (unsigned)_mm_movemask_epi8(m);

                if (mask)
                        return p + __builtin_ctz(mask);
                p += 16;
        }
#endif
        for (; p < end; p++) {
                unsigned char c = (unsigned char)*p;
                if (c == '"' || c == '\\' || c < 0x20)
                        break;
        }
        return p;
}

/* Scans a string starting at the opening quote; *ret_escaped says whether it has escapes. */
static int scan_string(HfJson *j, const char **ret, size_t *ret_len, bool *ret_escaped)
{
        const char *s;
        bool escaped = false;

        ws(j);
        if (j->p >= j->end || *j->p != '"')
                return fail(j, "expected a string");
        s = ++j->p;
        for (;;) {
                j->p = plain_run(j->p, j->end);
                if (j->p >= j->end)
                        return fail(j, "unterminated string");
                unsigned char c = (unsigned char)*j->p;
                if (c == '"')
                        break;
                if (c < 0x20)
                        return fail(j, "control character in a string");
                if (c == '\\') {
                        escaped = true;
                        j->p++;
                        if (j->p >= j->end)
                                return fail(j, "unterminated string");
                }
                j->p++;
        }
        *ret = s;
        *ret_len = (size_t)(j->p - s);
        *ret_escaped = escaped;
        j->p++;
        return 0;
}

/* Positions at the next member or element, handling the comma; 0 at the end (consumed). */
static int next(HfJson *j, char close)
{
        if (j->error)
                return j->error;
        ws(j);
        if (j->p >= j->end)
                return fail(j, "unexpected end");
        if (*j->p == close) {
                if (j->depth <= 0)
                        return fail(j, "unbalanced");
                j->p++;
                j->depth--;
                return 0;
        }
        if (j->need_comma[j->depth]) {
                if (*j->p != ',')
                        return fail(j, "expected ',' or the end of the object or array");
                j->p++;
                ws(j);
                if (j->p < j->end && *j->p == close)
                        return fail(j, "trailing comma");
        }
        j->need_comma[j->depth] = true;
        return 1;
}

int hf_json_next_key(HfJson *j, const char **ret_key, size_t *ret_len)
{
        bool escaped;
        int r = next(j, '}');

        if (r <= 0)
                return r;
        if (scan_string(j, ret_key, ret_len, &escaped) < 0)
                return j->error;
        if (expect(j, ':', "expected ':'") < 0)
                return j->error;
        return 1;
}

int hf_json_next_item(HfJson *j)
{
        return next(j, ']');
}

int hf_json_null(HfJson *j)
{
        if (j->error)
                return j->error;
        ws(j);
        if (j->end - j->p >= 4 && memcmp(j->p, "null", 4) == 0) {
                j->p += 4;
                return 1;
        }
        return 0;
}

int hf_json_bool(HfJson *j, bool *ret)
{
        if (j->error)
                return j->error;
        ws(j);
        if (j->end - j->p >= 4 && memcmp(j->p, "true", 4) == 0) {
                j->p += 4;
                *ret = true;
                return 0;
        }
        if (j->end - j->p >= 5 && memcmp(j->p, "false", 5) == 0) {
                j->p += 5;
                *ret = false;
                return 0;
        }
        return fail(j, "expected true or false");
}

int hf_json_string_raw(HfJson *j, const char **ret, size_t *ret_len)
{
        bool escaped;

        if (j->error)
                return j->error;
        if (scan_string(j, ret, ret_len, &escaped) < 0)
                return j->error;
        if (escaped)
                return fail(j, "unexpected escape in a string");
        return 0;
}

static int hex4(const char *p, uint32_t *ret)
{
        uint32_t v = 0;

        for (int i = 0; i < 4; i++) {
                char c = p[i];
                v <<= 4;
                if (c >= '0' && c <= '9')
                        v |= (uint32_t)(c - '0');
                else if (c >= 'a' && c <= 'f')
                        v |= (uint32_t)(c - 'a' + 10);
                else if (c >= 'A' && c <= 'F')
                        v |= (uint32_t)(c - 'A' + 10);
                else
                        return -1;
        }
        *ret = v;
        return 0;
}

static int put_utf8(HfBuf *out, uint32_t cp)
{
        uint8_t b[4];
        size_t n;

        if (cp < 0x80) {
                b[0] = (uint8_t)cp;
                n = 1;
        } else if (cp < 0x800) {
                b[0] = (uint8_t)(0xc0 | cp >> 6);
                b[1] = (uint8_t)(0x80 | (cp & 0x3f));
                n = 2;
        } else if (cp < 0x10000) {
                b[0] = (uint8_t)(0xe0 | cp >> 12);
                b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
                b[2] = (uint8_t)(0x80 | (cp & 0x3f));
                n = 3;
        } else {
                b[0] = (uint8_t)(0xf0 | cp >> 18);
                b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
                b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
                b[3] = (uint8_t)(0x80 | (cp & 0x3f));
                n = 4;
        }
        return hf_buf_append(out, b, n);
}

int hf_json_string(HfJson *j, HfBuf *out)
{
        const char *s, *e;
        size_t len, start = out->len;
        bool escaped;
        int r = 0;

        if (j->error)
                return j->error;
        if (scan_string(j, &s, &len, &escaped) < 0)
                return j->error;
        if (!escaped) {
                /* JSON text must be UTF-8; so must what we hand on. */
                if (!hf_utf8_valid(s, len))
                        return fail(j, "invalid UTF-8 in a string");
                r = hf_buf_append(out, s, len);
                return r < 0 ? (j->error = r) : 0;
        }
        for (e = s + len; s < e && r >= 0;) {
                const char *run = s;
                while (s < e && *s != '\\')
                        s++;
                if (s > run) {
                        if (!hf_utf8_valid(run, (size_t)(s - run))) {
                                out->len = start;
                                return fail(j, "invalid UTF-8 in a string");
                        }
                        r = hf_buf_append(out, run, (size_t)(s - run));
                }
                if (s >= e || r < 0)
                        break;
                s++; /* the backslash; scan_string guaranteed a following byte */
                char c = *s++, lit;
                switch (c) {
                case '"':
                case '\\':
                case '/':
                        lit = c;
                        break;
                case 'b':
                        lit = '\b';
                        break;
                case 'f':
                        lit = '\f';
                        break;
                case 'n':
                        lit = '\n';
                        break;
                case 'r':
                        lit = '\r';
                        break;
                case 't':
                        lit = '\t';
                        break;
                case 'u': {
                        uint32_t cp, lo;
                        if (e - s < 4 || hex4(s, &cp) < 0) {
                                out->len = start;
                                return fail(j, "bad \\u escape");
                        }
                        s += 4;
                        if (cp >= 0xd800 && cp <= 0xdbff) {
                                /* A surrogate pair, or a lone high surrogate (U+FFFD, as Go). */
                                if (e - s >= 6 && s[0] == '\\' && s[1] == 'u' &&
                                    hex4(s + 2, &lo) == 0 && lo >= 0xdc00 && lo <= 0xdfff) {
                                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                                        s += 6;
                                } else
                                        cp = 0xfffd;
                        } else if (cp >= 0xdc00 && cp <= 0xdfff)
                                cp = 0xfffd;
                        /* No vault string may hold a NUL (names, targets, users, xattrs):
                         * refuse it rather than let C strings cut it short. */
                        if (cp == 0) {
                                out->len = start;
                                return fail(j, "NUL character in a string");
                        }
                        r = put_utf8(out, cp);
                        continue;
                }
                default:
                        out->len = start;
                        return fail(j, "bad escape in a string");
                }
                r = hf_buf_append(out, &lit, 1);
        }
        if (r < 0) {
                out->len = start;
                j->error = r;
        }
        return r < 0 ? r : 0;
}

int hf_json_u64(HfJson *j, uint64_t *ret)
{
        uint64_t v = 0;
        const char *s;

        if (j->error)
                return j->error;
        ws(j);
        s = j->p;
        if (s >= j->end || *s < '0' || *s > '9')
                return fail(j, "expected a non-negative integer");
        if (*s == '0' && s + 1 < j->end && s[1] >= '0' && s[1] <= '9')
                return fail(j, "leading zero in a number");
        for (; s < j->end && *s >= '0' && *s <= '9'; s++) {
                unsigned d = (unsigned)(*s - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return fail(j, "number too large");
                v = v * 10 + d;
        }
        if (s < j->end && (*s == '.' || *s == 'e' || *s == 'E'))
                return fail(j, "expected an integer");
        j->p = s;
        *ret = v;
        return 0;
}

/* Skips a number of any form (for unknown fields). */
static int skip_number(HfJson *j)
{
        const char *s = j->p;

        if (s < j->end && *s == '-')
                s++;
        if (s >= j->end || *s < '0' || *s > '9')
                return fail(j, "expected a value");
        while (s < j->end && ((*s >= '0' && *s <= '9') || *s == '.' || *s == 'e' || *s == 'E' ||
                              *s == '+' || *s == '-'))
                s++;
        j->p = s;
        return 0;
}

int hf_json_skip(HfJson *j)
{
        const char *k;
        size_t n;
        bool b;
        int r;

        if (j->error)
                return j->error;
        ws(j);
        if (j->p >= j->end)
                return fail(j, "unexpected end");
        switch (*j->p) {
        case '{':
                if (hf_json_enter_object(j) < 0)
                        return j->error;
                while ((r = hf_json_next_key(j, &k, &n)) > 0)
                        if (hf_json_skip(j) < 0)
                                return j->error;
                return r;
        case '[':
                if (hf_json_enter_array(j) < 0)
                        return j->error;
                while ((r = hf_json_next_item(j)) > 0)
                        if (hf_json_skip(j) < 0)
                                return j->error;
                return r;
        case '"': {
                bool escaped;
                return scan_string(j, &k, &n, &escaped);
        }
        case 't':
        case 'f':
                return hf_json_bool(j, &b);
        case 'n':
                return hf_json_null(j) == 1 ? 0 : fail(j, "expected a value");
        default:
                return skip_number(j);
        }
}

int hf_json_end(HfJson *j)
{
        if (j->error)
                return j->error;
        ws(j);
        if (j->p != j->end)
                return fail(j, "unexpected data after the JSON value");
        return 0;
}
