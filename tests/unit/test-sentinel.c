/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The sentinel's pure parts: the config parser, magic detection, the changed-bytes features
 * and the per-file verdicts (the detection core: every attack emulator of tests/sentinel/
 * and every benign workload shape has a case here).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "../../src/sentinel/sentinel.h"

static const char *PARSE_OK = "# comment\n"
                              "[sentinel]\n"
                              "action = stop   # trailing comment\n"
                              "mode = open-perm\n"
                              "state = /var/lib/x/\n"
                              "threshold = 12\n"
                              "alert-threshold = 4.5\n"
                              "window = 600\n"
                              "copy-limit = 64M\n"
                              "decoys = no\n"
                              "raw-disk-guard = off\n"
                              "[protect]\n"
                              "path = /srv/www\n"
                              "path = /srv/www\n"
                              "exclude = /srv/www/cache\n"
                              "[trust]\n"
                              "program = /usr/sbin/logrotate tree\n"
                              "program = /bin/gzip parent=/usr/sbin/logrotate sha256="
                              "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"
                              "[alerts]\n"
                              "syslog = no\n"
                              "file = alerts.jsonl\n"
                              "webhook = https://hooks.example.org/x\n";

static void test_config_ok(void **state)
{
        HfSentinelConfig c;
        char err[256] = "";

        (void)state;
        hf_sentinel_config_init(&c);
        assert_int_equal(c.action, HF_ACTION_KILL);
        assert_true(c.decoys && c.raw_disk_guard);
        assert_int_equal(hf_sentinel_config_parse(&c, PARSE_OK, strlen(PARSE_OK), err, sizeof(err)),
                         0);
        assert_int_equal(c.action, HF_ACTION_STOP);
        assert_int_equal(c.mode, HF_MODE_OPEN_PERM);
        assert_string_equal(c.state_dir, "/var/lib/x");
        assert_true(c.threshold == 12 && c.alert_threshold == 4.5 && c.window == 600);
        assert_int_equal(c.copy_limit, 64 << 20);
        assert_false(c.decoys || c.raw_disk_guard || c.syslog);
        assert_int_equal(c.n_paths, 1); /* duplicates collapse */
        assert_string_equal(c.paths[0], "/srv/www");
        assert_int_equal(c.n_exclude, 1);
        assert_int_equal(c.n_trusted, 2);
        assert_true(c.trusted[0].tree && !c.trusted[0].parent && !c.trusted[0].has_sha256);
        assert_string_equal(c.trusted[1].parent, "/usr/sbin/logrotate");
        assert_true(c.trusted[1].has_sha256 && c.trusted[1].sha256[0] == 0x01);
        assert_string_equal(c.alert_file, "alerts.jsonl");
        assert_string_equal(c.webhook, "https://hooks.example.org/x");
        hf_sentinel_config_done(&c);
}

static void bad(const char *text, const char *want)
{
        HfSentinelConfig c;
        char err[256] = "";

        hf_sentinel_config_init(&c);
        assert_int_equal(hf_sentinel_config_parse(&c, text, strlen(text), err, sizeof(err)),
                         -EPROTO);
        if (!strstr(err, want))
                fail_msg("error \"%s\" does not mention \"%s\"", err, want);
        hf_sentinel_config_done(&c);
}

static void test_config_bad(void **state)
{
        (void)state;
        bad("[sentinel]\naction = explode\n", "line 2");
        bad("action = kill\n", "line 1");
        bad("[nope]\n", "unknown section");
        bad("[sentinel]\nthreshhold = 3\n", "threshhold");
        bad("[protect]\npath = relative/path\n", "line 2");
        bad("[protect]\npath = /a/../b\n", "bad value");
        bad("[protect]\npath = /a//b\n", "bad value");
        bad("[trust]\nprogram = /bin/x sha256=12\n", "bad value");
        bad("[trust]\nprogram = /bin/x parent=y\n", "bad value");
        bad("[trust]\nprogram = /bin/x bogus\n", "bad value");
        bad("[alerts]\nwebhook = ftp://x\n", "bad value");
        bad("[alerts]\nwebhook = http://a'b\n", "bad value");
        bad("[alerts]\nfile = ../../etc/passwd\n", "bad value");
        bad("[sentinel]\nwindow = 0\n", "bad value");
        bad("[sentinel]\nthreshold = nan\n", "bad value");
        bad("[sentinel\n", "section");
        bad("[sentinel]\ndecoys = maybe\n", "bad value");
        char nul[] = "[sentinel]\naction = k\0ill\n";
        HfSentinelConfig c;
        char err[256];
        hf_sentinel_config_init(&c);
        assert_int_equal(hf_sentinel_config_parse(&c, nul, sizeof(nul) - 1, err, sizeof(err)),
                         -EPROTO);
        hf_sentinel_config_done(&c);
}

