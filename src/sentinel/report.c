/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * `holdfast incidents` and `holdfast incident show`: read-only views of the incident
 * database. The JSON shapes are documented in docs/internals/sentinel.md and docs/cli.md.
 */
#include <sqlite3.h>
#include <string.h>
#include <time.h>

#include "../base/gojson.h"
#include "../base/log.h"
#include "sentinel-internal.h"

sqlite3 *hf_db_handle(HfDb *db);

static void put_str(HfBuf *b, const unsigned char *s)
{
        if (!s) {
                (void)hf_buf_puts(b, "null");
                return;
        }
        (void)hf_json_put_string(b, (const char *)s, strlen((const char *)s));
}

static void put_col(HfBuf *b, sqlite3_stmt *s, int i)
{
        switch (sqlite3_column_type(s, i)) {
        case SQLITE_NULL:
                (void)hf_buf_puts(b, "null");
                break;
        case SQLITE_INTEGER:
                (void)hf_buf_printf(b, "%lld", (long long)sqlite3_column_int64(s, i));
                break;
        case SQLITE_FLOAT:
                (void)hf_buf_printf(b, "%.6f", sqlite3_column_double(s, i));
                break;
        default:
                put_str(b, sqlite3_column_text(s, i));
        }
}

static const char incident_cols[] =
        "id, kind, state, action, reason, score, group_kind, group_key, first_event, detected,"
        " contained, closed, files_touched, details";

static void incident_json(HfBuf *b, sqlite3_stmt *s)
{
        static const char *const names[] = { "id",           "kind",     "state",     "action",
                                             "reason",       "score",    NULL,        NULL,
                                             "first_event",  "detected", "contained", "closed",
                                             "files_touched" };
        (void)hf_buf_putc(b, '{');
        for (int i = 0; i < 13; i++) {
                if (!names[i])
                        continue;
                if (i)
                        (void)hf_buf_putc(b, ',');
                (void)hf_buf_printf(b, "\"%s\":", names[i]);
                put_col(b, s, i);
        }
        (void)hf_buf_puts(b, ",\"group\":{\"kind\":");
        put_col(b, s, 6);
        (void)hf_buf_puts(b, ",\"key\":");
        put_col(b, s, 7);
        (void)hf_buf_putc(b, '}');
        if (sqlite3_column_type(s, 10) != SQLITE_NULL)
                (void)hf_buf_printf(b, ",\"time_to_contain\":%.6f",
                                    sqlite3_column_double(s, 10) - sqlite3_column_double(s, 8));
        else
                (void)hf_buf_puts(b, ",\"time_to_contain\":null");
        if (sqlite3_column_type(s, 13) != SQLITE_NULL) {
                (void)hf_buf_puts(b, ",\"details\":");
                (void)hf_buf_puts(b, (const char *)sqlite3_column_text(s, 13));
        }
}

static const char *fmt_time(double t, char *buf, size_t n)
{
        time_t s = (time_t)t;
        struct tm tm;
        localtime_r(&s, &tm);
        (void)strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm);
        return buf;
}

int hf_incidents_list(const char *state_dir, bool json, FILE *out)
{
        _cleanup_(hf_db_closep) HfDb *db = NULL;
        _cleanup_buf_ HfBuf b = HF_BUF_INIT(64 << 20);
        sqlite3_stmt *s = NULL;
        char sql[512];
        int r = hf_db_open(state_dir, false, &db), n = 0;

        if (r == -ENOENT) {
                /* No database yet: no incidents. */
                fputs(json ? "[]\n" : "no incidents\n", out);
                return 0;
        }
        if (r < 0)
                return r;
        (void)snprintf(sql, sizeof(sql), "SELECT %s FROM incidents ORDER BY id", incident_cols);
        if (sqlite3_prepare_v2(hf_db_handle(db), sql, -1, &s, NULL) != SQLITE_OK)
                return log_error_errno(EIO, "incidents: %s", sqlite3_errmsg(hf_db_handle(db)));
        if (json)
                (void)hf_buf_putc(&b, '[');
        else
                (void)hf_buf_printf(&b, "%-5s %-19s %-15s %-10s %-6s %6s %8s  %s\n", "ID",
                                    "DETECTED", "KIND", "STATE", "ACTION", "FILES", "CONTAIN",
                                    "REASON");
        while (sqlite3_step(s) == SQLITE_ROW) {
                if (json) {
                        if (n)
                                (void)hf_buf_putc(&b, ',');
                        incident_json(&b, s);
                        (void)hf_buf_putc(&b, '}');
                } else {
                        char tb[32], cb[32] = "-";
                        if (sqlite3_column_type(s, 10) != SQLITE_NULL)
                                (void)snprintf(cb, sizeof(cb), "%.3fs",
                                               sqlite3_column_double(s, 10) -
                                                       sqlite3_column_double(s, 8));
                        (void)hf_buf_printf(&b, "%-5lld %-19s %-15s %-10s %-6s %6lld %8s  %s\n",
                                            (long long)sqlite3_column_int64(s, 0),
                                            fmt_time(sqlite3_column_double(s, 9), tb, sizeof(tb)),
                                            sqlite3_column_text(s, 1), sqlite3_column_text(s, 2),
                                            sqlite3_column_text(s, 3),
                                            (long long)sqlite3_column_int64(s, 12), cb,
                                            sqlite3_column_text(s, 4));
                }
                n++;
        }
        sqlite3_finalize(s);
        if (json)
                (void)hf_buf_puts(&b, "]\n");
        else if (!n)
                (void)hf_buf_puts(&b, "no incidents\n");
        fwrite(b.data, 1, b.len, out);
        return 0;
}

