/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "src/base/gojson.h"

#include "gojson-vectors.h"

/*
 * The expected bytes all come from Go 1.19 (scripts/gen-gojson-vectors.go), so a pass here means
 * a tree we write hashes like one restic 0.14 writes.
 */

#define BUF_MAX (1u << 20)

/* Appending after existing content must leave that content alone. */
#define PREFIX "pre"
#define PREFIX_LEN (sizeof(PREFIX) - 1)

static void assert_buf(const HfBuf *b, size_t from, const char *want, size_t want_len)
{
        assert_int_equal(b->len - from, want_len);
        if (want_len)
                assert_memory_equal(b->data + from, want, want_len);
        /* The buffer promises a NUL after the data. */
        assert_int_equal(b->data[b->len], 0);
}

static void test_json_string_vectors(void **state)
{
        (void)state;
        for (size_t i = 0; i < ELEMENTSOF(gojson_string_vectors); i++) {
                const GoStringVector *v = &gojson_string_vectors[i];
                _cleanup_buf_ HfBuf b = HF_BUF_INIT(BUF_MAX);

                assert_int_equal(hf_buf_puts(&b, PREFIX), 0);
                assert_int_equal(hf_json_put_string(&b, v->in, v->in_len), 0);
                assert_memory_equal(b.data, PREFIX, PREFIX_LEN);
                assert_buf(&b, PREFIX_LEN, v->json, v->json_len);
        }
}

static void test_quote_vectors(void **state)
{
        (void)state;
        for (size_t i = 0; i < ELEMENTSOF(gojson_string_vectors); i++) {
                const GoStringVector *v = &gojson_string_vectors[i];
                _cleanup_buf_ HfBuf q = HF_BUF_INIT(BUF_MAX);
                _cleanup_buf_ HfBuf j = HF_BUF_INIT(BUF_MAX);
                _cleanup_buf_ HfBuf u = HF_BUF_INIT(BUF_MAX);

                assert_int_equal(hf_buf_puts(&q, PREFIX), 0);
                assert_int_equal(hf_go_quote(&q, v->in, v->in_len), 0);
                assert_buf(&q, PREFIX_LEN, v->quote, v->quote_len);

                /* The name field of a tree node: quoted, then JSON-encoded. */
                assert_int_equal(hf_json_put_string(&j, (char *)q.data + PREFIX_LEN, v->quote_len),
                                 0);
                assert_buf(&j, 0, v->name_json, v->name_json_len);

                /* Unquoting gives back the raw bytes, invalid UTF-8 included. */
                assert_int_equal(hf_go_unquote(&u, v->quote, v->quote_len), 0);
                assert_buf(&u, 0, v->in, v->in_len);
        }
}

static void test_unquote_vectors(void **state)
{
        (void)state;
        for (size_t i = 0; i < ELEMENTSOF(gojson_unquote_vectors); i++) {
                const GoUnquoteVector *v = &gojson_unquote_vectors[i];
                _cleanup_buf_ HfBuf b = HF_BUF_INIT(BUF_MAX);
                int r;

                assert_int_equal(hf_buf_puts(&b, PREFIX), 0);
                r = hf_go_unquote(&b, v->in, v->in_len);
                if (v->ok) {
                        assert_int_equal(r, 0);
                        assert_buf(&b, PREFIX_LEN, v->out, v->out_len);
                } else {
                        assert_int_equal(r, -EINVAL);
                        /* A failure leaves nothing half-decoded behind. */
                        assert_buf(&b, 0, PREFIX, PREFIX_LEN);
                }
        }
}

static int unquote_str(const char *s)
{
        _cleanup_buf_ HfBuf b = HF_BUF_INIT(BUF_MAX);
        return hf_go_unquote(&b, s, strlen(s));
}

static void test_unquote_malformed(void **state)
{
        static const char *const bad[] = {
                "\\",     "a\\",     "\\x",     "\\x4",    "\\xzz",       "\\u12", "\\u",
                "\\u123", "\\U1234", "\\ud800", "\\udc00", "\\U00110000", "\\400", "\\8",
                "\\07",   "\\0",     "\\q",     "\\'",     "\\ ",         "a\nb",  "\n",
                "a\"b",   "\"",      "\\\n",    "\\\\\\",  "ok\\z",
        };
        static const char *const good[] = {
                "\\x41",       "\\u00e9",
                "\\U0001F600", "\\101",
                "\\377",       "\\a\\b\\f\\n\\r\\t\\v",
                "\\\\",        "\\\"",
                "'",           "\t\r raw controls stay",
        };

        (void)state;
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(unquote_str(bad[i]), -EINVAL);
        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                assert_int_equal(unquote_str(good[i]), 0);
        /* An empty string is a valid (empty) name encoding, even without a pointer. */
        {
                _cleanup_buf_ HfBuf b = HF_BUF_INIT(16);
                assert_int_equal(hf_go_unquote(&b, NULL, 0), 0);
                assert_int_equal(b.len, 0);
                assert_int_equal(hf_go_quote(&b, NULL, 0), 0);
                assert_int_equal(b.len, 0);
                assert_int_equal(hf_json_put_string(&b, NULL, 0), 0);
                assert_buf(&b, 0, "\"\"", 2);
        }
}

