/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The incident database: SQLite in WAL mode under the state folder. Schema and meaning of
 * every column: docs/internals/sentinel.md ("Database schema"); `holdfast recover` (issue 6)
 * reads it. Only the sentinel writes; the CLI opens it read-only.
 */
#include <sqlite3.h>
#include <string.h>
#include <sys/stat.h>

#include "../base/log.h"
#include "../base/util.h"
#include "sentinel-internal.h"

struct HfDb {
        sqlite3 *db;
        sqlite3_stmt *ins_pre, *ins_ev;
};

static const char schema[] =
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);"
        "CREATE TABLE IF NOT EXISTS incidents (id INTEGER PRIMARY KEY, kind TEXT NOT NULL,"
        " state TEXT NOT NULL, action TEXT NOT NULL, reason TEXT NOT NULL, score REAL NOT NULL,"
        " group_kind TEXT NOT NULL, group_key TEXT NOT NULL, first_event REAL NOT NULL,"
        " detected REAL NOT NULL, contained REAL, closed REAL, files_touched INTEGER NOT NULL,"
        " details TEXT);"
        "CREATE TABLE IF NOT EXISTS processes (id INTEGER PRIMARY KEY,"
        " incident_id INTEGER NOT NULL REFERENCES incidents(id), pid INTEGER NOT NULL,"
        " ppid INTEGER NOT NULL, sid INTEGER, start_time INTEGER, uid INTEGER, gid INTEGER,"
        " exe TEXT, exe_sha256 TEXT, cmdline TEXT, cgroup TEXT, evidence TEXT, action TEXT,"
        " score REAL);"
        "CREATE TABLE IF NOT EXISTS file_events (id INTEGER PRIMARY KEY,"
        " incident_id INTEGER REFERENCES incidents(id), time REAL NOT NULL, pid INTEGER NOT NULL,"
        " kind TEXT NOT NULL, path TEXT NOT NULL, new_path TEXT, dev INTEGER, ino INTEGER,"
        " size_before INTEGER, size_after INTEGER, hash_before TEXT, hash_after TEXT,"
        " preimage_id INTEGER REFERENCES preimages(id), verdict TEXT);"
        "CREATE TABLE IF NOT EXISTS preimages (id INTEGER PRIMARY KEY, time REAL NOT NULL,"
        " pid INTEGER NOT NULL, reason TEXT NOT NULL, method TEXT NOT NULL, dev INTEGER NOT NULL,"
        " ino INTEGER NOT NULL, path TEXT, store_root TEXT NOT NULL, store_path TEXT,"
        " size INTEGER, mode INTEGER, uid INTEGER, gid INTEGER, mtime_ns INTEGER, sha256 TEXT,"
        " incident_id INTEGER REFERENCES incidents(id), released REAL);"
        "CREATE INDEX IF NOT EXISTS preimages_ino ON preimages(dev, ino, time);"
        "CREATE INDEX IF NOT EXISTS file_events_incident ON file_events(incident_id, time);";

static int fail(HfDb *db, const char *what)
{
        log_error("sentinel database: %s: %s", what, sqlite3_errmsg(db->db));
        return -EIO;
}

/* Columns added since user_version 1 (fields are only ever added; docs/internals/sentinel.md). */
static const char *const added[][3] = {
        /* version 2 */
        { "preimages", "fid", "TEXT" },        /* file handle: (dev, ino) may be reused */
        { "file_events", "fid", "TEXT" },      /* of the object the event names */
        { "file_events", "ondir", "INTEGER" }, /* 1: the object is a folder (renames) */
        { "file_events", "grp", "TEXT" },      /* group that made it, until an incident claims it */
        /* version 3: range pre-images (method "range", guard.c) */
        { "preimages", "range_off", "INTEGER" }, /* the bytes kept, as offsets in the file */
        { "preimages", "range_len", "INTEGER" },
        { "preimages", "log_off", "INTEGER" }, /* where they are in the range log store_path */
};