static void test_magic(void **state)
{
        (void)state;
        assert_int_equal(hf_magic_detect((const uint8_t *)"%PDF-1.7\n", 9), HF_MAGIC_PDF);
        assert_int_equal(hf_magic_detect((const uint8_t *)"\x89PNG\r\n\x1a\nxx", 10), HF_MAGIC_PNG);
        assert_int_equal(hf_magic_detect((const uint8_t *)"SQLite format 3\0xx", 18),
                         HF_MAGIC_SQLITE);
        assert_int_equal(hf_magic_detect((const uint8_t *)"\x1f\x8b\x08", 3), HF_MAGIC_GZIP);
        assert_int_equal(hf_magic_detect((const uint8_t *)"hello world\n", 12), HF_MAGIC_TEXT);
        assert_int_equal(hf_magic_detect((const uint8_t *)"", 0), HF_MAGIC_EMPTY);
        assert_int_equal(hf_magic_detect((const uint8_t *)"\x01\x02\x03\x04\x05\x06", 6),
                         HF_MAGIC_NONE);
        assert_true(hf_magic_is_dense(HF_MAGIC_PNG) && !hf_magic_is_dense(HF_MAGIC_TEXT));
}

/* Deterministic "random" bytes (a xorshift): enough for entropy tests. */
static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
        uint64_t x = seed | 1;
        for (size_t i = 0; i < n; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                p[i] = (uint8_t)(x >> 24);
        }
}

static void fill_text(uint8_t *p, size_t n)
{
        static const char *const w[] = { "invoice ", "customer ", "total ", "paid ",
                                         "order ",   "the ",      "a ",     "report\n" };
        size_t i = 0, k = 0;
        while (i < n) {
                const char *s = w[(k * 7 + k / 3) % 8];
                for (; *s && i < n; s++)
                        p[i++] = (uint8_t)*s;
                k++;
        }
}

static HfFileVerdict verdict(const uint8_t *pre, size_t pn, const uint8_t *post, size_t qn)
{
        HfFeatures f;
        hf_analyze_buffers(pre, pn, pn, post, qn, qn, &f);
        return hf_file_verdict(&f);
}

#define N 65536

static void test_verdicts(void **state)
{
        static uint8_t pre[N], post[N];
        (void)state;

        fill_text(pre, N);
        /* Full encryption. */
        fill_random(post, N, 1);
        assert_int_equal(verdict(pre, N, post, N), HF_FILE_ENCRYPTED);
        /* Intermittent: every 16th 4 KiB block. */
        memcpy(post, pre, N);
        for (size_t off = 0; off < N; off += 16 * 4096)
                fill_random(post + off, 4096, off + 7);
        assert_int_equal(verdict(pre, N, post, N), HF_FILE_ENCRYPTED);
        /* LockFile: every other 16 bytes, block 1 only, header kept. */
        memcpy(post, pre, N);
        for (size_t off = 4096; off < 8192; off += 32)
                fill_random(post + off, 16, off);
        assert_int_equal(verdict(pre, N, post, N), HF_FILE_ENCRYPTED);
        /* Base64 ciphertext over text. */
        static const char b64[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        fill_random(post, N, 3);
        for (size_t i = 0; i < N; i++)
                post[i] = (i % 77 == 76) ? '\n' : (uint8_t)b64[post[i] & 63];
        assert_int_equal(verdict(pre, N, post, N), HF_FILE_MASKED);
        /* Truncation and zero wipes. */
        assert_int_equal(verdict(pre, N, post, 0), HF_FILE_TRUNCATED);
        memset(post, 0, N);
        assert_int_equal(verdict(pre, N, post, N), HF_FILE_WIPED);
        /* Benign: an edit of the text; appending text; a PNG conversion. */
        memcpy(post, pre, N);
        memcpy(post + 100, "changed words here", 18);
        assert_int_equal(verdict(pre, N, post, N), HF_FILE_BENIGN);
        assert_int_equal(verdict(pre, N / 2, pre, N), HF_FILE_BENIGN);
        fill_random(post, N, 4);
        memcpy(post, "\x89PNG\r\n\x1a\n", 8);
        memcpy(pre, "P6\n160 120\n255\n", 15);
        assert_int_equal(verdict(pre, N, post, N), HF_FILE_BENIGN);
        /* New files: random with no format is the "encrypted copy"; gzip is not. */
        HfFeatures f;
        fill_random(post, N, 5);
        hf_analyze_buffers(NULL, 0, 0, post, N, N, &f);
        assert_int_equal(hf_file_verdict(&f), HF_FILE_NEW_RANDOM);
        memcpy(post, "\x1f\x8b\x08\x00", 4);
        hf_analyze_buffers(NULL, 0, 0, post, N, N, &f);
        assert_int_equal(hf_file_verdict(&f), HF_FILE_BENIGN);
        /* A PDF whose header is overwritten by random bytes. */
        fill_text(pre, N);
        memcpy(pre, "%PDF-1.4\n", 9);
        memcpy(post, pre, N);
        fill_random(post, 1024, 9);
        assert_int_equal(verdict(pre, N, post, N), HF_FILE_ENCRYPTED);
        /* Tiny changes say nothing. */
        memcpy(post, pre, N);
        fill_random(post + 500, 100, 10);
        assert_int_equal(verdict(pre, N, post, N), HF_FILE_BENIGN);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_config_ok),
                cmocka_unit_test(test_config_bad),
                cmocka_unit_test(test_magic),
                cmocka_unit_test(test_verdicts),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