static void test_isprint(void **state)
{
        (void)state;
        assert_true(hf_go_isprint(0x20));
        assert_true(hf_go_isprint(0x41));
        assert_true(hf_go_isprint(0xe9));
        assert_true(hf_go_isprint(0xfffd));
        assert_true(hf_go_isprint(0x1f600));
        assert_false(hf_go_isprint(0xa0));
        assert_false(hf_go_isprint(0x200b));
        assert_false(hf_go_isprint(0x2028));
        assert_false(hf_go_isprint(0x10ffff));
        assert_false(hf_go_isprint(0xe0001));
        assert_false(hf_go_isprint(0x7f));
        assert_false(hf_go_isprint(0x09));
        assert_false(hf_go_isprint(0xd800));
        assert_false(hf_go_isprint(-1));
        assert_false(hf_go_isprint(0x110000));
        assert_false(hf_go_isprint(INT32_MIN));
        assert_false(hf_go_isprint(INT32_MAX));

        /* Both sides of every place Go's answer changes. */
        for (size_t i = 0; i < ELEMENTSOF(gojson_print_edges); i++) {
                const GoPrintEdge *e = &gojson_print_edges[i];
                assert_int_equal(hf_go_isprint(e->cp), e->print);
                assert_int_equal(hf_go_isprint(e->cp - 1), !e->print);
        }
}

static void test_time_format_vectors(void **state)
{
        (void)state;
        for (size_t i = 0; i < ELEMENTSOF(gojson_time_vectors); i++) {
                const GoTimeVector *v = &gojson_time_vectors[i];
                HfTime t = { .sec = v->sec, .nsec = v->nsec, .off = v->off }, p;
                _cleanup_buf_ HfBuf b = HF_BUF_INIT(BUF_MAX);

                assert_int_equal(hf_buf_puts(&b, PREFIX), 0);
                assert_int_equal(hf_time_format(&b, &t), 0);
                assert_buf(&b, PREFIX_LEN, v->text, strlen(v->text));

                /* Parsing must agree with Go on what the text means, clamped or not. */
                p = (HfTime){ .sec = 42, .nsec = 42, .off = 42 };
                if (v->roundtrip) {
                        assert_int_equal(hf_time_parse(v->text, strlen(v->text), &p), 0);
                        assert_int_equal(p.sec, t.sec);
                        assert_int_equal(p.nsec, t.nsec);
                        assert_int_equal(p.off, t.off);
                }
        }
}

static void test_time_parse_vectors(void **state)
{
        (void)state;
        for (size_t i = 0; i < ELEMENTSOF(gojson_parse_vectors); i++) {
                const GoParseVector *v = &gojson_parse_vectors[i];
                HfTime t = { .sec = 42, .nsec = 42, .off = 42 };
                int r = hf_time_parse(v->in, v->in_len, &t);

                if (v->ok) {
                        assert_int_equal(r, 0);
                        assert_int_equal(t.sec, v->sec);
                        assert_int_equal(t.nsec, v->nsec);
                        assert_int_equal(t.off, v->off);
                } else {
                        assert_int_equal(r, -EINVAL);
                        /* ret is written only on success. */
                        assert_int_equal(t.sec, 42);
                        assert_int_equal(t.nsec, 42);
                        assert_int_equal(t.off, 42);
                }
        }
}

static int parse_str(const char *s, HfTime *ret)
{
        return hf_time_parse(s, strlen(s), ret);
}

static void test_time_parse_by_hand(void **state)
{
        static const char *const bad[] = {
                "2024-13-01T00:00:00Z",
                "2024-01-01T00:00:00",
                "2024-01-01T00:00:00.Z",
                /* Go 1.19 takes ',' for '.'; restic never writes it and our contract is '.'. */
                "2024-01-01T00:00:00,5Z",
                /* Ten digits: RFC3339Nano stops at nine, and so do we. */
                "2024-01-01T00:00:00.1234567891Z",
                /* Go 1.19 takes any two-digit offset hour; RFC 3339 stops at 23. */
                "2024-01-01T00:00:00+24:00",
                "2024-01-01T00:00:00+99:99",
                "2024-01-01T00:00:00+01:60",
                "2024-01-01t00:00:00Z",
                "2024-01-01T00:00:00Z\n",
        };
        HfTime t;

        (void)state;
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(parse_str(bad[i], &t), -EINVAL);
        assert_int_equal(hf_time_parse(NULL, 0, &t), -EINVAL);

        /* RFC 3339 allows a lowercase 'z'; Go 1.19 does not, the header promises we do. */
        assert_int_equal(parse_str("2024-01-02T03:04:05.5z", &t), 0);
        assert_int_equal(t.sec, 1704164645);
        assert_int_equal(t.nsec, 500000000);
        assert_int_equal(t.off, 0);

        assert_int_equal(parse_str("2024-01-02T03:04:05.123456789+01:00", &t), 0);
        assert_int_equal(t.sec, 1704164645 - 3600);
        assert_int_equal(t.nsec, 123456789);
        assert_int_equal(t.off, 3600);
}