static int upgrade(HfDb *db)
{
        for (size_t i = 0; i < ELEMENTSOF(added); i++) {
                char sql[256];
                (void)snprintf(sql, sizeof(sql), "ALTER TABLE %s ADD COLUMN %s %s", added[i][0],
                               added[i][1], added[i][2]);
                /* An existing column is fine (an upgraded database). */
                if (sqlite3_exec(db->db, sql, NULL, NULL, NULL) != SQLITE_OK &&
                    !strstr(sqlite3_errmsg(db->db), "duplicate column"))
                        return fail(db, "upgrade");
        }
        if (sqlite3_exec(db->db,
                         "CREATE INDEX IF NOT EXISTS file_events_grp ON file_events(grp)"
                         " WHERE incident_id IS NULL;"
                         "CREATE INDEX IF NOT EXISTS preimages_fid ON preimages(fid);"
                         "PRAGMA user_version = 3;",
                         NULL, NULL, NULL) != SQLITE_OK)
                return fail(db, "upgrade");
        return 0;
}

HfDb *hf_db_close(HfDb *db)
{
        if (!db)
                return NULL;
        sqlite3_finalize(db->ins_pre);
        sqlite3_finalize(db->ins_ev);
        sqlite3_close(db->db);
        free(db);
        return NULL;
}

int hf_db_path(const char *state_dir, char *buf, size_t n)
{
        int k = snprintf(buf, n, "%s/sentinel.db", state_dir);

        if (k < 0 || (size_t)k >= MIN(n, (size_t)HF_DB_PATH_MAX))
                return log_error_errno(-ENAMETOOLONG,
                                       "%s: the state folder's path is too long for its database "
                                       "(SQLite opens files by paths of at most %d bytes); use a "
                                       "shorter --state",
                                       state_dir, HF_DB_PATH_MAX - 1);
        return 0;
}

