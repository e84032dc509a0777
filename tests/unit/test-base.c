/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/magic.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>

#include "../../src/base/buf.h"
#include "../../src/base/json.h"
#include "../../src/base/queue.h"
#include "../../src/base/util.h"
#include "smaps.h"

/* ---- HfBuf ---- */

static void test_buf_ceiling(void **state)
{
        _cleanup_buf_ HfBuf b = HF_BUF_INIT(10);

        (void)state;
        assert_int_equal(hf_buf_append(&b, "hello", 5), 0);
        assert_int_equal(b.len, 5);
        assert_string_equal((char *)b.data, "hello");

        /* One byte too many: refused, and the buffer is exactly as it was. */
        assert_int_equal(hf_buf_append(&b, "world!", 6), -E2BIG);
        assert_int_equal(b.len, 5);
        assert_string_equal((char *)b.data, "hello");
        assert_int_equal(hf_buf_printf(&b, "%s", "123456"), -E2BIG);
        assert_int_equal(b.len, 5);
        assert_string_equal((char *)b.data, "hello");
        assert_int_equal(hf_buf_reserve(&b, SIZE_MAX), -E2BIG);
        assert_int_equal(hf_buf_reserve(&b, 6), -E2BIG);
        assert_int_equal(b.len, 5);

        /* Filling up to the ceiling exactly is fine, and the NUL still fits. */
        assert_int_equal(hf_buf_append(&b, "world", 5), 0);
        assert_int_equal(b.len, 10);
        assert_string_equal((char *)b.data, "helloworld");
        assert_true(b.cap <= b.max + 1);
        assert_int_equal(hf_buf_putc(&b, 'x'), -E2BIG);
        assert_int_equal(hf_buf_append(&b, "", 0), 0);
        assert_int_equal(b.len, 10);

        hf_buf_reset(&b);
        assert_int_equal(b.len, 0);
        assert_non_null(b.data);
        assert_string_equal((char *)b.data, "");
}

static void test_buf_grow_printf(void **state)
{
        _cleanup_buf_ HfBuf b = HF_BUF_INIT(1 << 20);

        (void)state;
        assert_int_equal(hf_buf_printf(&b, "%d-%s-%04x", 42, "abc", 0xbeef), 0);
        assert_string_equal((char *)b.data, "42-abc-beef");
        assert_int_equal(b.len, strlen("42-abc-beef"));
        assert_int_equal(hf_buf_putc(&b, '!'), 0);
        assert_int_equal(hf_buf_puts(&b, "tail"), 0);
        assert_string_equal((char *)b.data, "42-abc-beef!tail");

        /* Many small appends across several reallocations keep the content. */
        hf_buf_reset(&b);
        for (int i = 0; i < 10000; i++)
                assert_int_equal(hf_buf_printf(&b, "%d,", i % 10), 0);
        assert_int_equal(b.len, 20000);
        for (size_t i = 0; i < b.len; i += 2) {
                assert_int_equal(b.data[i], '0' + (int)(i / 2 % 10));
                assert_int_equal(b.data[i + 1], ',');
        }
        assert_int_equal(b.data[b.len], 0);
}

/* SIZE_MAX is a natural way to say "no limit"; the ceiling arithmetic must not wrap. */
static void test_buf_unlimited(void **state)
{
        _cleanup_buf_ HfBuf b = HF_BUF_INIT(SIZE_MAX);

        (void)state;
        assert_int_equal(hf_buf_append(&b, "abc", 3), 0);
        assert_true(b.cap >= 4);
        for (int i = 0; i < 1000; i++)
                assert_int_equal(hf_buf_puts(&b, "0123456789"), 0);
        assert_int_equal(b.len, 10003);
        assert_true(b.cap > b.len);
        assert_memory_equal(b.data + 9993, "0123456789", 11);
        assert_int_equal(hf_buf_reserve(&b, SIZE_MAX), -E2BIG);
        assert_int_equal(hf_buf_reserve(&b, SIZE_MAX - b.len), -E2BIG);
        assert_int_equal(b.len, 10003);
}

/*
 * hf_mem_hint_huge advises exactly the 2 MiB-aligned part of the range: the pages before and
 * after it, and a range smaller than HF_HUGE_HINT_MIN, stay as they were.
 */
static void test_mem_hint_huge(void **state)
{
        const size_t huge = 2u << 20, len = 16u << 20;
        uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        uint8_t *a;

        (void)state;
        assert_true(m != MAP_FAILED);
        if (!smaps_have_thp()) {
                munmap(m, len);
                skip();
        }
        /* a: the first 2 MiB boundary with a page before it inside the mapping. */
        a = (uint8_t *)(((uintptr_t)m + 4096 + huge - 1) & ~(uintptr_t)(huge - 1));
        assert_int_equal(smaps_huge_advised(a), 0);
        hf_mem_hint_huge(a - 4096, 4096 + 2 * huge + 100);
        assert_int_equal(smaps_huge_advised(a), 1);
        assert_int_equal(smaps_huge_advised(a + 2 * huge - 1), 1);
        assert_int_equal(smaps_huge_advised(a - 4096), 0);
        assert_int_equal(smaps_huge_advised(a + 2 * huge), 0);
        /* Too small to be worth it, though 2 MiB-aligned. */
        hf_mem_hint_huge(a + 4 * huge, HF_HUGE_HINT_MIN - 1);
        assert_int_equal(smaps_huge_advised(a + 4 * huge), 0);
        hf_mem_hint_huge(NULL, len);
        munmap(m, len);
}

/* A buffer marked hint_huge gets its large allocation advised; an ordinary one does not. */
static void test_buf_hint_huge(void **state)
{
        const uintptr_t huge = 2u << 20;
        _cleanup_buf_ HfBuf plain = HF_BUF_INIT(SIZE_MAX), hinted = HF_BUF_INIT(SIZE_MAX);
        char xs[100];

        (void)state;
        if (!smaps_have_thp())
                skip();
        hinted.hint_huge = true;
        assert_int_equal(hf_buf_reserve(&plain, 6u << 20), 0);
        assert_int_equal(hf_buf_reserve(&hinted, 6u << 20), 0);
        assert_int_equal(
                smaps_huge_advised((void *)(((uintptr_t)hinted.data + huge) & ~(huge - 1))), 1);
        assert_int_equal(smaps_huge_advised((void *)(((uintptr_t)plain.data + huge) & ~(huge - 1))),
                         0);
        /* Growing keeps it: the data move to a new 2 MiB-aligned block, advised again. */
        memset(xs, 'x', sizeof(xs));
        assert_int_equal(hf_buf_append(&hinted, xs, sizeof(xs)), 0);
        assert_int_equal(hf_buf_reserve(&hinted, 20u << 20), 0);
        assert_int_equal((uintptr_t)hinted.data % (2u << 20), 0);
        for (size_t i = 0; i < 100; i++)
                assert_int_equal(hinted.data[i], 'x');
        assert_int_equal(hinted.data[100], 0);
        assert_int_equal(
                smaps_huge_advised((void *)(((uintptr_t)hinted.data + 9 * huge) & ~(huge - 1))), 1);
}