static void test_time_format_edges(void **state)
{
        static const HfTime extremes[] = {
                { INT64_MAX, 999999999, INT32_MAX },
                { INT64_MIN, 0, INT32_MIN },
                { INT64_MAX, INT32_MAX, 0 },
                { INT64_MIN, INT32_MIN, -1 },
                { 0, -1, 0 },
                { 0, 1000000000, 0 },
                { -1, INT32_MIN, 3600 },
                { 1 << 30, 0, -86399 },
        };

        (void)state;
        /* Never crash; always four-digit years; the fraction stays a fraction. */
        for (size_t i = 0; i < ELEMENTSOF(extremes); i++) {
                _cleanup_buf_ HfBuf b = HF_BUF_INIT(BUF_MAX);

                assert_int_equal(hf_time_format(&b, &extremes[i]), 0);
                assert_true(b.len >= 20);
                assert_int_equal(b.data[4], '-');
                assert_int_equal(b.data[10], 'T');
        }

        /* Offsets of 100 hours and more print all their hours, as Go's do. */
        {
                static const struct {
                        int32_t off;
                        const char *text;
                } zones[] = {
                        { 359999, "1970-01-05T03:59:59+99:59" },
                        { 360000, "1970-01-05T04:00:00+100:00" },
                        { -3600 * 1000, "1969-11-20T08:00:00-1000:00" },
                        { INT32_MAX, "2038-01-19T03:14:07+596523:14" },
                        { INT32_MIN, "1901-12-13T20:45:52-596523:14" },
                };
                for (size_t i = 0; i < ELEMENTSOF(zones); i++) {
                        _cleanup_buf_ HfBuf b = HF_BUF_INIT(BUF_MAX);
                        HfTime t = { .sec = 0, .nsec = 0, .off = zones[i].off };

                        assert_int_equal(hf_time_format(&b, &t), 0);
                        assert_buf(&b, 0, zones[i].text, strlen(zones[i].text));
                }
        }

        /* An out-of-range nsec carries into the seconds, like Go's time.Unix. */
        {
                _cleanup_buf_ HfBuf b = HF_BUF_INIT(BUF_MAX);
                HfTime t = { .sec = 0, .nsec = -1, .off = 0 };

                assert_int_equal(hf_time_format(&b, &t), 0);
                assert_buf(&b, 0, "1969-12-31T23:59:59.999999999Z", 30);
        }
}

/* Encoders either append everything or nothing, at every ceiling. */
static void test_ceiling(void **state)
{
        static const char in[] = "a<\x01\xff\xe2\x80\xa8\xc2\xa0\"\\ \xf3\xa0\x80\x81z";
        static const char esc[] = "\\x41\\u00e9bc\\U0001F600\\377";
        const size_t n = sizeof(in) - 1;

        (void)state;
        for (int which = 0; which < 3; which++) {
                size_t full;
                {
                        _cleanup_buf_ HfBuf b = HF_BUF_INIT(BUF_MAX);
                        int r = which == 0   ? hf_json_put_string(&b, in, n)
                                : which == 1 ? hf_go_quote(&b, in, n)
                                             : hf_go_unquote(&b, esc, strlen(esc));
                        assert_int_equal(r, 0);
                        full = b.len;
                }
                for (size_t max = PREFIX_LEN; max <= PREFIX_LEN + full; max++) {
                        _cleanup_buf_ HfBuf b = HF_BUF_INIT(max);
                        int r;

                        assert_int_equal(hf_buf_puts(&b, PREFIX), 0);
                        r = which == 0   ? hf_json_put_string(&b, in, n)
                            : which == 1 ? hf_go_quote(&b, in, n)
                                         : hf_go_unquote(&b, esc, strlen(esc));
                        if (max < PREFIX_LEN + full) {
                                assert_int_equal(r, -E2BIG);
                                assert_buf(&b, 0, PREFIX, PREFIX_LEN);
                        } else {
                                assert_int_equal(r, 0);
                                assert_int_equal(b.len, PREFIX_LEN + full);
                        }
                }
        }
        {
                _cleanup_buf_ HfBuf b = HF_BUF_INIT(10);
                HfTime t = { .sec = 0, .nsec = 0, .off = 0 };

                assert_int_equal(hf_time_format(&b, &t), -E2BIG);
                assert_int_equal(b.len, 0);
        }
}