int hf_db_open(const char *state_dir, bool create, HfDb **ret)
{
        _cleanup_(hf_db_closep) HfDb *db = calloc(1, sizeof(*db));
        char path[HF_PATH_MAX];
        int r;

        if (!db)
                return -ENOMEM;
        r = hf_db_path(state_dir, path, sizeof(path));
        if (r < 0)
                return r;
        if (!create && access(path, F_OK) < 0)
                return -ENOENT;
        r = sqlite3_open_v2(
                path, &db->db,
                create ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READONLY, NULL);
        if (r != SQLITE_OK)
                return log_error_errno(EIO, "%s: cannot open: %s", path,
                                       db->db ? sqlite3_errmsg(db->db) : "out of memory");
        sqlite3_busy_timeout(db->db, 5000);
        if (create) {
                (void)chmod(path, 0600);
                if (sqlite3_exec(db->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                                 NULL, NULL, NULL) != SQLITE_OK ||
                    sqlite3_exec(db->db, schema, NULL, NULL, NULL) != SQLITE_OK)
                        return fail(db, "schema");
                r = upgrade(db);
                if (r < 0)
                        return r;
                if (sqlite3_prepare_v2(db->db,
                                       "INSERT INTO preimages (time, pid, reason, method, dev, ino,"
                                       " path, store_root, store_path, size, mode, uid, gid,"
                                       " mtime_ns, fid, sha256, range_off, range_len, log_off)"
                                       " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                                       -1, &db->ins_pre, NULL) != SQLITE_OK ||
                    sqlite3_prepare_v2(db->db,
                                       "INSERT INTO file_events (incident_id, time, pid, kind,"
                                       " path, new_path, dev, ino, size_before, size_after,"
                                       " hash_before, hash_after, preimage_id, verdict, fid,"
                                       " ondir, grp) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                                       -1, &db->ins_ev, NULL) != SQLITE_OK)
                        return fail(db, "prepare");
        }
        *ret = TAKE_PTR(db);
        return 0;
}

sqlite3 *hf_db_handle(HfDb *db)
{
        return db->db;
}

/*
 * IMMEDIATE: the write lock from the start (waiting out another writer, such as recover marking
 * an incident recovered, within the busy timeout). A deferred transaction that read first
 * could not write after another connection's commit (SQLITE_BUSY_SNAPSHOT, no waiting).
 */
int hf_db_begin(HfDb *db)
{
        return sqlite3_exec(db->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK
                       ? 0
                       : fail(db, "begin");
}

int hf_db_commit(HfDb *db)
{
        if (sqlite3_exec(db->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
                return 0;
        int r = fail(db, "commit");
        /* Never leave the transaction open: every later write would fail with it. */
        sqlite3_reset(db->ins_pre);
        sqlite3_reset(db->ins_ev);
        if (sqlite3_get_autocommit(db->db) == 0 &&
            sqlite3_exec(db->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
                (void)sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
        return r;
}

int hf_db_set_meta(HfDb *db, const char *key, const char *value)
{
        sqlite3_stmt *s = NULL;
        int r = 0;

        if (sqlite3_prepare_v2(db->db, "INSERT OR REPLACE INTO meta (key, value) VALUES (?,?)", -1,
                               &s, NULL) != SQLITE_OK)
                return fail(db, "meta");
        sqlite3_bind_text(s, 1, key, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 2, value, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(s) != SQLITE_DONE)
                r = fail(db, "meta");
        sqlite3_finalize(s);
        return r;
}

static void bind_text_or_null(sqlite3_stmt *s, int i, const char *v)
{
        if (v && *v)
                sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
        else
                sqlite3_bind_null(s, i);
}

int hf_db_add_preimage(HfDb *db, const HfPreimage *p, int64_t *ret_id)
{
        sqlite3_stmt *s = db->ins_pre;

        sqlite3_reset(s);
        sqlite3_bind_double(s, 1, p->time);
        sqlite3_bind_int64(s, 2, p->pid);
        sqlite3_bind_text(s, 3, p->reason, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 4, p->method, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 5, (int64_t)p->dev);
        sqlite3_bind_int64(s, 6, (int64_t)p->ino);
        bind_text_or_null(s, 7, p->path);
        sqlite3_bind_text(s, 8, p->store_root, -1, SQLITE_TRANSIENT);
        bind_text_or_null(s, 9, p->store_path);
        sqlite3_bind_int64(s, 10, (int64_t)p->size);
        sqlite3_bind_int64(s, 11, p->mode);
        sqlite3_bind_int64(s, 12, p->uid);
        sqlite3_bind_int64(s, 13, p->gid);
        sqlite3_bind_int64(s, 14, p->mtime_ns);
        bind_text_or_null(s, 15, p->fid);
        bind_text_or_null(s, 16, p->sha);
        if (strcmp(p->method, "range") == 0) {
                sqlite3_bind_int64(s, 17, (int64_t)p->range_off);
                sqlite3_bind_int64(s, 18, (int64_t)p->range_len);
                sqlite3_bind_int64(s, 19, (int64_t)p->log_off);
        } else {
                sqlite3_bind_null(s, 17);
                sqlite3_bind_null(s, 18);
                sqlite3_bind_null(s, 19);
        }
        int rc = sqlite3_step(s);
        sqlite3_reset(s); /* a failed step must not stay "in progress" (COMMIT refuses) */
        if (rc != SQLITE_DONE)
                return fail(db, "insert pre-image");
        *ret_id = sqlite3_last_insert_rowid(db->db);
        return 0;
}

int hf_db_add_incident(HfDb *db, const HfDbIncident *inc, int64_t *ret_id)
{
        sqlite3_stmt *s = NULL;
        int r = 0;

        if (sqlite3_prepare_v2(db->db,
                               "INSERT INTO incidents (kind, state, action, reason, score,"
                               " group_kind, group_key, first_event, detected, contained,"
                               " files_touched, details) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                               -1, &s, NULL) != SQLITE_OK)
                return fail(db, "incident");
        sqlite3_bind_text(s, 1, inc->kind, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 2, inc->state, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 3, inc->action, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 4, inc->reason, -1, SQLITE_TRANSIENT);
        sqlite3_bind_double(s, 5, inc->score);
        sqlite3_bind_text(s, 6, inc->group_kind, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 7, inc->group_key, -1, SQLITE_TRANSIENT);
        sqlite3_bind_double(s, 8, inc->first_event);
        sqlite3_bind_double(s, 9, inc->detected);
        if (inc->contained >= 0)
                sqlite3_bind_double(s, 10, inc->contained);
        else
                sqlite3_bind_null(s, 10);
        sqlite3_bind_int64(s, 11, inc->files_touched);
        bind_text_or_null(s, 12, inc->details);
        if (sqlite3_step(s) != SQLITE_DONE)
                r = fail(db, "incident");
        else
                *ret_id = sqlite3_last_insert_rowid(db->db);
        sqlite3_finalize(s);
        return r;
}

int hf_db_update_incident(HfDb *db, int64_t id, const char *state, double contained,
                          int64_t files_touched)
{
        sqlite3_stmt *s = NULL;
        int r = 0;

        if (sqlite3_prepare_v2(db->db,
                               "UPDATE incidents SET state = ?, contained = ?, files_touched = ?"
                               " WHERE id = ?",
                               -1, &s, NULL) != SQLITE_OK)
                return fail(db, "update");
        sqlite3_bind_text(s, 1, state, -1, SQLITE_TRANSIENT);
        if (contained >= 0)
                sqlite3_bind_double(s, 2, contained);
        else
                sqlite3_bind_null(s, 2);
        sqlite3_bind_int64(s, 3, files_touched);
        sqlite3_bind_int64(s, 4, id);
        if (sqlite3_step(s) != SQLITE_DONE)
                r = fail(db, "update");
        sqlite3_finalize(s);
        return r;
}

int hf_db_add_process(HfDb *db, int64_t incident, const HfProcInfo *p, const char *exe_sha256,
                      const char *evidence, const char *action, double score)
{
        sqlite3_stmt *s = NULL;
        int r = 0;

        if (sqlite3_prepare_v2(db->db,
                               "INSERT INTO processes (incident_id, pid, ppid, sid, start_time,"
                               " uid, gid, exe, exe_sha256, cmdline, cgroup, evidence, action,"
                               " score) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                               -1, &s, NULL) != SQLITE_OK)
                return fail(db, "process");
        sqlite3_bind_int64(s, 1, incident);
        sqlite3_bind_int64(s, 2, p->pid);
        sqlite3_bind_int64(s, 3, p->ppid);
        sqlite3_bind_int64(s, 4, p->sid);
        sqlite3_bind_int64(s, 5, (int64_t)p->start);
        sqlite3_bind_int64(s, 6, p->uid);
        sqlite3_bind_int64(s, 7, p->gid);
        bind_text_or_null(s, 8, p->exe);
        bind_text_or_null(s, 9, exe_sha256);
        bind_text_or_null(s, 10, p->cmdline);
        bind_text_or_null(s, 11, p->cgroup);
        bind_text_or_null(s, 12, evidence);
        bind_text_or_null(s, 13, action);
        sqlite3_bind_double(s, 14, score);
        if (sqlite3_step(s) != SQLITE_DONE)
                r = fail(db, "process");
        sqlite3_finalize(s);
        return r;
}

int hf_db_add_file_event(HfDb *db, int64_t incident, const HfDbFileEvent *e)
{
        sqlite3_stmt *s = db->ins_ev;

        sqlite3_reset(s);
        if (incident > 0)
                sqlite3_bind_int64(s, 1, incident);
        else
                sqlite3_bind_null(s, 1);
        sqlite3_bind_double(s, 2, e->time);
        sqlite3_bind_int64(s, 3, e->pid);
        sqlite3_bind_text(s, 4, e->kind, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 5, e->path ? e->path : "", -1, SQLITE_TRANSIENT);
        bind_text_or_null(s, 6, e->new_path);
        sqlite3_bind_int64(s, 7, (int64_t)e->dev);
        sqlite3_bind_int64(s, 8, (int64_t)e->ino);
        if (e->size_before >= 0)
                sqlite3_bind_int64(s, 9, e->size_before);
        else
                sqlite3_bind_null(s, 9);
        if (e->size_after >= 0)
                sqlite3_bind_int64(s, 10, e->size_after);
        else
                sqlite3_bind_null(s, 10);
        bind_text_or_null(s, 11, e->hash_before);
        bind_text_or_null(s, 12, e->hash_after);
        if (e->preimage_id > 0)
                sqlite3_bind_int64(s, 13, e->preimage_id);
        else
                sqlite3_bind_null(s, 13);
        bind_text_or_null(s, 14, e->verdict);
        bind_text_or_null(s, 15, e->fid);
        if (e->ondir)
                sqlite3_bind_int(s, 16, 1);
        else
                sqlite3_bind_null(s, 16);
        bind_text_or_null(s, 17, incident > 0 ? NULL : e->grp);
        int rc = sqlite3_step(s);
        sqlite3_reset(s); /* a failed step must not stay "in progress" (COMMIT refuses) */
        if (rc != SQLITE_DONE)
                return fail(db, "insert file event");
        return 0;
}

int hf_db_claim_group_events(HfDb *db, const char *grp, int64_t incident)
{
        sqlite3_stmt *s = NULL;
        int r = 0;

        if (sqlite3_prepare_v2(db->db,
                               "UPDATE file_events SET incident_id = ?, grp = NULL"
                               " WHERE incident_id IS NULL AND grp = ?",
                               -1, &s, NULL) != SQLITE_OK)
                return fail(db, "claim events");
        sqlite3_bind_int64(s, 1, incident);
        sqlite3_bind_text(s, 2, grp, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(s) != SQLITE_DONE)
                r = fail(db, "claim events");
        sqlite3_finalize(s);
        return r;
}

int hf_db_expire_group_events(HfDb *db, double before)
{
        sqlite3_stmt *s = NULL;
        int r = 0;

        if (sqlite3_prepare_v2(db->db,
                               "DELETE FROM file_events WHERE incident_id IS NULL AND"
                               " grp IS NOT NULL AND time < ?",
                               -1, &s, NULL) != SQLITE_OK)
                return fail(db, "expire events");
        sqlite3_bind_double(s, 1, before);
        if (sqlite3_step(s) != SQLITE_DONE)
                r = fail(db, "expire events");
        else
                r = sqlite3_changes(db->db);
        sqlite3_finalize(s);
        return r;
}

int hf_db_claim_preimage(HfDb *db, int64_t preimage_id, int64_t incident)
{
        sqlite3_stmt *s = NULL;
        int r = 0;

        if (sqlite3_prepare_v2(db->db, "UPDATE preimages SET incident_id = ? WHERE id = ?", -1, &s,
                               NULL) != SQLITE_OK)
                return fail(db, "claim");
        sqlite3_bind_int64(s, 1, incident);
        sqlite3_bind_int64(s, 2, preimage_id);
        if (sqlite3_step(s) != SQLITE_DONE)
                r = fail(db, "claim");
        sqlite3_finalize(s);
        return r;
}

int hf_db_preimage_location(HfDb *db, int64_t id, char *root, size_t rn, char *rel, size_t reln,
                            char *sha, size_t shan)
{
        sqlite3_stmt *s = NULL;
        int r = -ENOENT;

        if (sqlite3_prepare_v2(db->db,
                               "SELECT store_root, store_path, sha256 FROM preimages WHERE id = ?"
                               " AND method != 'range'",
                               -1, &s, NULL) != SQLITE_OK)
                return fail(db, "select");
        sqlite3_bind_int64(s, 1, id);
        if (sqlite3_step(s) == SQLITE_ROW) {
                const unsigned char *a = sqlite3_column_text(s, 0), *b = sqlite3_column_text(s, 1),
                                    *c = sqlite3_column_text(s, 2);
                (void)snprintf(root, rn, "%s", a ? (const char *)a : "");
                (void)snprintf(rel, reln, "%s", b ? (const char *)b : "");
                (void)snprintf(sha, shan, "%s", c ? (const char *)c : "");
                r = 0;
        }
        sqlite3_finalize(s);
        return r;
}

int hf_db_set_preimage_sha(HfDb *db, int64_t id, const char *sha)
{
        sqlite3_stmt *s = NULL;
        int r = 0;

        if (sqlite3_prepare_v2(db->db, "UPDATE preimages SET sha256 = ? WHERE id = ?", -1, &s,
                               NULL) != SQLITE_OK)
                return fail(db, "sha");
        sqlite3_bind_text(s, 1, sha, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 2, id);
        if (sqlite3_step(s) != SQLITE_DONE)
                r = fail(db, "sha");
        sqlite3_finalize(s);
        return r;
}