static void test_buf_steal(void **state)
{
        HfBuf b = HF_BUF_INIT(100);
        _cleanup_free_ uint8_t *p = NULL;
        size_t len = 0;

        (void)state;
        assert_int_equal(hf_buf_puts(&b, "stolen"), 0);
        p = hf_buf_steal(&b, &len);
        assert_non_null(p);
        assert_int_equal(len, 6);
        assert_string_equal((char *)p, "stolen");
        assert_null(b.data);
        assert_int_equal(b.len, 0);
        assert_int_equal(b.cap, 0);
        /* The ceiling survives, so the buffer can be reused. */
        assert_int_equal(b.max, 100);
        assert_int_equal(hf_buf_puts(&b, "again"), 0);
        assert_string_equal((char *)b.data, "again");
        hf_buf_free(&b);
        assert_null(b.data);
        assert_null(hf_buf_steal(&b, &len));
        assert_int_equal(len, 0);
}

/* ---- hex, IDs ---- */

static void test_hex(void **state)
{
        static const uint8_t bytes[] = { 0x00, 0x01, 0xab, 0xff, 0x7e };
        uint8_t out[8];
        char hex[16];
        size_t n = 99;

        (void)state;
        hf_hex_encode(bytes, sizeof(bytes), hex);
        assert_string_equal(hex, "0001abff7e");
        assert_int_equal(hf_hex_decode("0001ABff7E", 10, out, sizeof(out), &n), 0);
        assert_int_equal(n, 5);
        assert_memory_equal(out, bytes, 5);
        assert_int_equal(hf_hex_decode("", 0, out, sizeof(out), &n), 0);
        assert_int_equal(n, 0);

        n = 99;
        assert_int_equal(hf_hex_decode("abc", 3, out, sizeof(out), &n), -EINVAL);
        assert_int_equal(hf_hex_decode("0g", 2, out, sizeof(out), &n), -EINVAL);
        assert_int_equal(hf_hex_decode("g0", 2, out, sizeof(out), &n), -EINVAL);
        assert_int_equal(hf_hex_decode(" 0", 2, out, sizeof(out), &n), -EINVAL);
        assert_int_equal(hf_hex_decode("0\0", 2, out, sizeof(out), &n), -EINVAL);
        assert_int_equal(hf_hex_decode("-1", 2, out, sizeof(out), &n), -EINVAL);
        /* More bytes than fit. */
        assert_int_equal(hf_hex_decode("000102030405060708", 18, out, sizeof(out), &n), -EINVAL);
        assert_int_equal(n, 99);
}

/* A copy that fits, one cut to the buffer, and the smallest buffer. */
static void test_copy_str(void **state)
{
        char d[5];

        (void)state;
        memset(d, 'x', sizeof(d));
        assert_true(hf_copy_str(d, sizeof(d), "abcd"));
        assert_string_equal(d, "abcd");
        memset(d, 'x', sizeof(d));
        assert_false(hf_copy_str(d, sizeof(d), "abcde"));
        assert_string_equal(d, "abcd");
        assert_true(hf_copy_str(d, sizeof(d), ""));
        assert_string_equal(d, "");
        assert_false(hf_copy_str(d, 1, "a"));
        assert_string_equal(d, "");
}

/* Every byte value in every place of an ID's 64 digits: accepted exactly when it is hex. */
static void test_hex_every_byte(void **state)
{
        char s[64];
        uint8_t out[32];

        (void)state;
        for (int c = 0; c < 256; c++) {
                bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
                           (c >= 'A' && c <= 'F');
                for (size_t k = 0; k < sizeof(s); k++) {
                        memset(s, '7', sizeof(s));
                        s[k] = (char)c;
                        int r = hf_hex_decode(s, sizeof(s), out, sizeof(out), NULL);
                        if (!hex) {
                                assert_int_equal(r, -EINVAL);
                                continue;
                        }
                        assert_int_equal(r, 0);
                        int v = c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
                        assert_int_equal(out[k / 2], k % 2 ? 0x70 | v : v << 4 | 7);
                        assert_int_equal(out[(k / 2 + 1) % 32], 0x77);
                }
        }
}

/*
 * Strings of every length up to 40 with one byte of each kind at every place, in a buffer of
 * exactly the text's size (so ASan sees any read past it): the scanner that looks at 16 bytes
 * at a time must stop where the byte-by-byte rules say.
 */
static void test_json_string_scan(void **state)
{
        static const uint8_t kinds[] = { '"', '\\', 0x01, 0x1f, 0x20, 0x7f, 0x80, 0xff };

        (void)state;
        for (size_t len = 1; len <= 40; len++)
                for (size_t k = 0; k < len; k++)
                        for (size_t t = 0; t < sizeof(kinds); t++)
                                for (int closed = 0; closed < 2; closed++) {
                                        size_t n = len + 1 + (size_t)closed;
                                        _cleanup_free_ char *text = malloc(n);
                                        const char *got = NULL;
                                        size_t got_len = 0;
                                        HfJson j;
                                        int r;

                                        assert_non_null(text);
                                        text[0] = '"';
                                        memset(text + 1, 'a', len);
                                        text[1 + k] = (char)kinds[t];
                                        if (closed)
                                                text[n - 1] = '"';
                                        hf_json_init(&j, text, n);
                                        r = hf_json_string_raw(&j, &got, &got_len);
                                        if (kinds[t] == '"') {
                                                assert_int_equal(r, 0);
                                                assert_int_equal(got_len, k);
                                                assert_ptr_equal(got, text + 1);
                                        } else if (kinds[t] < 0x20 || kinds[t] == '\\' || !closed) {
                                                /* a control byte, an escape (raw strings
                                                 * have none), or no closing quote */
                                                assert_int_equal(r, -EPROTO);
                                        } else {
                                                assert_int_equal(r, 0);
                                                assert_int_equal(got_len, len);
                                        }
                                }
}

