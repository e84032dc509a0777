/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Retention of the shadow store: see retention.h for the policy. Everything goes through the
 * database rows (preimages.store_root/store_path), never by walking the store, so a file the
 * database does not know is never touched; a row whose file is already gone is just marked.
 */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#include "../base/log.h"
#include "../base/util.h"
#include "retention.h"

#define STORE ".holdfast"
#define OPEN_STATES "('open','contained','alerted')"
#define MAX_ROOTS 64

void hf_retention_defaults(HfRetention *r)
{
        *r = (HfRetention){ .window = 86400, .max_share = 0.10 };
}

int hf_retention_schema(sqlite3 *db)
{
        if (sqlite3_exec(db,
                         "CREATE TABLE IF NOT EXISTS preimage_vaulted (preimage_id INTEGER"
                         " PRIMARY KEY REFERENCES preimages(id), snapshot TEXT NOT NULL,"
                         " time REAL NOT NULL)",
                         NULL, NULL, NULL) != SQLITE_OK) {
                log_error("retention: cannot create preimage_vaulted: %s", sqlite3_errmsg(db));
                return -EIO;
        }
        /* The columns of range pre-images (user_version 3, db.c), should the database be
         * older than the sentinel that reads it: added empty, as the sentinel adds them. */
        static const char *const cols[] = { "range_off", "range_len", "log_off" };
        for (size_t i = 0; i < ELEMENTSOF(cols); i++) {
                char sql[96];
                (void)snprintf(sql, sizeof(sql), "ALTER TABLE preimages ADD COLUMN %s INTEGER",
                               cols[i]);
                if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK &&
                    !strstr(sqlite3_errmsg(db), "duplicate column")) {
                        log_error("retention: cannot add preimages.%s: %s", cols[i],
                                  sqlite3_errmsg(db));
                        return -EIO;
                }
        }
        return 0;
}

typedef struct Row {
        int64_t id;
        double time;
        int64_t size; /* of a range: its length */
        bool pin, vaulted, protect;
        bool range; /* bytes of the range log rel at log_off */
        int64_t log_off;
        char *root, *rel;
} Row;

typedef struct Root {
        char path[512];
        uint64_t used, budget;
} Root;

static void rows_free(Row *v, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(v[i].root);
                free(v[i].rel);
        }
        free(v);
}

/* Removes the file of a row and marks it released. */
static int release(sqlite3 *db, sqlite3_stmt *upd, const Row *row, double now, bool dry_run)
{
        char path[4096 + 600];

        if (dry_run)
                return 0;
        if (strstr(row->rel, "..") || row->rel[0] == '/')
                return -EINVAL; /* a row that would point outside the store: leave it */
        (void)snprintf(path, sizeof(path), "%s/" STORE "/%s",
                       strcmp(row->root, "/") ? row->root : "", row->rel);
        if (row->range) {
                /* Other ranges live in the same log: punch this one out (drop_logs() removes
                 * the log once none is left). */
                _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
                if (fd < 0 && errno != ENOENT)
                        return log_warning_errno(errno, "retention: %s: cannot open: %m", path);
                /* Only the blocks wholly its own: small ranges share theirs (guard.c). */
                int64_t a = (row->log_off + 4095) & ~(int64_t)4095,
                        b = (row->log_off + row->size) & ~(int64_t)4095;
                if (fd >= 0 && b > a &&
                    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, a, b - a) < 0)
                        return log_warning_errno(errno, "retention: %s: cannot release a range: %m",
                                                 path);
        } else if (unlink(path) < 0 && errno != ENOENT)
                return log_warning_errno(errno, "retention: %s: cannot remove: %m", path);
        sqlite3_reset(upd);
        sqlite3_bind_double(upd, 1, now);
        sqlite3_bind_int64(upd, 2, row->id);
        if (sqlite3_step(upd) != SQLITE_DONE) {
                log_warning("retention: cannot mark pre-image %lld released: %s",
                            (long long)row->id, sqlite3_errmsg(db));
                return -EIO;
        }
        /* An emptied day folder goes too (rmdir fails while anything is in it). */
        char *slash = strrchr(path, '/');
        if (slash && !row->range && strncmp(row->rel, "shadow/", 7) == 0) {
                *slash = 0;
                (void)rmdir(path);
        }
        return 1;
}

/*
 * Removes the range logs whose ranges are all released. Not today's (UTC, as the sentinel
 * names its day folders): the sentinel may still be appending to it, and a range it just kept
 * may not be in the database yet. An emptied log costs nothing meanwhile: its ranges are
 * punched out.
 */
