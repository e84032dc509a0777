/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/base/util.h"
#include "src/recover/recover.h"
#include "src/sentinel/retention.h"

/* ---- the journal ---- */

static const char SHA_A[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static void test_journal_roundtrip(void **state)
{
        _cleanup_buf_ HfBuf b = HF_BUF_INIT(1 << 20);
        HfJournal j;
        (void)state;

        assert_int_equal(hf_buf_puts(&b, "holdfast-recover-journal 1 1764216000.250000\n"), 0);
        assert_int_equal(hf_journal_format(&b, HF_JOURNAL_DONE, SHA_A, "/srv/a b/%x\tz"), 0);
        assert_int_equal(hf_journal_format(&b, HF_JOURNAL_REMOVED, NULL, "/srv/note.txt"), 0);
        assert_int_equal(hf_journal_format(&b, HF_JOURNAL_KEPT, "", "/srv/\xc3\xa9t\xc3\xa9"), 0);
        assert_int_equal(hf_buf_puts(&b, "C 1764216001.0\n"), 0);
        /* The escapes keep each entry on one line of printable ASCII. */
        assert_non_null(strstr((const char *)b.data, "D "
                                                     "0123"));
        assert_non_null(strstr((const char *)b.data, "/srv/a%20b/%25x%09z"));

        assert_int_equal(hf_journal_parse((const char *)b.data, b.len, &j), 0);
        assert_int_equal(j.n, 3);
        assert_true(j.complete);
        assert_true(j.began > 1764216000.0 && j.began < 1764216000.5);
        assert_int_equal(j.v[0].verb, HF_JOURNAL_DONE);
        assert_string_equal(j.v[0].sha256, SHA_A);
        assert_string_equal(j.v[0].path, "/srv/a b/%x\tz");
        assert_int_equal(j.v[1].verb, HF_JOURNAL_REMOVED);
        assert_string_equal(j.v[1].sha256, "");
        assert_string_equal(j.v[2].path, "/srv/\xc3\xa9t\xc3\xa9");
        assert_ptr_equal(hf_journal_find(&j, "/srv/note.txt"), &j.v[1]);
        assert_null(hf_journal_find(&j, "/srv/other"));
        hf_journal_done(&j);
}

static void test_journal_torn_and_bad(void **state)
{
        HfJournal j;
        (void)state;

        /* A crash mid-line: the torn last line is ignored, the rest counts. */
        static const char torn[] = "holdfast-recover-journal 1 5\n"
                                   "R - /a\n"
                                   "D 0123456789abcdef0123456789abcdef0123456789abcdef01234567";
        assert_int_equal(hf_journal_parse(torn, sizeof(torn) - 1, &j), 0);
        assert_int_equal(j.n, 1);
        assert_false(j.complete);
        hf_journal_done(&j);

        /* Malformed lines are skipped: bad verbs, hashes, escapes, NULs, "D" without hash. */
        static const char bad[] = "holdfast-recover-journal 1\n"
                                  "X - /a\n"
                                  "D - /b\n"
                                  "D 0123 /c\n"
                                  "R - /d%zz\n"
                                  "R - /e%00\n"
                                  "R - relative ok\n"
                                  "R -\n"
                                  "K - /kept\n";
        assert_int_equal(hf_journal_parse(bad, sizeof(bad) - 1, &j), 0);
        assert_int_equal(j.n, 1);
        assert_string_equal(j.v[0].path, "/kept");
        hf_journal_done(&j);

        assert_int_equal(hf_journal_parse("", 0, &j), -EPROTO);
        assert_int_equal(hf_journal_parse("holdfast-recover-journal 2\n", 27, &j), -EPROTO);
        assert_int_equal(hf_journal_parse("holdfast-recover-journal 1", 26, &j), -EPROTO);
}

/* ---- times ---- */

static void test_parse_time(void **state)
{
        double t;
        const double now = 1764216000.0;
        (void)state;

#define OK(s, want)                                                                                \
        do {                                                                                       \
                assert_int_equal(hf_recover_parse_time(s, strlen(s), now, &t), 0);                 \
                assert_true(t > (want)-1e-6 && t < (want) + 1e-6);                                 \
        } while (0)
#define BAD(s) assert_int_equal(hf_recover_parse_time(s, strlen(s), now, &t), -EINVAL)
        OK("1764216000", 1764216000.0);
        OK("1764216000.25", 1764216000.25);
        OK("-90s", now - 90);
        OK("-15m", now - 900);
        OK("-2h", now - 7200);
        OK("-1d", now - 86400);
        OK("-30", now - 30);
        OK("2025-11-27T04:00:00Z", 1764216000.0);
        OK("2025-11-27T05:00:00.5+01:00", 1764216000.5);
        BAD("");
        BAD("-");
        BAD("-m");
        BAD("-5x");
        BAD("soon");
        BAD("1764216000.");
        BAD("1764216000.1234567890");
        BAD("2025-13-01 00:00");
        BAD("2025-11-27 25:00");
        BAD("2025-11-27T04:00:00");
        BAD("1e9");
        BAD("12345678901234");
        assert_int_equal(hf_recover_parse_time("1\0002", 3, now, &t), -EINVAL);

        /* Local time: whatever the zone, it is the same instant mktime gives. */
        struct tm tm = { .tm_year = 2025 - 1900,
                         .tm_mon = 10,
                         .tm_mday = 27,
                         .tm_hour = 4,
                         .tm_min = 5,
                         .tm_sec = 6,
                         .tm_isdst = -1 };
        double want = (double)mktime(&tm);
        OK("2025-11-27 04:05:06", want);
        OK("2025-11-27 04:05", want - 6);
#undef OK
#undef BAD
}

/* ---- the sandbox token ---- */

static void test_token(void **state)
{
        HfSandboxToken t;
        (void)state;

        static const char good[] = "holdfast-sandbox 1\n"
                                   "nonce 0123456789abcdef0123456789abcdef\n"
                                   "dev 2049\n"
                                   "ino 131\n"
                                   "disk /dev/loop7\n"
                                   "file docs/a.txt\n"
                                   "file docs/with%20space.txt\n"
                                   "end\n";
        assert_int_equal(hf_sandbox_token_parse(good, sizeof(good) - 1, &t), 0);
        assert_int_equal(t.dev, 2049);
        assert_int_equal(t.ino, 131);
        assert_string_equal(t.disk, "/dev/loop7");
        assert_int_equal(t.n_files, 2);
        assert_string_equal(t.files[1], "docs/with space.txt");
        hf_sandbox_token_done(&t);

        /* Paths that would leave the sandbox, or name the token itself, are refused. */
        static const char *const escapes[] = {
                "file ../etc/passwd\n",
                "file /etc/passwd\n",
                "file docs/../../x\n",
                "file docs//x\n",
                "file ./x\n",
                "file .holdfast-sandbox\n",
                "file a%2F..%2F..%2Fb\n",
                "file \n",
                "disk /dev/sda\n",
                "disk /dev/loop1x\n",
        };
        for (size_t i = 0; i < ELEMENTSOF(escapes); i++) {
                char text[512];
                int n = snprintf(text, sizeof(text),
                                 "holdfast-sandbox 1\nnonce 0123456789abcdef0123456789abcdef\n"
                                 "dev 1\nino 2\n%send\n",
                                 escapes[i]);
                assert_int_equal(hf_sandbox_token_parse(text, (size_t)n, &t), -EPROTO);
        }
        /* Incomplete or trailing data. */
        static const char no_end[] = "holdfast-sandbox 1\nnonce 0123456789abcdef0123456789abcdef\n"
                                     "dev 1\nino 2\n";
        assert_int_equal(hf_sandbox_token_parse(no_end, sizeof(no_end) - 1, &t), -EPROTO);
        static const char trailing[] = "holdfast-sandbox 1\nnonce 0123456789abcdef0123456789abcdef"
                                       "\ndev 1\nino 2\nend\nmore\n";
        assert_int_equal(hf_sandbox_token_parse(trailing, sizeof(trailing) - 1, &t), -EPROTO);
        static const char no_ino[] = "holdfast-sandbox 1\nnonce 0123456789abcdef0123456789abcdef\n"
                                     "dev 1\nend\n";
        assert_int_equal(hf_sandbox_token_parse(no_ino, sizeof(no_ino) - 1, &t), -EPROTO);
}

static void test_kinds(void **state)
{
        (void)state;
        size_t n = 0;
        for (; hf_sim_kinds[n]; n++) {
                assert_true(hf_sim_kind_valid(hf_sim_kinds[n]));
                assert_non_null(hf_sim_kind_help(hf_sim_kinds[n]));
        }
        assert_int_equal(n, 14);
        assert_true(hf_sim_kind_valid("rename-folder"));
        assert_false(hf_sim_kind_valid("rm-rf"));
}

/* ---- retention of the shadow store ---- */

static const char schema[] =
        "CREATE TABLE incidents (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL,"
        " action TEXT NOT NULL, reason TEXT NOT NULL, score REAL NOT NULL, group_kind TEXT NOT"
        " NULL, group_key TEXT NOT NULL, first_event REAL NOT NULL, detected REAL NOT NULL,"
        " contained REAL, closed REAL, files_touched INTEGER NOT NULL, details TEXT);"
        "CREATE TABLE processes (id INTEGER PRIMARY KEY, incident_id INTEGER NOT NULL, pid"
        " INTEGER NOT NULL, ppid INTEGER NOT NULL, sid INTEGER, start_time INTEGER, uid INTEGER,"
        " gid INTEGER, exe TEXT, exe_sha256 TEXT, cmdline TEXT, cgroup TEXT, evidence TEXT,"
        " action TEXT, score REAL);"
        "CREATE TABLE preimages (id INTEGER PRIMARY KEY, time REAL NOT NULL, pid INTEGER NOT NULL,"
        " reason TEXT NOT NULL, method TEXT NOT NULL, dev INTEGER NOT NULL, ino INTEGER NOT NULL,"
        " path TEXT, store_root TEXT NOT NULL, store_path TEXT, size INTEGER, mode INTEGER,"
        " uid INTEGER, gid INTEGER, mtime_ns INTEGER, sha256 TEXT, incident_id INTEGER,"
        " released REAL);";

static void add_pre(sqlite3 *db, const char *root, int id, double t, int pid, const char *method,
                    int64_t size, bool make_file)
{
        char sql[1024], rel[64], path[1024];
        (void)snprintf(rel, sizeof(rel), "%s/f%d",
                       strcmp(method, "link") ? "shadow/20260101" : "pins", id);
        (void)snprintf(sql, sizeof(sql),
                       "INSERT INTO preimages (id, time, pid, reason, method, dev, ino, path,"
                       " store_root, store_path, size) VALUES (%d, %f, %d, '%s', '%s', 1, %d,"
                       " '/x/f%d', '%s', '%s', %lld)",
                       id, t, pid, strcmp(method, "link") ? "write" : "pin", method, id, id, root,
                       rel, (long long)size);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        if (make_file) {
                (void)snprintf(path, sizeof(path), "%s/.holdfast/%s", root, rel);
                int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0400);
                assert_true(fd >= 0);
                close(fd);
        }
}