static void test_id_parse(void **state)
{
        static const char good[] =
                "4fa1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f";
        char hex[HF_ID_HEX_LEN + 1], bad[HF_ID_HEX_LEN + 2];
        HfId id, keep, zero;

        (void)state;
        assert_int_equal(hf_id_parse(good, strlen(good), &id), 0);
        assert_int_equal(id.b[0], 0x4f);
        assert_int_equal(id.b[31], 0x8f);
        hf_id_hex(&id, hex);
        assert_string_equal(hex, good);
        assert_false(hf_id_is_zero(&id));

        /* Uppercase parses to the same ID. */
        for (size_t i = 0; i < HF_ID_HEX_LEN; i++)
                bad[i] = (char)(good[i] >= 'a' ? good[i] - 32 : good[i]);
        assert_int_equal(hf_id_parse(bad, HF_ID_HEX_LEN, &keep), 0);
        assert_true(hf_id_eq(&id, &keep));

        /* Wrong lengths and bad characters; the output is left alone. */
        keep = id;
        assert_int_equal(hf_id_parse(good, 63, &id), -EINVAL);
        memcpy(bad, good, HF_ID_HEX_LEN);
        bad[HF_ID_HEX_LEN] = '0';
        assert_int_equal(hf_id_parse(bad, HF_ID_HEX_LEN + 1, &id), -EINVAL);
        bad[HF_ID_HEX_LEN - 1] = 'z';
        assert_int_equal(hf_id_parse(bad, HF_ID_HEX_LEN, &id), -EINVAL);
        assert_int_equal(hf_id_parse("", 0, &id), -EINVAL);
        assert_true(hf_id_eq(&id, &keep));

        memset(&zero, 0, sizeof(zero));
        assert_true(hf_id_is_zero(&zero));
        assert_true(hf_id_cmp(&zero, &id) < 0);
        assert_true(hf_id_cmp(&id, &zero) > 0);
        assert_int_equal(hf_id_cmp(&id, &keep), 0);
}

/* ---- base64 ---- */

static void test_base64_rfc4648(void **state)
{
        static const char *const v[][2] = {
                { "", "" },
                { "f", "Zg==" },
                { "fo", "Zm8=" },
                { "foo", "Zm9v" },
                { "foob", "Zm9vYg==" },
                { "fooba", "Zm9vYmE=" },
                { "foobar", "Zm9vYmFy" },
        };
        _cleanup_buf_ HfBuf e = HF_BUF_INIT(1024), d = HF_BUF_INIT(1024);

        (void)state;
        for (size_t i = 0; i < ELEMENTSOF(v); i++) {
                hf_buf_reset(&e);
                hf_buf_reset(&d);
                assert_int_equal(hf_base64_encode(&e, v[i][0], strlen(v[i][0])), 0);
                assert_int_equal(e.len, strlen(v[i][1]));
                assert_string_equal((char *)e.data, v[i][1]);
                assert_int_equal(hf_base64_decode(&d, v[i][1], strlen(v[i][1])), 0);
                assert_int_equal(d.len, strlen(v[i][0]));
                assert_string_equal((char *)d.data, v[i][0]);
        }

        /* All 256 byte values, at every tail length. */
        for (size_t n = 0; n <= 258; n++) {
                uint8_t raw[258];

                for (size_t j = 0; j < n; j++)
                        raw[j] = (uint8_t)(j * 7 + n);
                hf_buf_reset(&e);
                hf_buf_reset(&d);
                assert_int_equal(hf_base64_encode(&e, raw, n), 0);
                assert_int_equal(e.len, (n + 2) / 3 * 4);
                assert_int_equal(hf_base64_decode(&d, (char *)e.data, e.len), 0);
                assert_int_equal(d.len, n);
                if (n)
                        assert_memory_equal(d.data, raw, n);
        }
}

static void test_base64_rejects(void **state)
{
        static const char *const bad[] = {
                "Zg=",      /* length not a multiple of 4 */
                "Zg",       /* unpadded */
                "Zm9vY",    /* ditto */
                "Z===",     /* three pad characters */
                "====",     /* nothing but padding */
                "Z=g=",     /* padding before data */
                "Zm=v",     /* ditto */
                "Zg==Zm8=", /* padding in the middle */
                "Zh==",     /* non-canonical: trailing bits set */
                "Zm9=",     /* ditto with one pad */
                "Zm9v!A==", /* character outside the alphabet */
                "Zm 9",     /* space */
                "Zm9\n",    /* newline */
                "-_-_",     /* URL-safe alphabet */
        };
        _cleanup_buf_ HfBuf d = HF_BUF_INIT(1024), small = HF_BUF_INIT(4);

        (void)state;
        assert_int_equal(hf_buf_puts(&d, "keep"), 0);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                assert_int_equal(hf_base64_decode(&d, bad[i], strlen(bad[i])), -EINVAL);
                /* A failed decode leaves what was there before. */
                assert_int_equal(d.len, 4);
                assert_string_equal((char *)d.data, "keep");
        }
        /* Appends after existing content. */
        assert_int_equal(hf_base64_decode(&d, "Zm9v", 4), 0);
        assert_string_equal((char *)d.data, "keepfoo");

        /* The ceiling holds both ways. */
        assert_int_equal(hf_base64_encode(&small, "abcd", 4), -E2BIG);
        assert_int_equal(small.len, 0);
        assert_int_equal(hf_base64_decode(&small, "Zm9vYmFy", 8), -E2BIG);
        assert_int_equal(small.len, 0);
}

/* ---- number parsing ---- */

static void test_parse_u64(void **state)
{
        static const char *const bad[] = { "",   "+1",   "-1",  " 1", "1 ",
                                           "1a", "0x10", "1.0", "１", "1\n" };
        uint64_t v = 0;

        (void)state;
        assert_int_equal(hf_parse_u64("0", &v), 0);
        assert_int_equal(v, 0);
        assert_int_equal(hf_parse_u64("4096", &v), 0);
        assert_int_equal(v, 4096);
        assert_int_equal(hf_parse_u64("18446744073709551615", &v), 0);
        assert_true(v == UINT64_MAX);
        assert_int_equal(hf_parse_u64("18446744073709551610", &v), 0);
        assert_true(v == UINT64_MAX - 5);

        v = 7;
        assert_int_equal(hf_parse_u64("18446744073709551616", &v), -ERANGE);
        assert_int_equal(hf_parse_u64("18446744073709551620", &v), -ERANGE);
        assert_int_equal(hf_parse_u64("99999999999999999999", &v), -ERANGE);
        assert_int_equal(hf_parse_u64("184467440737095516150", &v), -ERANGE);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(hf_parse_u64(bad[i], &v), -EINVAL);
        assert_int_equal(hf_parse_u64(NULL, &v), -EINVAL);
        assert_int_equal(v, 7);
}