static void drop_logs(sqlite3 *db, double now)
{
        sqlite3_stmt *s = NULL, *upd = NULL;
        char today[32];
        time_t t = (time_t)now;
        struct tm tm;

        gmtime_r(&t, &tm);
        (void)strftime(today, sizeof(today), "shadow/%Y%m%d/", &tm);

        if (sqlite3_prepare_v2(db,
                               "SELECT DISTINCT store_root, store_path FROM preimages p WHERE"
                               " method = 'range' AND released IS NOT NULL AND store_path IS NOT"
                               " NULL AND NOT EXISTS (SELECT 1 FROM preimages q WHERE"
                               " q.method = 'range' AND q.released IS NULL AND"
                               " q.store_root = p.store_root AND q.store_path = p.store_path)",
                               -1, &s, NULL) != SQLITE_OK ||
            sqlite3_prepare_v2(db,
                               "UPDATE preimages SET store_path = NULL WHERE method = 'range' AND"
                               " released IS NOT NULL AND store_root = ? AND store_path = ?",
                               -1, &upd, NULL) != SQLITE_OK) {
                log_warning("retention: range logs: %s", sqlite3_errmsg(db));
                goto out;
        }
        while (sqlite3_step(s) == SQLITE_ROW) {
                const char *root = (const char *)sqlite3_column_text(s, 0),
                           *rel = (const char *)sqlite3_column_text(s, 1);
                char path[4096 + 600];
                if (!root || !rel || strstr(rel, "..") || rel[0] == '/' ||
                    strncmp(rel, "shadow/", 7) != 0)
                        continue;
                if (strncmp(rel, today, strlen(today)) == 0)
                        continue;
                (void)snprintf(path, sizeof(path), "%s/" STORE "/%s", strcmp(root, "/") ? root : "",
                               rel);
                if (unlink(path) < 0 && errno != ENOENT) {
                        log_warning_errno(errno, "retention: %s: cannot remove: %m", path);
                        continue;
                }
                char *slash = strrchr(path, '/');
                if (slash) {
                        *slash = 0;
                        (void)rmdir(path);
                }
                sqlite3_reset(upd);
                sqlite3_bind_text(upd, 1, root, -1, SQLITE_TRANSIENT);
                sqlite3_bind_text(upd, 2, rel, -1, SQLITE_TRANSIENT);
                (void)sqlite3_step(upd);
        }
out:
        sqlite3_finalize(s);
        sqlite3_finalize(upd);
}