/* xorshift64: a fixed stream so a failure reproduces. */
static uint64_t rnd(uint64_t *s)
{
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        return *s;
}

/*
 * Hostile input: random bytes biased towards the characters the parsers care about must never
 * crash them, and whatever unquote accepts must survive quote/unquote unchanged.
 */
static void test_random_input(void **state)
{
        static const char alphabet[] = "\\\"\nxuU0123456789abcdefABCDEF'zZT:-+.";
        uint64_t seed = 0x9e3779b97f4a7c15ULL;

        (void)state;
        for (int iter = 0; iter < 200000; iter++) {
                char s[40];
                size_t n = rnd(&seed) % sizeof(s);
                _cleanup_buf_ HfBuf u = HF_BUF_INIT(BUF_MAX);
                HfTime t;

                for (size_t k = 0; k < n; k++) {
                        uint64_t x = rnd(&seed);
                        if (x % 3)
                                s[k] = alphabet[(x >> 8) % (sizeof(alphabet) - 1)];
                        else
                                s[k] = (char)(uint8_t)(x >> 16);
                }
                if (hf_go_unquote(&u, s, n) == 0) {
                        _cleanup_buf_ HfBuf q = HF_BUF_INIT(BUF_MAX);
                        _cleanup_buf_ HfBuf u2 = HF_BUF_INIT(BUF_MAX);

                        assert_int_equal(hf_go_quote(&q, (char *)u.data, u.len), 0);
                        assert_int_equal(hf_go_unquote(&u2, (char *)q.data, q.len), 0);
                        assert_buf(&u2, 0, (char *)u.data, u.len);
                }
                if (hf_time_parse(s, n, &t) == 0) {
                        _cleanup_buf_ HfBuf f = HF_BUF_INIT(BUF_MAX);
                        assert_int_equal(hf_time_format(&f, &t), 0);
                }

                /* A time-shaped prefix with a random tail reaches the fraction and zone code. */
                {
                        char ts[48] = "2024-02-29T12:34:56";
                        size_t tn = 19 + rnd(&seed) % 16;
                        for (size_t k = 19; k < tn; k++) {
                                uint64_t x = rnd(&seed);
                                if (x % 4)
                                        ts[k] = alphabet[(x >> 8) % (sizeof(alphabet) - 1)];
                                else
                                        ts[k] = (char)('0' + (x >> 16) % 10);
                        }
                        if (hf_time_parse(ts, tn, &t) == 0) {
                                _cleanup_buf_ HfBuf f = HF_BUF_INIT(BUF_MAX);
                                HfTime back;

                                assert_int_equal(hf_time_format(&f, &t), 0);
                                assert_int_equal(hf_time_parse((char *)f.data, f.len, &back), 0);
                                assert_int_equal(back.sec, t.sec);
                                assert_int_equal(back.nsec, t.nsec);
                                assert_int_equal(back.off, t.off);
                        }
                }
        }
}

static void test_time_local(void **state)
{
        HfTime t;
        time_t before, after;

        (void)state;
        /* POSIX TZ: "<+0530>-5:30" is 5h30 east of UTC, with no DST. */
        assert_int_equal(setenv("TZ", "<+0530>-5:30", 1), 0);
        tzset();
        t = hf_time_local(0, 5);
        assert_int_equal(t.sec, 0);
        assert_int_equal(t.nsec, 5);
        assert_int_equal(t.off, 19800);

        assert_int_equal(setenv("TZ", "UTC0", 1), 0);
        tzset();
        t = hf_time_local(1704164645, 123);
        assert_int_equal(t.off, 0);

        /* Beyond what struct tm can hold: still an answer, never a crash. */
        t = hf_time_local(INT64_MAX, 0);
        assert_int_equal(t.sec, INT64_MAX);

        before = time(NULL);
        t = hf_time_now();
        after = time(NULL);
        assert_true(t.sec >= before && t.sec <= after);
        assert_true(t.nsec >= 0 && t.nsec < 1000000000);
        assert_int_equal(t.off, 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_json_string_vectors),
                cmocka_unit_test(test_quote_vectors),
                cmocka_unit_test(test_unquote_vectors),
                cmocka_unit_test(test_unquote_malformed),
                cmocka_unit_test(test_isprint),
                cmocka_unit_test(test_time_format_vectors),
                cmocka_unit_test(test_time_parse_vectors),
                cmocka_unit_test(test_time_parse_by_hand),
                cmocka_unit_test(test_time_format_edges),
                cmocka_unit_test(test_ceiling),
                cmocka_unit_test(test_random_input),
                cmocka_unit_test(test_time_local),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