static void test_parse_size(void **state)
{
        static const struct {
                const char *s;
                uint64_t v;
        } good[] = {
                { "4096", 4096 },
                { "0", 0 },
                { "16M", 16ULL << 20 },
                { "16m", 16ULL << 20 },
                { "16MiB", 16ULL << 20 },
                { "16MB", 16ULL << 20 },
                { "1.5G", 3ULL << 29 },
                { "1K", 1024 },
                { "2T", 2ULL << 40 },
                { "0.5K", 512 },
                { "1.25k", 1280 },
                { "1.5", 1 },
                { "18446744073709551615", UINT64_MAX },
                { "16777215T", 16777215ULL << 40 },
                /* The fraction times a large unit must not overflow on the way. */
                { "1.999999999T", (2ULL << 40) - 1100 },
                { "0.123456789T", 135742175033ULL },
                /* Digits past the ninth are ignored, not an error. */
                { "1.50000000001G", 3ULL << 29 },
        };
        static const char *const bad[] = { "x",    "",     "M",      "16Q", "16MiBx", "-1",
                                           " 16M", "16 M", "1.5.5G", ".5G", "0x10",   "16iB" };
        uint64_t v;

        (void)state;
        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                int r;

                v = 12345;
                r = hf_parse_size(good[i].s, &v);
                if (r != 0)
                        fail_msg("%s: error %d", good[i].s, r);
                if (v != good[i].v)
                        fail_msg("%s: got %llu, want %llu", good[i].s, (unsigned long long)v,
                                 (unsigned long long)good[i].v);
        }
        v = 12345;
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (hf_parse_size(bad[i], &v) != -EINVAL)
                        fail_msg("\"%s\" was not rejected", bad[i]);
        assert_int_equal(hf_parse_size("16777216T", &v), -ERANGE);
        assert_int_equal(hf_parse_size("18446744073709551616", &v), -ERANGE);
        assert_int_equal(hf_parse_size("99999999999999999999999", &v), -ERANGE);
        assert_int_equal(v, 12345);
}

/* ---- UTF-8 ---- */

static void test_utf8(void **state)
{
        static const struct {
                const char *s;
                size_t len;
                int32_t cp;
        } good[] = {
                { "A", 1, 'A' },
                { "\x7f", 1, 0x7f },
                { "\xc2\x80", 2, 0x80 },
                { "\xc3\xa9", 2, 0xe9 },
                { "\xdf\xbf", 2, 0x7ff },
                { "\xe0\xa0\x80", 3, 0x800 },
                { "\xe2\x82\xac", 3, 0x20ac },
                { "\xed\x9f\xbf", 3, 0xd7ff },
                { "\xee\x80\x80", 3, 0xe000 },
                { "\xef\xbf\xbf", 3, 0xffff },
                { "\xf0\x90\x80\x80", 4, 0x10000 },
                { "\xf0\x9f\x98\x80", 4, 0x1f600 },
                { "\xf4\x8f\xbf\xbf", 4, 0x10ffff },
        };
        static const char *const bad[] = {
                "\x80",             /* lone continuation */
                "\xbf",             /* ditto */
                "\xc0\x80",         /* overlong NUL */
                "\xc1\xbf",         /* overlong 0x7f */
                "\xe0\x80\x80",     /* overlong 3-byte */
                "\xe0\x9f\xbf",     /* overlong 0x7ff */
                "\xf0\x80\x80\x80", /* overlong 4-byte */
                "\xf0\x8f\xbf\xbf", /* overlong 0xffff */
                "\xed\xa0\x80",     /* surrogate U+D800 */
                "\xed\xbf\xbf",     /* surrogate U+DFFF */
                "\xf4\x90\x80\x80", /* above U+10FFFF */
                "\xf5\x80\x80\x80", /* lead byte never valid */
                "\xff",             /* ditto */
                "\xc3",             /* truncated 2-byte */
                "\xe2\x82",         /* truncated 3-byte */
                "\xf0\x9f\x98",     /* truncated 4-byte */
                "\xe2\x28\xa1",     /* bad continuation */
                "\xc3\xc3",         /* lead where continuation belongs */
        };
        int32_t cp;

        (void)state;
        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                assert_true(hf_utf8_valid(good[i].s, good[i].len));
                assert_int_equal(hf_utf8_decode((const uint8_t *)good[i].s, good[i].len, &cp),
                                 good[i].len);
                assert_int_equal(cp, good[i].cp);
                /* One byte short is a truncated sequence. */
                if (good[i].len > 1) {
                        assert_false(hf_utf8_valid(good[i].s, good[i].len - 1));
                        assert_int_equal(
                                hf_utf8_decode((const uint8_t *)good[i].s, good[i].len - 1, &cp),
                                1);
                        assert_int_equal(cp, -1);
                }
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                size_t n = strlen(bad[i]);

                if (hf_utf8_valid(bad[i], n))
                        fail_msg("bad[%zu] accepted", i);
                assert_int_equal(hf_utf8_decode((const uint8_t *)bad[i], n, &cp), 1);
                assert_int_equal(cp, -1);
        }

        assert_true(hf_utf8_valid("", 0));
        assert_true(hf_utf8_valid("h\xc3\xa9llo w\xc3\xb6rld \xe2\x82\xac", 17));
        /* NUL is a valid character when the length says so. */
        assert_true(hf_utf8_valid("a\0b", 3));
        /* A bad byte at the very end of otherwise good text. */
        assert_false(hf_utf8_valid("h\xc3\xa9llo\xc3", 7));
}

/* ---- files ---- */

/* cmocka setup: a fresh directory per test, removed by the teardown even when a test fails. */
static int tmpdir_setup(void **state)
{
        const char *t = getenv("TMPDIR");
        char *p;

        if (asprintf(&p, "%s/hf-test-base-XXXXXX", t && *t ? t : "/tmp") < 0)
                return -1;
        if (!mkdtemp(p)) {
                free(p);
                return -1;
        }
        *state = p;
        return 0;
}