static bool exists(const char *root, const char *rel)
{
        char p[1024];
        (void)snprintf(p, sizeof(p), "%s/.holdfast/%s", root, rel);
        return access(p, F_OK) == 0;
}

static int64_t released(sqlite3 *db, int id)
{
        sqlite3_stmt *s = NULL;
        char sql[128];
        int64_t r = -1;
        (void)snprintf(sql, sizeof(sql), "SELECT released IS NOT NULL FROM preimages WHERE id=%d",
                       id);
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
        if (sqlite3_step(s) == SQLITE_ROW)
                r = sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
        return r;
}

static void test_retention(void **state)
{
        char root[] = "/tmp/holdfast-retention-XXXXXX", p[512];
        sqlite3 *db = NULL;
        HfRetention pol;
        HfPruneStats st;
        const double now = 1764216000.0;
        (void)state;

        assert_non_null(mkdtemp(root));
        (void)snprintf(p, sizeof(p), "%s/.holdfast", root);
        assert_int_equal(mkdir(p, 0700), 0);
        (void)snprintf(p, sizeof(p), "%s/.holdfast/shadow", root);
        assert_int_equal(mkdir(p, 0700), 0);
        (void)snprintf(p, sizeof(p), "%s/.holdfast/shadow/20260101", root);
        assert_int_equal(mkdir(p, 0700), 0);
        (void)snprintf(p, sizeof(p), "%s/.holdfast/pins", root);
        assert_int_equal(mkdir(p, 0700), 0);
        assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, schema, NULL, NULL, NULL), SQLITE_OK);
        /* An open incident of pid 42 (contained an hour ago), a recovered one of pid 43. */
        assert_int_equal(sqlite3_exec(db,
                                      "INSERT INTO incidents VALUES (1,'ransomware','contained',"
                                      "'kill','r',9,'session','42',1764100000,1764100001,"
                                      "1764100002,NULL,3,NULL);"
                                      "INSERT INTO processes (incident_id, pid, ppid) VALUES"
                                      " (1, 42, 1);"
                                      "INSERT INTO incidents VALUES (2,'ransomware','recovered',"
                                      "'kill','r',9,'session','43',1764100000,1764100001,"
                                      "1764100002,1764100100,3,NULL);"
                                      "INSERT INTO processes (incident_id, pid, ppid) VALUES"
                                      " (2, 43, 1);",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
        add_pre(db, root, 1, 1764100000.5, 42, "reflink", 100, true); /* old, open incident */
        add_pre(db, root, 2, 1764100000.5, 43, "reflink", 100, true); /* old, recovered */
        add_pre(db, root, 3, now - 600, 50, "copy", 1000, true);      /* new */
        add_pre(db, root, 4, now - 500, 50, "copy", 2000, true);      /* new */
        add_pre(db, root, 5, now - 400, 50, "copy", 3000, false);     /* new, file gone */
        add_pre(db, root, 6, 1764090000.0, 51, "link", 100, true);    /* an old pin */
        add_pre(db, root, 7, now - 300, 50, "copy", 500, true);       /* vaulted */
        assert_int_equal(hf_retention_schema(db), 0);
        assert_int_equal(sqlite3_exec(db, "INSERT INTO preimage_vaulted VALUES (7,'abcd1234',1)",
                                      NULL, NULL, NULL),
                         SQLITE_OK);

        /* Dry run: nothing moves. */
        hf_retention_defaults(&pol);
        assert_true(pol.window == 86400 && pol.max_share > 0.09 && pol.max_share < 0.11);
        pol.dry_run = true;
        assert_int_equal(hf_shadow_prune(db, &pol, now, &st), 0);
        assert_int_equal(st.released, 2);
        assert_true(exists(root, "shadow/20260101/f2") && released(db, 2) == 0);

        /* The window and the vault: 2 (old), 7 (vaulted), the old pin; never 1 (open). */
        pol.dry_run = false;
        assert_int_equal(hf_shadow_prune(db, &pol, now, &st), 0);
        assert_int_equal(st.by_window, 1);
        assert_int_equal(st.by_vault, 1);
        assert_int_equal(st.pins_released, 1);
        assert_int_equal(st.protected_rows, 1);
        assert_false(exists(root, "shadow/20260101/f2"));
        assert_false(exists(root, "shadow/20260101/f7"));
        assert_false(exists(root, "pins/f6"));
        assert_true(exists(root, "shadow/20260101/f1") && released(db, 1) == 0);
        assert_int_equal(released(db, 2), 1);
        assert_int_equal(st.kept, 4);

        /* The budget: oldest first down to 3500 bytes, the open incident's one stays. */
        pol.max_bytes = 3500;
        assert_int_equal(hf_shadow_prune(db, &pol, now, &st), 0);
        assert_int_equal(st.by_budget, 2); /* 3 and 4: 100 + 3000 left */
        assert_false(exists(root, "shadow/20260101/f3"));
        assert_int_equal(released(db, 5), 0);
        assert_false(st.over_budget);

        /* Over budget with only the open incident's pre-image left: said, not released. */
        pol.max_bytes = 50;
        assert_int_equal(hf_shadow_prune(db, &pol, now, &st), 0);
        assert_int_equal(released(db, 5), 1);
        assert_true(st.over_budget);
        assert_true(exists(root, "shadow/20260101/f1"));
        assert_int_equal(released(db, 1), 0);

        sqlite3_close(db);
        (void)snprintf(p, sizeof(p), "rm -rf '%s'", root);
        assert_int_equal(system(p), 0);
}

/* Range pre-images share a log: a released one is punched out, the log goes with the last. */
static void test_retention_ranges(void **state)
{
        char root[] = "/tmp/holdfast-retention-XXXXXX", p[512], sql[512];
        sqlite3 *db = NULL;
        HfRetention pol;
        HfPruneStats st;
        struct stat s0, s1;
        const double now = 1764216000.0; /* 2025-11-27: the log's day 20260101 is not today */
        static uint8_t page[3 * 4096 + 100];
        (void)state;

        assert_non_null(mkdtemp(root));
        (void)snprintf(p, sizeof(p), "%s/.holdfast/shadow/20260101", root);
        assert_int_equal(hf_mkdir_p(p, 0700), 0);
        (void)snprintf(p, sizeof(p), "%s/.holdfast/shadow/20260101/ranges", root);
        memset(page, 'r', sizeof(page));
        int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0400);
        assert_true(fd >= 0);
        assert_int_equal(hf_write_all_at(fd, page, sizeof(page), 0), 0);
        assert_int_equal(fsync(fd), 0);
        assert_int_equal(fstat(fd, &s0), 0);
        close(fd);
        assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, schema, NULL, NULL, NULL), SQLITE_OK);
        assert_int_equal(hf_retention_schema(db), 0); /* adds the range columns */
        /* 1: old, 8 KiB at 0; 2: new, 4 KiB at 8192; 3: old, 100 bytes at 12288. */
        const struct {
                int id;
                double t;
                int len, off;
        } rows[] = { { 1, now - 90000, 8192, 0 },
                     { 2, now - 60, 4096, 8192 },
                     { 3, now - 90000, 100, 12288 } };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                (void)snprintf(sql, sizeof(sql),
                               "INSERT INTO preimages (id, time, pid, reason, method, dev, ino,"
                               " store_root, store_path, size, sha256, range_off, range_len,"
                               " log_off) VALUES (%d, %f, 50, 'write', 'range', 1, 9, '%s',"
                               " 'shadow/20260101/ranges', 65536, 'x', 0, %d, %d)",
                               rows[i].id, rows[i].t, root, rows[i].len, rows[i].off);
                assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        }
        hf_retention_defaults(&pol);
        assert_int_equal(hf_shadow_prune(db, &pol, now, &st), 0);
        assert_int_equal(st.by_window, 2);
        assert_int_equal(st.released_bytes, 8192 + 100);
        assert_int_equal(released(db, 1), 1);
        assert_int_equal(released(db, 2), 0);
        /* 1's two blocks are punched out; the log stays for 2. */
        assert_int_equal(stat(p, &s1), 0);
        assert_true(s1.st_blocks < s0.st_blocks);
        assert_int_equal(s1.st_size, s0.st_size);
        /* 2 ages too: the log and its day folder go. */
        assert_int_equal(sqlite3_exec(db, "UPDATE preimages SET time = time - 90000 WHERE id = 2",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
        assert_int_equal(hf_shadow_prune(db, &pol, now, &st), 0);
        assert_int_equal(released(db, 2), 1);
        assert_int_equal(access(p, F_OK), -1);
        assert_false(exists(root, "shadow/20260101"));
        sqlite3_close(db);
        (void)snprintf(p, sizeof(p), "rm -rf '%s'", root);
        assert_int_equal(system(p), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_journal_roundtrip),
                cmocka_unit_test(test_journal_torn_and_bad),
                cmocka_unit_test(test_parse_time),
                cmocka_unit_test(test_token),
                cmocka_unit_test(test_kinds),
                cmocka_unit_test(test_retention),
                cmocka_unit_test(test_retention_ranges),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