int hf_incident_show(const char *state_dir, int64_t id, bool json, FILE *out)
{
        _cleanup_(hf_db_closep) HfDb *db = NULL;
        _cleanup_buf_ HfBuf b = HF_BUF_INIT(256 << 20);
        sqlite3_stmt *s = NULL;
        char sql[1024];
        int r = hf_db_open(state_dir, false, &db);

        if (r < 0)
                return r;
        sqlite3 *h = hf_db_handle(db);
        (void)snprintf(sql, sizeof(sql), "SELECT %s FROM incidents WHERE id = ?", incident_cols);
        if (sqlite3_prepare_v2(h, sql, -1, &s, NULL) != SQLITE_OK)
                return log_error_errno(EIO, "incident: %s", sqlite3_errmsg(h));
        sqlite3_bind_int64(s, 1, id);
        if (sqlite3_step(s) != SQLITE_ROW) {
                sqlite3_finalize(s);
                return -ENOENT;
        }
        char tb[32];
        if (json)
                incident_json(&b, s);
        else {
                (void)hf_buf_printf(&b, "incident %lld: %s, %s (action %s)\n  reason: %s\n",
                                    (long long)id, sqlite3_column_text(s, 1),
                                    sqlite3_column_text(s, 2), sqlite3_column_text(s, 3),
                                    sqlite3_column_text(s, 4));
                (void)hf_buf_printf(&b, "  group: %s %s, score %.1f\n", sqlite3_column_text(s, 6),
                                    sqlite3_column_text(s, 7), sqlite3_column_double(s, 5));
                (void)hf_buf_printf(&b, "  first destructive event %s, detected +%.3fs",
                                    fmt_time(sqlite3_column_double(s, 8), tb, sizeof(tb)),
                                    sqlite3_column_double(s, 9) - sqlite3_column_double(s, 8));
                if (sqlite3_column_type(s, 10) != SQLITE_NULL)
                        (void)hf_buf_printf(&b, ", contained +%.3fs",
                                            sqlite3_column_double(s, 10) -
                                                    sqlite3_column_double(s, 8));
                (void)hf_buf_printf(&b, "\n  files touched: %lld\n",
                                    (long long)sqlite3_column_int64(s, 12));
        }
        sqlite3_finalize(s);

        if (sqlite3_prepare_v2(h,
                               "SELECT pid, ppid, sid, uid, gid, exe, exe_sha256, cmdline, cgroup,"
                               " evidence, action, start_time, score FROM processes"
                               " WHERE incident_id = ? ORDER BY pid",
                               -1, &s, NULL) != SQLITE_OK)
                return log_error_errno(EIO, "incident: %s", sqlite3_errmsg(h));
        sqlite3_bind_int64(s, 1, id);
        static const char *const pn[] = { "pid",    "ppid",       "sid",     "uid",    "gid",
                                          "exe",    "exe_sha256", "cmdline", "cgroup", "evidence",
                                          "action", "start_time", "score" };
        if (json)
                (void)hf_buf_puts(&b, ",\"processes\":[");
        else
                (void)hf_buf_puts(&b, "  processes:\n");
        for (int n = 0; sqlite3_step(s) == SQLITE_ROW; n++) {
                if (json) {
                        (void)hf_buf_puts(&b, n ? ",{" : "{");
                        for (int i = 0; i < (int)ELEMENTSOF(pn); i++) {
                                (void)hf_buf_printf(&b, "%s\"%s\":", i ? "," : "", pn[i]);
                                put_col(&b, s, i);
                        }
                        (void)hf_buf_putc(&b, '}');
                } else
                        (void)hf_buf_printf(
                                &b, "    %6lld (parent %lld, uid %lld) %-8s %s  [%s]\n",
                                (long long)sqlite3_column_int64(s, 0),
                                (long long)sqlite3_column_int64(s, 1),
                                (long long)sqlite3_column_int64(s, 3),
                                sqlite3_column_text(s, 10)
                                        ? (const char *)sqlite3_column_text(s, 10)
                                        : "-",
                                sqlite3_column_text(s, 5) ? (const char *)sqlite3_column_text(s, 5)
                                                          : "?",
                                sqlite3_column_text(s, 7) ? (const char *)sqlite3_column_text(s, 7)
                                                          : "");
        }
        sqlite3_finalize(s);

        if (sqlite3_prepare_v2(h,
                               "SELECT e.time, e.pid, e.kind, e.path, e.new_path, e.dev, e.ino,"
                               " e.size_before, e.size_after, e.hash_before, e.hash_after,"
                               " e.verdict, e.preimage_id, p.method, p.store_root, p.store_path"
                               " FROM file_events e LEFT JOIN preimages p ON p.id = e.preimage_id"
                               " WHERE e.incident_id = ? ORDER BY e.time, e.id",
                               -1, &s, NULL) != SQLITE_OK)
                return log_error_errno(EIO, "incident: %s", sqlite3_errmsg(h));
        sqlite3_bind_int64(s, 1, id);
        static const char *const fn[] = { "time",       "pid",         "kind",       "path",
                                          "new_path",   "dev",         "ino",        "size_before",
                                          "size_after", "hash_before", "hash_after", "verdict" };
        if (json)
                (void)hf_buf_puts(&b, "],\"files\":[");
        else
                (void)hf_buf_puts(&b, "  files:\n");
        for (int n = 0; sqlite3_step(s) == SQLITE_ROW; n++) {
                if (json) {
                        (void)hf_buf_puts(&b, n ? ",{" : "{");
                        for (int i = 0; i < (int)ELEMENTSOF(fn); i++) {
                                (void)hf_buf_printf(&b, "%s\"%s\":", i ? "," : "", fn[i]);
                                put_col(&b, s, i);
                        }
                        (void)hf_buf_puts(&b, ",\"preimage\":");
                        if (sqlite3_column_type(s, 12) == SQLITE_NULL)
                                (void)hf_buf_puts(&b, "null");
                        else {
                                (void)hf_buf_printf(&b, "{\"id\":%lld,\"method\":",
                                                    (long long)sqlite3_column_int64(s, 12));
                                put_col(&b, s, 13);
                                (void)hf_buf_puts(&b, ",\"store\":");
                                if (sqlite3_column_type(s, 15) == SQLITE_NULL)
                                        (void)hf_buf_puts(&b, "null");
                                else {
                                        char p[HF_PATH_MAX * 2];
                                        (void)snprintf(p, sizeof(p), "%s/" HF_STORE_DIR "/%s",
                                                       sqlite3_column_text(s, 14),
                                                       sqlite3_column_text(s, 15));
                                        (void)hf_json_put_string(&b, p, strlen(p));
                                }
                                (void)hf_buf_putc(&b, '}');
                        }
                        (void)hf_buf_putc(&b, '}');
                } else {
                        const unsigned char *np = sqlite3_column_text(s, 4),
                                            *v = sqlite3_column_text(s, 11);
                        (void)hf_buf_printf(&b, "    %-10s %s%s%s%s%s%s\n",
                                            sqlite3_column_text(s, 2), sqlite3_column_text(s, 3),
                                            np ? " -> " : "", np ? (const char *)np : "",
                                            v ? " [" : "", v ? (const char *)v : "", v ? "]" : "");
                }
        }
        sqlite3_finalize(s);
        if (json)
                (void)hf_buf_puts(&b, "]}\n");
        fwrite(b.data, 1, b.len, out);
        return 0;
}