/* Names in a flat directory, sorted, joined by '/'. */
static void list_dir(int dirfd, HfBuf *out)
{
        _cleanup_close_ int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct dirent **names = NULL;
        int n;
        char path[64];

        assert_true(fd >= 0);
        (void)snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        n = scandir(path, &names, NULL, alphasort);
        assert_true(n >= 0);
        hf_buf_reset(out);
        for (int i = 0; i < n; i++) {
                if (strcmp(names[i]->d_name, ".") != 0 && strcmp(names[i]->d_name, "..") != 0)
                        assert_int_equal(hf_buf_printf(out, "%s/", names[i]->d_name), 0);
                free(names[i]);
        }
        free(names);
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
        (void)st;
        (void)ftw;
        return type == FTW_DP ? rmdir(path) : unlink(path);
}

static int tmpdir_teardown(void **state)
{
        char *path = *state;
        int r = nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS);

        free(path);
        return r;
}

/* hf_page_cached: false for a byte dropped from the page cache (not on tmpfs, where the cache
 * is the storage) and past the end, true once read. */
/* Whether the page of fd at off is in the page cache, as mincore() sees it. */
static bool resident(int fd, size_t len, size_t off)
{
        long page = sysconf(_SC_PAGESIZE);
        unsigned char vec[64];
        void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
        int r;

        assert_true(m != MAP_FAILED);
        assert_true(len / (size_t)page < sizeof(vec));
        r = mincore(m, len, vec);
        munmap(m, len);
        assert_int_equal(r, 0);
        return vec[off / (size_t)page] & 1;
}