int hf_shadow_prune(sqlite3 *db, const HfRetention *r, double now, HfPruneStats *ret)
{
        sqlite3_stmt *s = NULL, *upd = NULL;
        Row *rows = NULL;
        size_t n = 0;
        Root roots[MAX_ROOTS];
        size_t n_roots = 0;
        int rc;

        *ret = (HfPruneStats){ 0 };
        rc = hf_retention_schema(db);
        if (rc < 0)
                return rc;
        /*
         * Every row still holding a file, oldest first, with whether it is vaulted and whether
         * it belongs to an open incident: claimed by one, or taken for one of its processes
         * between a minute before its first event and a minute after containment (recover
         * finds pre-images the same way).
         */
        if (sqlite3_prepare_v2(
                    db,
                    "SELECT p.id, p.time, CASE WHEN p.method = 'range' THEN"
                    " COALESCE(p.range_len, 0) ELSE COALESCE(p.size, 0) END, p.method = 'link' OR"
                    " p.reason = 'pin', v.preimage_id IS NOT NULL,"
                    " EXISTS (SELECT 1 FROM incidents i WHERE i.state IN " OPEN_STATES
                    "   AND i.closed IS NULL AND (p.incident_id = i.id OR (p.pid IN"
                    "   (SELECT pid FROM processes WHERE incident_id = i.id) AND"
                    "   p.time >= i.first_event - 60 AND"
                    "   p.time <= COALESCE(i.contained, 1e18) + 60))),"
                    " p.store_root, p.store_path, p.method = 'range', COALESCE(p.log_off, 0)"
                    " FROM preimages p LEFT JOIN preimage_vaulted v ON v.preimage_id = p.id"
                    " WHERE p.released IS NULL AND p.store_path IS NOT NULL"
                    " AND p.method IN ('reflink', 'copy', 'link', 'range') ORDER BY p.time, p.id",
                    -1, &s, NULL) != SQLITE_OK ||
            sqlite3_prepare_v2(db, "UPDATE preimages SET released = ? WHERE id = ?", -1, &upd,
                               NULL) != SQLITE_OK) {
                log_error("retention: %s", sqlite3_errmsg(db));
                sqlite3_finalize(s);
                return -EIO;
        }
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
                if (n % 1024 == 0) {
                        Row *nv = realloc(rows, (n + 1024) * sizeof(Row));
                        if (!nv) {
                                rc = -ENOMEM;
                                goto out;
                        }
                        rows = nv;
                }
                const unsigned char *root = sqlite3_column_text(s, 6),
                                    *rel = sqlite3_column_text(s, 7);
                Row *w = &rows[n];
                *w = (Row){ .id = sqlite3_column_int64(s, 0),
                            .time = sqlite3_column_double(s, 1),
                            .size = sqlite3_column_int64(s, 2),
                            .pin = sqlite3_column_int(s, 3) != 0,
                            .vaulted = sqlite3_column_int(s, 4) != 0,
                            .protect = sqlite3_column_int(s, 5) != 0,
                            .range = sqlite3_column_int(s, 8) != 0,
                            .log_off = sqlite3_column_int64(s, 9) };
                w->root = strdup(root ? (const char *)root : "");
                w->rel = strdup(rel ? (const char *)rel : "");
                if (!w->root || !w->rel) {
                        free(w->root);
                        free(w->rel);
                        rc = -ENOMEM;
                        goto out;
                }
                n++;
        }
        if (rc != SQLITE_DONE) {
                log_error("retention: %s", sqlite3_errmsg(db));
                rc = -EIO;
                goto out;
        }
        (void)sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);

        /* 1. The window and the vault. */
        for (size_t i = 0; i < n; i++) {
                Row *w = &rows[i];
                if (w->protect) {
                        ret->protected_rows++;
                        continue;
                }
                bool old = w->time < now - r->window;
                if (!old && !(w->vaulted && !w->pin))
                        continue;
                if (release(db, upd, w, now, r->dry_run) < 0)
                        continue;
                if (w->pin)
                        ret->pins_released++;
                else {
                        ret->released++;
                        ret->released_bytes += (uint64_t)w->size;
                        if (old)
                                ret->by_window++;
                        else
                                ret->by_vault++;
                }
                w->size = -1; /* gone */
        }

        /* 2. The budget of each store, oldest first. Pins cost nothing while the file lives
         * (they share its inode); content pre-images count with their size, an upper bound
         * for reflinks, which share the blocks the writer did not change. */
        for (size_t i = 0; i < n; i++) {
                Row *w = &rows[i];
                if (w->size < 0 || w->pin)
                        continue;
                Root *rt = NULL;
                for (size_t k = 0; k < n_roots && !rt; k++)
                        if (strcmp(roots[k].path, w->root) == 0)
                                rt = &roots[k];
                if (!rt && n_roots < MAX_ROOTS) {
                        struct statvfs sv;
                        rt = &roots[n_roots++];
                        *rt = (Root){ 0 };
                        (void)snprintf(rt->path, sizeof(rt->path), "%s", w->root);
                        rt->budget = UINT64_MAX;
                        if (statvfs(w->root, &sv) == 0)
                                rt->budget = (uint64_t)((double)sv.f_blocks * (double)sv.f_frsize *
                                                        r->max_share);
                        if (r->max_bytes && r->max_bytes < rt->budget)
                                rt->budget = r->max_bytes;
                }
                if (rt)
                        rt->used += (uint64_t)w->size;
        }
        for (size_t k = 0; k < n_roots; k++) {
                Root *rt = &roots[k];
                for (size_t i = 0; i < n && rt->used > rt->budget; i++) {
                        Row *w = &rows[i];
                        if (w->size < 0 || w->pin || w->protect || strcmp(w->root, rt->path) != 0)
                                continue;
                        if (release(db, upd, w, now, r->dry_run) < 0)
                                continue;
                        ret->released++;
                        ret->released_bytes += (uint64_t)w->size;
                        ret->by_budget++;
                        rt->used -= (uint64_t)w->size;
                        w->size = -1;
                }
                if (rt->used > rt->budget && !ret->over_budget) {
                        ret->over_budget = true;
                        (void)hf_copy_str(ret->over_root, sizeof(ret->over_root), rt->path);
                        log_error("shadow store %s/" STORE " is over its budget (%llu of %llu "
                                  "bytes) with pre-images of open incidents only: recover or "
                                  "close them (holdfast recover --incident ID)",
                                  rt->path, (unsigned long long)rt->used,
                                  (unsigned long long)rt->budget);
                }
        }
        for (size_t i = 0; i < n; i++)
                if (rows[i].size >= 0 && !rows[i].pin) {
                        ret->kept++;
                        ret->kept_bytes += (uint64_t)rows[i].size;
                }
        if (!r->dry_run)
                drop_logs(db, now);
        if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
                log_error("retention: commit: %s", sqlite3_errmsg(db));
                rc = -EIO;
                goto out;
        }
        rc = 0;
out:
        sqlite3_finalize(s);
        sqlite3_finalize(upd);
        rows_free(rows, n);
        return rc;
}