static void test_page_cached(void **state)
{
        const char *dir = *state;
        _cleanup_free_ char *path = NULL;
        static uint8_t data[64 * 1024];
        struct statfs sf;

        assert_true(asprintf(&path, "%s/cached", dir) > 0);
        memset(data, 0x5a, sizeof(data));
        _cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(hf_write_all(fd, data, sizeof(data)), 0);
        assert_int_equal(fsync(fd), 0);
        assert_int_equal(fstatfs(fd, &sf), 0);
        if (sf.f_type != TMPFS_MAGIC) {
                /* DONTNEED is advice: a page still held elsewhere for a moment (another CPU's
                 * LRU batch) stays. Asked again until mincore() sees it gone. */
                for (int i = 0; i < 100 && resident(fd, sizeof(data), sizeof(data) - 1); i++) {
                        assert_int_equal(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
                        if (resident(fd, sizeof(data), sizeof(data) - 1))
                                (void)nanosleep(&(struct timespec){ .tv_nsec = 10000000 }, NULL);
                }
                assert_false(resident(fd, sizeof(data), sizeof(data) - 1));
                assert_false(hf_page_cached(fd, sizeof(data) - 1));
        }
        assert_int_equal(hf_pread_all(fd, data, sizeof(data), 0), 0);
        assert_true(hf_page_cached(fd, 0));
        assert_true(hf_page_cached(fd, sizeof(data) - 1));
        assert_false(hf_page_cached(fd, sizeof(data)));
}

static void test_write_file_atomic(void **state)
{
        const char *dir = *state;
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_buf_ HfBuf b = HF_BUF_INIT(1 << 20), names = HF_BUF_INIT(4096);
        char longname[600];
        struct stat st;

        assert_true(dfd >= 0);
        assert_int_equal(hf_write_file_atomic_at(dfd, "config", "first", 5, 0400, true), 0);
        assert_int_equal(hf_read_file_at(dfd, "config", 1024, &b), 0);
        assert_string_equal((char *)b.data, "first");
        assert_int_equal(fstatat(dfd, "config", &st, 0), 0);
        assert_int_equal(st.st_mode & 07777, 0400);
        assert_true(S_ISREG(st.st_mode));

        /* Exclusive never replaces: -EEXIST and the old content stays. */
        assert_int_equal(hf_write_file_atomic_at(dfd, "config", "second", 6, 0644, true), -EEXIST);
        hf_buf_reset(&b);
        assert_int_equal(hf_read_file_at(dfd, "config", 1024, &b), 0);
        assert_string_equal((char *)b.data, "first");
        assert_int_equal(fstatat(dfd, "config", &st, 0), 0);
        assert_int_equal(st.st_mode & 07777, 0400);

        /* Non-exclusive replaces, with the new mode. */
        assert_int_equal(hf_write_file_atomic_at(dfd, "config", "third!", 6, 0640, false), 0);
        hf_buf_reset(&b);
        assert_int_equal(hf_read_file_at(dfd, "config", 1024, &b), 0);
        assert_string_equal((char *)b.data, "third!");
        assert_int_equal(fstatat(dfd, "config", &st, 0), 0);
        assert_int_equal(st.st_mode & 07777, 0640);

        /* Empty contents and a mode umask would normally strip. */
        assert_int_equal(hf_write_file_atomic_at(dfd, "empty", "", 0, 0666, true), 0);
        assert_int_equal(fstatat(dfd, "empty", &st, 0), 0);
        assert_int_equal(st.st_size, 0);
        assert_int_equal(st.st_mode & 07777, 0666);

        /* A name too long for the temp file fails cleanly. */
        memset(longname, 'n', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = 0;
        assert_true(hf_write_file_atomic_at(dfd, longname, "x", 1, 0644, true) < 0);
        assert_int_equal(hf_write_file_atomic_at(-1, "x", "x", 1, 0644, true), -EBADF);

        /* No temp files left behind by any of the above. */
        list_dir(dfd, &names);
        assert_string_equal((char *)names.data, "config/empty/");
}

static void test_read_fd_ceiling(void **state)
{
        const char *dir = *state;
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_buf_ HfBuf b = HF_BUF_INIT(1 << 20);
        static char data[100000];
        int fd, p[2];

        assert_true(dfd >= 0);
        for (size_t i = 0; i < sizeof(data); i++)
                data[i] = (char)('a' + i % 26);
        assert_int_equal(hf_write_file_atomic_at(dfd, "f", data, 100, 0644, true), 0);
        assert_int_equal(hf_write_file_atomic_at(dfd, "big", data, sizeof(data), 0644, true), 0);
        assert_int_equal(hf_write_file_atomic_at(dfd, "zero", "", 0, 0644, true), 0);

        /* Exactly at the ceiling is fine; one byte over is -E2BIG. */
        assert_int_equal(hf_read_file_at(dfd, "f", 100, &b), 0);
        assert_int_equal(b.len, 100);
        assert_memory_equal(b.data, data, 100);
        hf_buf_reset(&b);
        assert_int_equal(hf_read_file_at(dfd, "f", 99, &b), -E2BIG);
        hf_buf_reset(&b);
        assert_int_equal(hf_read_file_at(dfd, "f", 1, &b), -E2BIG);
        hf_buf_reset(&b);
        assert_int_equal(hf_read_file_at(dfd, "zero", 0, &b), 0);
        assert_int_equal(b.len, 0);
        assert_int_equal(hf_read_file_at(dfd, "f", 0, &b), -E2BIG);
        hf_buf_reset(&b);
        assert_int_equal(hf_read_file_at(dfd, "big", sizeof(data), &b), 0);
        assert_int_equal(b.len, sizeof(data));
        assert_memory_equal(b.data, data, sizeof(data));
        hf_buf_reset(&b);
        assert_int_equal(hf_read_file_at(dfd, "big", sizeof(data) - 1, &b), -E2BIG);
        hf_buf_reset(&b);
        assert_int_equal(hf_read_file_at(dfd, "missing", 100, &b), -ENOENT);

        /* From the current position, and the ceiling counts what this call reads. */
        fd = openat(dfd, "f", O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(lseek(fd, 40, SEEK_SET), 40);
        hf_buf_reset(&b);
        assert_int_equal(hf_buf_puts(&b, "prefix"), 0);
        assert_int_equal(hf_read_fd(fd, 60, &b), 0);
        assert_int_equal(b.len, 66);
        assert_memory_equal(b.data + 6, data + 40, 60);
        assert_int_equal(close(fd), 0);

        /* The buffer's own ceiling applies as well. */
        {
                _cleanup_buf_ HfBuf tiny = HF_BUF_INIT(50);
                assert_int_equal(hf_read_file_at(dfd, "f", 1000, &tiny), -E2BIG);
        }

        /* A pipe has no size to go by. */
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        assert_int_equal(hf_write_all(p[1], data, 5000), 0);
        assert_int_equal(close(p[1]), 0);
        hf_buf_reset(&b);
        assert_int_equal(hf_read_fd(p[0], 4999, &b), -E2BIG);
        assert_int_equal(close(p[0]), 0);

        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        assert_int_equal(hf_write_all(p[1], data, 5000), 0);
        assert_int_equal(close(p[1]), 0);
        hf_buf_reset(&b);
        assert_int_equal(hf_read_fd(p[0], 5000, &b), 0);
        assert_int_equal(b.len, 5000);
        assert_memory_equal(b.data, data, 5000);
        assert_int_equal(close(p[0]), 0);
}

static void test_pread_mkdir(void **state)
{
        const char *dir = *state;
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_free_ char *deep = NULL, *d1 = NULL, *d2 = NULL;
        _cleanup_close_ int fd = -1;
        char got[8];
        struct stat st;

        assert_int_equal(hf_write_file_atomic_at(dfd, "f", "0123456789", 10, 0644, true), 0);
        fd = openat(dfd, "f", O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(hf_pread_all(fd, got, 4, 3), 0);
        assert_memory_equal(got, "3456", 4);
        assert_int_equal(hf_pread_all(fd, got, 4, 8), -ENODATA);

        assert_true(asprintf(&d1, "%s/a", dir) > 0);
        assert_true(asprintf(&d2, "%s/a/b", dir) > 0);
        assert_true(asprintf(&deep, "%s/a/b/c", dir) > 0);
        assert_int_equal(hf_mkdir_p(deep, 0755), 0);
        assert_int_equal(stat(deep, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(hf_mkdir_p(deep, 0755), 0); /* existing is fine */
        assert_int_equal(hf_mkdir_p("", 0755), -ENOENT);
        assert_int_equal(rmdir(deep), 0);
        assert_int_equal(rmdir(d2), 0);
        assert_int_equal(rmdir(d1), 0);
}

typedef struct Mounts {
        bool proc_seen, root_seen;
        size_t n, outside;
        const char *below;
        uint64_t proc_id;
        dev_t proc_dev;
} Mounts;

static int collect_mount(void *ud, const HfMountEntry *e)
{
        Mounts *m = ud;

        m->n++;
        if (strcmp(e->path, "/proc") == 0 && strcmp(e->type, "proc") == 0) {
                m->proc_seen = true;
                m->proc_id = e->id;
                m->proc_dev = e->dev;
        }
        if (strcmp(e->path, "/") == 0)
                m->root_seen = true;
        if (strncmp(e->path, m->below, strlen(m->below)) != 0 || e->path[strlen(m->below)] != '/')
                m->outside++;
        return 0;
}

static int stop_at_first(void *ud, const HfMountEntry *e)
{
        (void)ud, (void)e;
        return -ECANCELED;
}

/* Mount points strictly below a path: /proc below /, with the mount ID statx gives and the
 * device stat gives; nothing outside /proc below /proc; the source of the mount on /proc. */
static void test_mounts_below(void **state)
{
        Mounts all = { .below = "" }, proc = { .below = "/proc" };
        struct stat st;

        (void)state;
        assert_int_equal(hf_mounts_below("/", collect_mount, &all), 0);
        assert_true(all.proc_seen);
        assert_false(all.root_seen);
        assert_int_equal(all.outside, 0);
        assert_true(all.proc_id != 0);
        assert_true(all.proc_id == hf_mount_id(AT_FDCWD, "/proc"));
        assert_int_equal(stat("/proc", &st), 0);
        assert_true(all.proc_dev == st.st_dev);
        assert_int_equal(hf_mounts_below("/proc", collect_mount, &proc), 0);
        assert_false(proc.proc_seen);
        assert_int_equal(proc.outside, 0);
        assert_true(proc.n < all.n);
        assert_int_equal(hf_mounts_below("/", stop_at_first, NULL), -ECANCELED);

        char src[64];
        assert_int_equal(hf_mount_source("/proc", src, sizeof(src)), 0);
        assert_string_equal(src, "proc");
        assert_int_equal(hf_mount_source("/proc/self", src, sizeof(src)), -ENOENT);
        assert_int_equal(hf_mount_source("/proc", src, 3), -ENAMETOOLONG);
}

/* Filesystem names by statfs's f_type: the ones told apart, NULL for others; a real tmpfs. */
static void test_fs_type_name(void **state)
{
        struct statfs sf;

        (void)state;
        assert_string_equal(hf_fs_type_name(EXT4_SUPER_MAGIC), "ext4");
        assert_string_equal(hf_fs_type_name(XFS_SUPER_MAGIC), "xfs");
        assert_string_equal(hf_fs_type_name(BTRFS_SUPER_MAGIC), "btrfs");
        assert_string_equal(hf_fs_type_name(OVERLAYFS_SUPER_MAGIC), "overlay");
        assert_string_equal(hf_fs_type_name(NFS_SUPER_MAGIC), "nfs");
        assert_null(hf_fs_type_name(PROC_SUPER_MAGIC));
        assert_null(hf_fs_type_name(0));
        assert_int_equal(statfs("/dev/shm", &sf), 0);
        assert_string_equal(hf_fs_type_name((unsigned long)sf.f_type), "tmpfs");
}

/* A deleted file's content through a reopened fd, at an offset of its own; from an O_PATH fd
 * too. */
static void test_fd_reopen(void **state)
{
        const char *dir = *state;
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_close_ int fd = -1, again = -1;
        char got[4];

        fd = openat(dfd, "f", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(hf_write_all(fd, "wiped", 5), 0);
        assert_int_equal(unlinkat(dfd, "f", 0), 0);
        again = hf_fd_reopen(fd, O_RDONLY);
        assert_true(again >= 0);
        assert_int_equal(read(again, got, 4), 4);
        assert_memory_equal(got, "wipe", 4);
        assert_int_equal(lseek(fd, 0, SEEK_CUR), 5);
        assert_true(fcntl(again, F_GETFD) & FD_CLOEXEC);
        assert_int_equal(hf_fd_reopen(-1, O_RDONLY), -ENOENT);

        /* The sentinel keeps the watcher's O_PATH fd and reads through it after the file is
         * deleted. */
        _cleanup_close_ int path = -1, readable = -1;
        assert_int_equal(hf_write_file_atomic_at(dfd, "g", "kept", 4, 0644, false), 0);
        path = openat(dfd, "g", O_PATH | O_CLOEXEC);
        assert_true(path >= 0);
        assert_int_equal(read(path, got, 4), -1);
        assert_int_equal(unlinkat(dfd, "g", 0), 0);
        readable = hf_fd_reopen(path, O_RDONLY);
        assert_true(readable >= 0);
        assert_int_equal(read(readable, got, 4), 4);
        assert_memory_equal(got, "kept", 4);
}

static void test_format(void **state)
{
        char buf[32];

        (void)state;
        assert_string_equal(hf_format_bytes(buf, sizeof(buf), 0), "0 B");
        assert_string_equal(hf_format_bytes(buf, sizeof(buf), 1023), "1023 B");
        assert_string_equal(hf_format_bytes(buf, sizeof(buf), 1536), "1.50 KiB");
        assert_string_equal(hf_format_bytes(buf, sizeof(buf), 3ULL << 29), "1.50 GiB");
        assert_string_equal(hf_format_duration(buf, sizeof(buf), 62), "1m02s");
        assert_string_equal(hf_format_duration(buf, sizeof(buf), 3723), "1h02m03s");
        assert_string_equal(hf_format_duration(buf, sizeof(buf), 1.5), "1.50s");
}

/* ---- HfQueue ---- */

#define Q_PER_PRODUCER 20000
#define Q_PRODUCERS 2
#define Q_CONSUMERS 2
#define Q_TOTAL ((size_t)Q_PRODUCERS * Q_PER_PRODUCER)

typedef struct {
        HfQueue *q;
        int id;
        atomic_uint *seen;
        atomic_size_t *popped;
} QArg;

static void *producer(void *p)
{
        QArg *a = p;

        for (uintptr_t i = 0; i < Q_PER_PRODUCER; i++) {
                /* Items are 1-based: NULL means "closed and empty". */
                uintptr_t item = (uintptr_t)a->id * Q_PER_PRODUCER + i + 1;
                if (hf_queue_push(a->q, (void *)item) < 0)
                        return (void *)1;
        }
        return NULL;
}

static void *consumer(void *p)
{
        QArg *a = p;
        void *item;

        while ((item = hf_queue_pop(a->q))) {
                uintptr_t v = (uintptr_t)item - 1;
                if (v < Q_TOTAL)
                        atomic_fetch_add(&a->seen[v], 1);
                atomic_fetch_add(a->popped, 1);
        }
        return NULL;
}

static int join_within(pthread_t t, double seconds, void **ret)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += (time_t)seconds;
        return pthread_timedjoin_np(t, ret, &ts);
}

static void queue_mpmc(size_t resume_at)
{
        _cleanup_(hf_queue_freep) HfQueue *q = NULL;
        _cleanup_free_ atomic_uint *seen = calloc(Q_TOTAL, sizeof(*seen));
        atomic_size_t popped = 0;
        pthread_t prod[Q_PRODUCERS], cons[Q_CONSUMERS];
        QArg pa[Q_PRODUCERS], ca[Q_CONSUMERS];

        assert_non_null(seen);
        /* A small capacity so producers really block on a full queue. */
        assert_int_equal(hf_queue_new(3, &q), 0);
        hf_queue_resume_at(q, resume_at);
        for (int i = 0; i < Q_CONSUMERS; i++) {
                ca[i] = (QArg){ .q = q, .id = i, .seen = seen, .popped = &popped };
                assert_int_equal(pthread_create(&cons[i], NULL, consumer, &ca[i]), 0);
        }
        for (int i = 0; i < Q_PRODUCERS; i++) {
                pa[i] = (QArg){ .q = q, .id = i, .seen = seen, .popped = &popped };
                assert_int_equal(pthread_create(&prod[i], NULL, producer, &pa[i]), 0);
        }
        for (int i = 0; i < Q_PRODUCERS; i++) {
                void *ret = (void *)2;
                assert_int_equal(join_within(prod[i], 60, &ret), 0);
                assert_null(ret);
        }
        hf_queue_close(q);
        for (int i = 0; i < Q_CONSUMERS; i++)
                assert_int_equal(join_within(cons[i], 60, NULL), 0);

        assert_int_equal(atomic_load(&popped), Q_TOTAL);
        for (size_t i = 0; i < Q_TOTAL; i++)
                if (atomic_load(&seen[i]) != 1)
                        fail_msg("item %zu popped %u times", i, atomic_load(&seen[i]));
}

static void test_queue_mpmc(void **state)
{
        (void)state;
        queue_mpmc(2); /* the default: a producer resumes as soon as there is room */
        queue_mpmc(0); /* both producers wait for an empty queue, and both are woken */
}

typedef struct {
        HfQueue *q;
        atomic_bool started, pushed;
} LateArg;

static void *push_late(void *p)
{
        LateArg *a = p;
        int r;

        atomic_store(&a->started, true);
        r = hf_queue_push(a->q, (void *)"late");

        atomic_store(&a->pushed, true);
        return (void *)(intptr_t)r;
}

/* A producer blocked on a full queue stays blocked until it is down to resume_at items. */
static void test_queue_resume_at(void **state)
{
        static const char *const items[] = { "1", "2", "3", "4", "5", "6", "7", "8" };
        _cleanup_(hf_queue_freep) HfQueue *q = NULL;
        LateArg a = { 0 };
        pthread_t t;
        void *ret = (void *)1;

        (void)state;
        assert_int_equal(hf_queue_new(8, &q), 0);
        hf_queue_resume_at(q, 4);
        for (size_t i = 0; i < 8; i++)
                assert_int_equal(hf_queue_push(q, (void *)items[i]), 0);
        a.q = q;
        assert_int_equal(pthread_create(&t, NULL, push_late, &a), 0);
        /* Give it time to block on the full queue before anything is taken. */
        while (!atomic_load(&a.started))
                (void)usleep(1000);
        (void)usleep(200000);
        assert_false(atomic_load(&a.pushed));
        for (size_t i = 0; i < 3; i++) {
                assert_string_equal(hf_queue_pop(q), items[i]);
                (void)usleep(20000);
                if (atomic_load(&a.pushed))
                        fail_msg("the producer resumed with %zu items queued, not 4", 7 - i);
        }
        assert_string_equal(hf_queue_pop(q), items[3]);
        assert_int_equal(join_within(t, 10, &ret), 0);
        assert_null(ret);
        for (size_t i = 4; i < 8; i++)
                assert_string_equal(hf_queue_pop(q), items[i]);
        assert_string_equal(hf_queue_pop(q), "late");
        hf_queue_close(q);
        assert_null(hf_queue_pop(q));
}

static void *pop_one(void *p)
{
        return hf_queue_pop(p);
}

static void *push_one(void *p)
{
        return (void *)(intptr_t)hf_queue_push(p, (void *)"late");
}

static void test_queue_close(void **state)
{
        _cleanup_(hf_queue_freep) HfQueue *q = NULL;
        pthread_t t[2];
        void *ret;

        (void)state;
        assert_int_equal(hf_queue_new(0, &q), -EINVAL);
        assert_null(q);
        assert_int_equal(hf_queue_new(1, &q), 0);

        /* Consumers blocked on an empty queue wake up with NULL when it closes. */
        assert_int_equal(pthread_create(&t[0], NULL, pop_one, q), 0);
        assert_int_equal(pthread_create(&t[1], NULL, pop_one, q), 0);
        (void)usleep(50000);
        hf_queue_close(q);
        for (int i = 0; i < 2; i++) {
                ret = (void *)1;
                assert_int_equal(join_within(t[i], 10, &ret), 0);
                assert_null(ret);
        }
        assert_int_equal(hf_queue_push(q, (void *)"x"), -EPIPE);
        assert_null(hf_queue_pop(q));
        hf_queue_free(TAKE_PTR(q));

        /* trypop does not wait: NULL on an empty queue, else the oldest item. */
        assert_int_equal(hf_queue_new(4, &q), 0);
        assert_null(hf_queue_trypop(q));
        assert_int_equal(hf_queue_push(q, (void *)"first"), 0);
        assert_int_equal(hf_queue_push(q, (void *)"second"), 0);
        assert_string_equal(hf_queue_trypop(q), "first");
        assert_string_equal(hf_queue_trypop(q), "second");
        assert_null(hf_queue_trypop(q));
        hf_queue_free(TAKE_PTR(q));

        /* Items pushed before the close are still drained, then NULL. */
        assert_int_equal(hf_queue_new(4, &q), 0);
        assert_int_equal(hf_queue_push(q, (void *)"a"), 0);
        assert_int_equal(hf_queue_push(q, (void *)"b"), 0);
        hf_queue_close(q);
        assert_string_equal(hf_queue_pop(q), "a");
        assert_string_equal(hf_queue_pop(q), "b");
        assert_null(hf_queue_pop(q));
        hf_queue_free(TAKE_PTR(q));

        /* A producer blocked on a full queue gets -EPIPE when it closes. */
        assert_int_equal(hf_queue_new(1, &q), 0);
        assert_int_equal(hf_queue_push(q, (void *)"fill"), 0);
        assert_int_equal(pthread_create(&t[0], NULL, push_one, q), 0);
        (void)usleep(50000);
        hf_queue_close(q);
        assert_int_equal(join_within(t[0], 10, &ret), 0);
        assert_int_equal((int)(intptr_t)ret, -EPIPE);
        assert_string_equal(hf_queue_pop(q), "fill");
        assert_null(hf_queue_pop(q));
        assert_null(hf_queue_free(NULL));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_buf_ceiling),
                cmocka_unit_test(test_buf_grow_printf),
                cmocka_unit_test(test_buf_unlimited),
                cmocka_unit_test(test_buf_steal),
                cmocka_unit_test(test_mem_hint_huge),
                cmocka_unit_test(test_buf_hint_huge),
                cmocka_unit_test(test_hex),
                cmocka_unit_test(test_copy_str),
                cmocka_unit_test(test_hex_every_byte),
                cmocka_unit_test(test_json_string_scan),
                cmocka_unit_test(test_id_parse),
                cmocka_unit_test(test_base64_rfc4648),
                cmocka_unit_test(test_base64_rejects),
                cmocka_unit_test(test_parse_u64),
                cmocka_unit_test(test_parse_size),
                cmocka_unit_test(test_utf8),
                cmocka_unit_test_setup_teardown(test_write_file_atomic, tmpdir_setup,
                                                tmpdir_teardown),
                cmocka_unit_test_setup_teardown(test_read_fd_ceiling, tmpdir_setup,
                                                tmpdir_teardown),
                cmocka_unit_test_setup_teardown(test_pread_mkdir, tmpdir_setup, tmpdir_teardown),
                cmocka_unit_test_setup_teardown(test_fd_reopen, tmpdir_setup, tmpdir_teardown),
                cmocka_unit_test(test_mounts_below),
                cmocka_unit_test(test_fs_type_name),
                cmocka_unit_test_setup_teardown(test_page_cached, tmpdir_setup, tmpdir_teardown),
                cmocka_unit_test(test_format),
                cmocka_unit_test(test_queue_mpmc),
                cmocka_unit_test(test_queue_resume_at),
                cmocka_unit_test(test_queue_close),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
