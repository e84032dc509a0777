/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * holdfast recover: puts back what an incident touched. docs/internals/recover.md has the
 * whole story; in short:
 *
 *  1. Load the scope from the sentinel's database (schema: docs/internals/sentinel.md): the
 *     incident's processes and file events, and every pre-image taken for those processes
 *     between the first event and containment (the event list is a ring and may have lost
 *     early entries; the pre-images have not).
 *  2. Replay the events in time order, tracking inodes: each original file gets its path
 *     before the incident, where its inode is now (renames) or that it is gone, and when the
 *     incident first changed its content. Files the incident created are the attacker's.
 *  3. Pick a source for each original: the newest pre-image taken before the first change
 *     (verified against its recorded SHA-256 and size); the inode itself when it was only
 *     renamed; a hard-link pin when it was only deleted; else the newest vault snapshot older
 *     than the incident, with a report of which bytes that cannot prove.
 *  4. Write each file to a temporary name beside its place, set owner, mode, xattrs and
 *     times, hash it back against the source, sync, rename over, sync, journal. Then remove
 *     the attacker's files. A file another process changed after containment is left alone
 *     (its recovered version goes beside it as NAME.holdfast-recovered) unless --force.
 *  5. Mark the incident recovered.
 *
 * A rerun (after kill -9, or just twice) finds finished work by content: a file whose
 * content already equals its source is "already in place"; the journal tells our own
 * restores apart from later changes by others.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>

#include "../base/gojson.h"
#include "../base/log.h"
#include "../base/util.h"
#include "../sentinel/sentinel.h"
#include "recover-internal.h"

#define STORE_DIR ".holdfast"
#define GRACE 2.0 /* seconds after containment still counted as the attacker's */
#define BATCH 256 /* restores per sync */
#define CONTENT_KINDS "modify truncate open-trunc mmap"

typedef struct Pre {
        int64_t id;
        double time;
        pid_t pid;
        char reason[16], method[16];
        uint64_t dev, ino;
        char *path;
        char *abs; /* the pre-image file, NULL when none was kept */
        int64_t size;
        uint32_t mode, uid, gid;
        int64_t mtime_ns;
        char sha[65];
        bool released;
        uint64_t range_off, range_len, log_off; /* method "range" */
} Pre;

/* One kept range of a run: len bytes at off of the file, at log_off of the log file. */
typedef struct Seg {
        uint64_t off, len, log_off;
        char *log;
        char sha[65];
} Seg;

typedef struct Ev {
        double time;
        pid_t pid;
        char kind[16];
        char *path, *new_path;
        uint64_t dev, ino;
        int64_t size_before, size_after;
        char hash_after[65];
        bool ondir; /* the object is a folder */
} Ev;

/* A folder the scope renamed. Its names are normalised to the moment of the rename (the
 * sentinel resolves a path when it reads the event, which may be after a later rename). */
typedef struct Move {
        double time;
        char *from, *to;
        uint64_t dev, ino;
        bool pending; /* still in effect: a dry run, or it could not be undone */
} Move;

/* A folder the scope made (made) or removed (!made), by its pre-incident name. */
typedef struct Dir {
        double time;
        char *path;
        bool made;
} Dir;

typedef enum Source {
        SRC_NONE,
        SRC_PREIMAGE,
        SRC_INODE, /* renamed, content unchanged */
        SRC_PIN,
        SRC_VAULT,
} Source;

typedef struct Item {
        uint64_t dev, ino;
        char *orig;          /* path before the incident */
        char *cur;           /* where its inode is now, NULL: gone */
        double first_touch;  /* first event of any kind */
        double first_change; /* first content change (0: none known) */
        bool changed, deleted, renamed, maybe;
        char hash_after[65]; /* the attacker's content at containment, when recorded */
        int64_t size_before;
        /* the chosen source */
        Source src;
        Pre pre;          /* SRC_PREIMAGE (owned copy) */
        bool pre_foreign; /* that pre-image was taken for another process */
        char *pin;        /* SRC_PIN */
        HfNode node;      /* SRC_VAULT (owned copy) */
        bool has_node;
        char expect[65]; /* content hash the source must give, "" unknown */
        bool meta_known; /* size and mtime just before the first change (any pre row) */
        int64_t meta_size, meta_mtime_ns;
        char meta_sha[65]; /* SHA-256 of a (maybe released) pre-image of that moment */
        const char *why;   /* SRC_NONE: why */
        /* SRC_PREIMAGE from a run of ranges (pre is its first row): base (the whole pre-image
         * that ended the run, the file as it is now, or its pin) with the ranges put back */
        char *base;
        Seg *segs;
        size_t n_segs, cap_segs;
} Item;

typedef struct Junk {
        char *path;
        uint64_t ino;
        double time;
        bool dead;
} Junk;

typedef struct Map {
        uint64_t *keys;
        size_t *vals;
        size_t cap, n;
} Map;

typedef struct Ctx {
        const HfRecoverOptions *o;
        HfRecoverResult *res;
        sqlite3 *db;
        char db_path[HF_RECOVER_PATH_MAX];
        /* the scope */
        char kind[32], state[32];
        double first_event, detected, contained, lo, hi, end, t_start;
        pid_t *pids;
        size_t n_pids, cap_pids;
        Ev *ev;
        size_t n_ev, cap_ev;
        Move *moves; /* in event order */
        size_t n_moves, cap_moves, n_pending;
        Dir *dirs; /* in event order */
        size_t n_dirs, cap_dirs;
        Pre *pre;
        size_t n_pre, cap_pre;
        Pre *pins; /* pin rows of the scope: the inodes its processes opened for write */
        size_t n_pins, cap_pins;
        Item *items;
        size_t n_items, cap_items;
        Map by_ino, by_cur;
        char *dir_path; /* locate_in_dir()'s folder listing */
        Map dir_map;
        char **dir_names;
        size_t n_dir_names;
        Junk *junk;
        size_t n_junk, cap_junk;
        HfVaultSrc *vault;
        bool vault_tried;
        /* execution */
        HfJournal journal;
        int journal_fd;
        char journal_path[HF_RECOVER_PATH_MAX];
        HfBuf jbuf;
        char **batch_dirs;
        size_t n_batch;
        long crash_after, steps;
        char key[96];
} Ctx;

static inline void closedirp(DIR **d)
{
        if (*d)
                (void)closedir(*d);
}

static double ts_sec(struct timespec t)
{
        return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

double hf_recover_now(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return ts_sec(ts);
}

int hf_recover_sha_fd(int fd, char hex[65], uint64_t *ret_size)
{
        _cleanup_(hf_sha256_freep) HfSha256 *h = NULL;
        _cleanup_free_ uint8_t *buf = malloc(1 << 20);
        uint64_t off = 0;
        HfId sum;
        int r;

        if (!buf)
                return -ENOMEM;
        r = hf_sha256_new(&h);
        if (r < 0)
                return r;
        for (;;) {
                ssize_t n = pread(fd, buf, 1 << 20, (off_t)off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                hf_sha256_update(h, buf, (size_t)n);
                off += (uint64_t)n;
        }
        hf_sha256_final(h, &sum);
        hf_hex_encode(sum.b, 32, hex);
        hex[64] = 0;
        if (ret_size)
                *ret_size = off;
        return 0;
}

static int sha_path(const char *path, char hex[65], uint64_t *size)
{
        if (!path)
                return -EINVAL;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0)
                return -errno;
        return hf_recover_sha_fd(fd, hex, size);
}

/* ---- small maps: 64-bit key -> index ---- */

static uint64_t hash64(uint64_t x)
{
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdULL;
        x ^= x >> 33;
        x *= 0xc4ceb9fe1a85ec53ULL;
        x ^= x >> 33;
        return x | 1;
}

static uint64_t hash_path(const char *s)
{
        uint64_t h = 1469598103934665603ULL;
        for (; *s; s++)
                h = (h ^ (uint8_t)*s) * 1099511628211ULL;
        return hash64(h);
}

static uint64_t key_inode(uint64_t dev, uint64_t ino)
{
        return hash64(dev * 0x9e3779b97f4a7c15ULL ^ ino);
}

static void map_free(Map *m)
{
        free(m->keys);
        free(m->vals);
        *m = (Map){ 0 };
}

static int map_put(Map *m, uint64_t key, size_t val)
{
        if ((m->n + 1) * 2 > m->cap) {
                size_t nc = m->cap ? m->cap * 2 : 1024;
                uint64_t *nk = calloc(nc, sizeof(uint64_t));
                size_t *nv = calloc(nc, sizeof(size_t));
                if (!nk || !nv) {
                        free(nk);
                        free(nv);
                        return -ENOMEM;
                }
                for (size_t i = 0; i < m->cap; i++) {
                        if (!m->keys[i])
                                continue;
                        size_t j = (size_t)m->keys[i] & (nc - 1);
                        while (nk[j])
                                j = (j + 1) & (nc - 1);
                        nk[j] = m->keys[i];
                        nv[j] = m->vals[i];
                }
                free(m->keys);
                free(m->vals);
                m->keys = nk;
                m->vals = nv;
                m->cap = nc;
        }
        size_t j = (size_t)key & (m->cap - 1);
        while (m->keys[j] && m->keys[j] != key)
                j = (j + 1) & (m->cap - 1);
        if (!m->keys[j])
                m->n++;
        m->keys[j] = key;
        m->vals[j] = val;
        return 0;
}

/* Candidates share the key's slot chain; the caller checks the real identity. */
static bool map_get(const Map *m, uint64_t key, size_t *ret)
{
        if (!m->cap)
                return false;
        size_t j = (size_t)key & (m->cap - 1);
        while (m->keys[j]) {
                if (m->keys[j] == key) {
                        *ret = m->vals[j];
                        return true;
                }
                j = (j + 1) & (m->cap - 1);
        }
        return false;
}

/* ---- output ---- */

static void out_json_str(HfBuf *b, const char *key, const char *v)
{
        (void)hf_buf_printf(b, ",\"%s\":", key);
        if (v)
                (void)hf_json_put_string(b, v, strlen(v));
        else
                (void)hf_buf_puts(b, "null");
}

/* How good a source is: exact and proven first. */
static int src_rank(Source s)
{
        switch (s) {
        case SRC_PREIMAGE:
        case SRC_INODE:
                return 4;
        case SRC_PIN:
                return 3;
        case SRC_VAULT:
                return 2;
        default:
                return 0;
        }
}

static const char *src_name(Source s)
{
        switch (s) {
        case SRC_PREIMAGE:
                return "pre-image";
        case SRC_INODE:
                return "renamed-back";
        case SRC_PIN:
                return "pin";
        case SRC_VAULT:
                return "vault";
        default:
                return "none";
        }
}

static void fmt_time(double t, char *buf, size_t n)
{
        time_t s = (time_t)t;
        struct tm tm;
        localtime_r(&s, &tm);
        (void)strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm);
}

/* One line per file: action, path, where it came from, the verified hash, notes. */
static void report(Ctx *c, const char *action, const char *path, const Item *it, const char *sha,
                   bool verified, uint64_t bytes, const char *note, const char *ranges)
{
        const HfOutput *out = &c->o->out;

        if (out->json) {
                _cleanup_buf_ HfBuf b = HF_BUF_INIT(1 << 20);
                (void)hf_buf_printf(&b, "{\"message_type\":\"file\",\"action\":\"%s\"", action);
                out_json_str(&b, "path", path);
                if (it) {
                        out_json_str(&b, "source", src_name(it->src));
                        if (it->src == SRC_PREIMAGE) {
                                (void)hf_buf_printf(&b, ",\"preimage_id\":%lld",
                                                    (long long)it->pre.id);
                                out_json_str(&b, "method", it->pre.method);
                                out_json_str(&b, "store", it->pre.abs);
                        } else if (it->src == SRC_PIN)
                                out_json_str(&b, "store", it->pin);
                        else if (it->src == SRC_VAULT) {
                                char id8[9];
                                double t;
                                if (hf_vault_src_snapshot(c->vault, id8, &t)) {
                                        out_json_str(&b, "snapshot", id8);
                                        (void)hf_buf_printf(&b, ",\"snapshot_time\":%.6f", t);
                                }
                        } else if (it->src == SRC_INODE && it->cur)
                                out_json_str(&b, "from", it->cur);
                        if (it->orig && strcmp(it->orig, path) != 0)
                                out_json_str(&b, "original", it->orig);
                }
                out_json_str(&b, "sha256", sha && *sha ? sha : NULL);
                (void)hf_buf_printf(&b, ",\"verified\":%s,\"bytes\":%llu",
                                    verified ? "true" : "false", (unsigned long long)bytes);
                if (note)
                        out_json_str(&b, "note", note);
                if (ranges)
                        (void)hf_buf_printf(&b, ",\"unproven_ranges\":[%s]", ranges);
                (void)hf_buf_puts(&b, "}\n");
                fwrite(b.data, 1, b.len, stdout);
                return;
        }
        if (out->quiet && strcmp(action, "lost") != 0 && strcmp(action, "failed") != 0)
                return;
        char from[256] = "";
        if (it) {
                char t[32];
                switch (it->src) {
                case SRC_PREIMAGE:
                        fmt_time(it->pre.time, t, sizeof(t));
                        (void)snprintf(from, sizeof(from), "pre-image %lld (%s, %s)",
                                       (long long)it->pre.id, it->pre.method, t);
                        break;
                case SRC_PIN:
                        (void)snprintf(from, sizeof(from), "hard-link pin");
                        break;
                case SRC_VAULT: {
                        char id8[9];
                        double st;
                        if (hf_vault_src_snapshot(c->vault, id8, &st)) {
                                fmt_time(st, t, sizeof(t));
                                (void)snprintf(from, sizeof(from), "vault snapshot %s (%s)", id8,
                                               t);
                        }
                        break;
                }
                case SRC_INODE:
                        (void)snprintf(from, sizeof(from), "renamed back from %.200s",
                                       it->cur ? it->cur : "?");
                        break;
                default:
                        break;
                }
        }
        printf("%-9s %s", action, path);
        if (from[0])
                printf("  from %s", from);
        if (sha && *sha)
                printf("  sha256 %.16s%s", sha, verified ? " verified" : "");
        if (note)
                printf("  (%s)", note);
        if (ranges)
                printf("  unproven bytes: %s", ranges);
        printf("\n");
}

/* ---- loading the scope ---- */

static void ev_done(Ev *e)
{
        free(e->path);
        free(e->new_path);
}

static void pre_done(Pre *p)
{
        free(p->path);
        free(p->abs);
        p->path = p->abs = NULL;
}

static char *col_dup(sqlite3_stmt *s, int i)
{
        const unsigned char *t = sqlite3_column_text(s, i);
        return t ? strdup((const char *)t) : NULL;
}

static void col_copy(sqlite3_stmt *s, int i, char *out, size_t n)
{
        const unsigned char *t = sqlite3_column_text(s, i);
        (void)snprintf(out, n, "%s", t ? (const char *)t : "");
}

static int64_t col_i64(sqlite3_stmt *s, int i, int64_t dflt)
{
        return sqlite3_column_type(s, i) == SQLITE_NULL ? dflt : sqlite3_column_int64(s, i);
}

static double col_dbl(sqlite3_stmt *s, int i, double dflt)
{
        return sqlite3_column_type(s, i) == SQLITE_NULL ? dflt : sqlite3_column_double(s, i);
}

#define PRE_COLS                                                                                   \
        "id, time, pid, reason, method, dev, ino, path, store_root, store_path, size, mode,"       \
        " uid, gid, mtime_ns, sha256, released, range_off, range_len, log_off"

static int pre_from_row(sqlite3_stmt *s, Pre *p)
{
        *p = (Pre){ 0 };
        p->id = sqlite3_column_int64(s, 0);
        p->time = sqlite3_column_double(s, 1);
        p->pid = (pid_t)sqlite3_column_int64(s, 2);
        col_copy(s, 3, p->reason, sizeof(p->reason));
        col_copy(s, 4, p->method, sizeof(p->method));
        p->dev = (uint64_t)sqlite3_column_int64(s, 5);
        p->ino = (uint64_t)sqlite3_column_int64(s, 6);
        p->path = col_dup(s, 7);
        const unsigned char *root = sqlite3_column_text(s, 8), *rel = sqlite3_column_text(s, 9);
        if (root && rel && *rel && !strstr((const char *)rel, "..")) {
                if (asprintf(&p->abs, "%s/" STORE_DIR "/%s",
                             strcmp((const char *)root, "/") ? (const char *)root : "",
                             (const char *)rel) < 0)
                        p->abs = NULL;
        }
        p->size = col_i64(s, 10, -1);
        p->mode = (uint32_t)col_i64(s, 11, 0);
        p->uid = (uint32_t)col_i64(s, 12, 0);
        p->gid = (uint32_t)col_i64(s, 13, 0);
        p->mtime_ns = col_i64(s, 14, 0);
        col_copy(s, 15, p->sha, sizeof(p->sha));
        p->released = sqlite3_column_type(s, 16) != SQLITE_NULL;
        p->range_off = (uint64_t)col_i64(s, 17, 0);
        p->range_len = (uint64_t)col_i64(s, 18, 0);
        p->log_off = (uint64_t)col_i64(s, 19, 0);
        if (!p->path)
                return -ENOMEM;
        return 0;
}

static int db_fail(Ctx *c, const char *what)
{
        log_error("%s: %s: %s", c->db_path, what, sqlite3_errmsg(c->db));
        return -EIO;
}

static bool pid_in_scope(const Ctx *c, pid_t pid)
{
        for (size_t i = 0; i < c->n_pids; i++)
                if (c->pids[i] == pid)
                        return true;
        return false;
}

static int load_incident(Ctx *c)
{
        sqlite3_stmt *s = NULL;

        if (sqlite3_prepare_v2(c->db,
                               "SELECT kind, state, first_event, detected, contained FROM "
                               "incidents WHERE id = ?",
                               -1, &s, NULL) != SQLITE_OK)
                return db_fail(c, "reading the incident");
        sqlite3_bind_int64(s, 1, c->o->incident);
        if (sqlite3_step(s) != SQLITE_ROW) {
                sqlite3_finalize(s);
                log_error("no incident %lld in %s (\"holdfast incidents --state %s\" lists them)",
                          (long long)c->o->incident, c->db_path, c->o->state_dir);
                return -ENOENT;
        }
        col_copy(s, 0, c->kind, sizeof(c->kind));
        col_copy(s, 1, c->state, sizeof(c->state));
        c->first_event = col_dbl(s, 2, 0);
        c->detected = col_dbl(s, 3, c->first_event);
        c->contained = col_dbl(s, 4, 0);
        sqlite3_finalize(s);

        if (sqlite3_prepare_v2(c->db, "SELECT DISTINCT pid FROM processes WHERE incident_id = ?",
                               -1, &s, NULL) != SQLITE_OK)
                return db_fail(c, "reading the processes");
        sqlite3_bind_int64(s, 1, c->o->incident);
        while (sqlite3_step(s) == SQLITE_ROW) {
                if (hf_reserve((void **)&c->pids, &c->cap_pids, c->n_pids, sizeof(pid_t)) < 0) {
                        sqlite3_finalize(s);
                        return -ENOMEM;
                }
                c->pids[c->n_pids++] = (pid_t)sqlite3_column_int64(s, 0);
        }
        sqlite3_finalize(s);
        return 0;
}

/* Does the database have this column (fields are only ever added: an older sentinel's may
 * not)? */
static bool has_column(Ctx *c, const char *table, const char *column)
{
        sqlite3_stmt *s = NULL;
        bool found = false;

        if (sqlite3_prepare_v2(c->db, "SELECT 1 FROM pragma_table_info(?) WHERE name = ?", -1, &s,
                               NULL) != SQLITE_OK)
                return false;
        sqlite3_bind_text(s, 1, table, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, column, -1, SQLITE_STATIC);
        found = sqlite3_step(s) == SQLITE_ROW;
        sqlite3_finalize(s);
        return found;
}

static int load_events(Ctx *c)
{
        sqlite3_stmt *s = NULL;
        const char *where;
        char sql[512];
        int r;

        switch (c->o->scope) {
        case HF_RECOVER_INCIDENT:
                where = "incident_id = ?1";
                break;
        case HF_RECOVER_PROCESS:
                where = "pid = ?2 AND time >= ?3";
                break;
        default:
                where = "time >= ?3";
                break;
        }
        /* ondir (schema 2): renamed folders. */
        (void)snprintf(sql, sizeof(sql),
                       "SELECT time, pid, kind, path, new_path, dev, ino, size_before, size_after,"
                       " hash_after, %s FROM file_events WHERE %s ORDER BY time, id",
                       has_column(c, "file_events", "ondir") ? "ondir" : "NULL", where);
        if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) != SQLITE_OK)
                return db_fail(c, "reading the file events");
        if (c->o->scope == HF_RECOVER_INCIDENT)
                sqlite3_bind_int64(s, 1, c->o->incident);
        else {
                if (c->o->scope == HF_RECOVER_PROCESS)
                        sqlite3_bind_int64(s, 2, c->o->pid);
                sqlite3_bind_double(s, 3,
                                    c->o->scope == HF_RECOVER_PROCESS ? c->o->since : c->o->before);
        }
        while ((r = sqlite3_step(s)) == SQLITE_ROW) {
                if (hf_reserve((void **)&c->ev, &c->cap_ev, c->n_ev, sizeof(Ev)) < 0) {
                        sqlite3_finalize(s);
                        return -ENOMEM;
                }
                Ev *e = &c->ev[c->n_ev];
                *e = (Ev){ 0 };
                e->time = sqlite3_column_double(s, 0);
                e->pid = (pid_t)sqlite3_column_int64(s, 1);
                col_copy(s, 2, e->kind, sizeof(e->kind));
                e->path = col_dup(s, 3);
                e->new_path = col_dup(s, 4);
                e->dev = (uint64_t)col_i64(s, 5, 0);
                e->ino = (uint64_t)col_i64(s, 6, 0);
                e->size_before = col_i64(s, 7, -1);
                e->size_after = col_i64(s, 8, -1);
                col_copy(s, 9, e->hash_after, sizeof(e->hash_after));
                e->ondir = col_i64(s, 10, 0) != 0;
                if (!e->path || e->path[0] != '/') {
                        ev_done(e);
                        continue;
                }
                c->n_ev++;
        }
        sqlite3_finalize(s);
        return r == SQLITE_DONE ? 0 : db_fail(c, "reading the file events");
}

static int push_pre(Ctx *c, const Pre *p)
{
        if (hf_reserve((void **)&c->pre, &c->cap_pre, c->n_pre, sizeof(Pre)) < 0)
                return -ENOMEM;
        c->pre[c->n_pre++] = *p;
        return 0;
}

static int push_pin(Ctx *c, const Pre *p)
{
        if (hf_reserve((void **)&c->pins, &c->cap_pins, c->n_pins, sizeof(Pre)) < 0)
                return -ENOMEM;
        c->pins[c->n_pins++] = *p;
        return 0;
}

static bool under_paths(const Ctx *c, const char *path)
{
        for (size_t i = 0; i < c->o->n_paths; i++) {
                const char *p = c->o->paths[i];
                size_t l = strlen(p);
                if (strcmp(p, "/") == 0 ||
                    (strncmp(path, p, l) == 0 && (path[l] == '/' || path[l] == 0)))
                        return true;
        }
        return false;
}

/* Pre-images taken for the scope's processes (incident, process) or after the time (before). */
static int load_preimages(Ctx *c)
{
        sqlite3_stmt *s = NULL;
        const char *sql;
        int r;

        switch (c->o->scope) {
        case HF_RECOVER_INCIDENT:
                /* By process and time, not by the incident_id claim: a claim can be stale
                 * (an inode number reused by a new file inherits the old claim). */
                sql = "SELECT " PRE_COLS " FROM preimages WHERE pid IN"
                      " (SELECT pid FROM processes WHERE incident_id = ?1) AND time >= ?2 AND"
                      " time <= ?3 ORDER BY time, id";
                break;
        case HF_RECOVER_PROCESS:
                sql = "SELECT " PRE_COLS " FROM preimages WHERE pid = ?4 AND time >= ?2"
                      " ORDER BY time, id";
                break;
        default:
                sql = "SELECT " PRE_COLS " FROM preimages WHERE time >= ?2 ORDER BY time, id";
                break;
        }
        if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) != SQLITE_OK)
                return db_fail(c, "reading the pre-images");
        if (c->o->scope == HF_RECOVER_INCIDENT)
                sqlite3_bind_int64(s, 1, c->o->incident);
        sqlite3_bind_double(s, 2, c->lo);
        sqlite3_bind_double(s, 3, c->hi);
        if (c->o->scope == HF_RECOVER_PROCESS)
                sqlite3_bind_int64(s, 4, c->o->pid);
        while ((r = sqlite3_step(s)) == SQLITE_ROW) {
                Pre p;
                if (pre_from_row(s, &p) < 0) {
                        pre_done(&p);
                        continue;
                }
                if (c->o->scope == HF_RECOVER_BEFORE && !under_paths(c, p.path)) {
                        pre_done(&p);
                        continue;
                }
                /* Pins (hard links to the live inode) are no content captures: they tell
                 * which inode a process opened for write, under which name. */
                bool is_pin = strcmp(p.method, "link") == 0 || strcmp(p.reason, "pin") == 0;
                if (is_pin ? push_pin(c, &p) < 0 : push_pre(c, &p) < 0) {
                        pre_done(&p);
                        sqlite3_finalize(s);
                        return -ENOMEM;
                }
        }
        sqlite3_finalize(s);
        return r == SQLITE_DONE ? 0 : db_fail(c, "reading the pre-images");
}

/* ---- renamed folders ---- */

/* The length of dir when path is dir or below it, else 0. */
static size_t below(const char *path, const char *dir)
{
        size_t l = strlen(dir);
        return l > 1 && strncmp(path, dir, l) == 0 && (path[l] == '/' || path[l] == 0) ? l : 0;
}

/* Replaces the leading folder from of *path with to (when *path is below from). */
static int reprefix(char **path, const char *from, const char *to)
{
        size_t l;
        char *n = NULL;

        if (!*path || !(l = below(*path, from)))
                return 0;
        if (asprintf(&n, "%s%s", to, *path + l) < 0)
                return -ENOMEM;
        free(*path);
        *path = n;
        return 0;
}

/* The name path has before every folder rename of the scope. Renames are undone latest first:
 * a path below a rename's target was below its source before. */
static int canonical(const Ctx *c, char **path)
{
        for (size_t j = c->n_moves; j > 0; j--) {
                int r = reprefix(path, c->moves[j - 1].to, c->moves[j - 1].from);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Where a path of the pre-incident names is now: the renames still in effect applied (none
 * once every folder is back). Returns path itself, or buf (HF_RECOVER_PATH_MAX). */
static const char *live(const Ctx *c, const char *path, char *buf)
{
        if (!path || c->n_pending == 0)
                return path;
        (void)snprintf(buf, HF_RECOVER_PATH_MAX, "%s", path);
        for (size_t j = 0; j < c->n_moves; j++) {
                const Move *m = &c->moves[j];
                size_t l;
                if (!m->pending || !(l = below(buf, m->from)))
                        continue;
                char rest[HF_RECOVER_PATH_MAX];
                (void)snprintf(rest, sizeof(rest), "%s", buf + l);
                (void)snprintf(buf, HF_RECOVER_PATH_MAX, "%s%s", m->to, rest);
        }
        return buf;
}

/*
 * Takes the folder renames out of the event list, normalises their names and rewrites every
 * other path of the scope (events, pre-images, pins) to the names before the incident: a file
 * event or pre-image recorded under the folder's new name is found under the old one.
 */
static int take_moves(Ctx *c)
{
        size_t w = 0;
        int r;

        for (size_t k = 0; k < c->n_ev; k++) {
                Ev *e = &c->ev[k];
                if (!e->ondir) {
                        c->ev[w++] = *e;
                        continue;
                }
                if (strcmp(e->kind, "rename") == 0 && e->new_path && e->new_path[0] == '/' &&
                    strcmp(e->path, e->new_path) != 0 &&
                    (c->o->scope != HF_RECOVER_BEFORE || under_paths(c, e->path) ||
                     under_paths(c, e->new_path))) {
                        if (hf_reserve((void **)&c->moves, &c->cap_moves, c->n_moves,
                                       sizeof(Move)) < 0)
                                return -ENOMEM;
                        c->moves[c->n_moves++] = (Move){ .time = e->time,
                                                         .from = TAKE_PTR(e->path),
                                                         .to = TAKE_PTR(e->new_path),
                                                         .dev = e->dev,
                                                         .ino = e->ino };
                }
                if ((strcmp(e->kind, "create") == 0 || strcmp(e->kind, "delete") == 0) && e->path &&
                    e->path[0] == '/' &&
                    (c->o->scope != HF_RECOVER_BEFORE || under_paths(c, e->path))) {
                        if (hf_reserve((void **)&c->dirs, &c->cap_dirs, c->n_dirs, sizeof(Dir)) < 0)
                                return -ENOMEM;
                        c->dirs[c->n_dirs++] = (Dir){ .time = e->time,
                                                      .path = TAKE_PTR(e->path),
                                                      .made = e->kind[0] == 'c' };
                }
                ev_done(e);
        }
        c->n_ev = w;
        if (c->n_moves == 0)
                return 0;
        /* A rename's own names may already show later renames of a parent. */
        for (size_t j = 0; j < c->n_moves; j++)
                for (size_t k = c->n_moves; k > j + 1; k--) {
                        const Move *m = &c->moves[k - 1];
                        if ((r = reprefix(&c->moves[j].from, m->to, m->from)) < 0 ||
                            (r = reprefix(&c->moves[j].to, m->to, m->from)) < 0)
                                return r;
                }
        for (size_t k = 0; k < c->n_ev; k++)
                if ((r = canonical(c, &c->ev[k].path)) < 0 ||
                    (r = canonical(c, &c->ev[k].new_path)) < 0)
                        return r;
        for (size_t k = 0; k < c->n_pre; k++)
                if ((r = canonical(c, &c->pre[k].path)) < 0)
                        return r;
        for (size_t k = 0; k < c->n_pins; k++)
                if ((r = canonical(c, &c->pins[k].path)) < 0)
                        return r;
        for (size_t k = 0; k < c->n_dirs; k++)
                if ((r = canonical(c, &c->dirs[k].path)) < 0)
                        return r;
        return 0;
}

/* ---- replaying the events ---- */

static Item *item_by_cur(Ctx *c, const char *path)
{
        size_t i;
        if (!map_get(&c->by_cur, hash_path(path), &i))
                return NULL;
        Item *it = &c->items[i];
        return it->cur && strcmp(it->cur, path) == 0 ? it : NULL;
}

static Item *item_by_ino(Ctx *c, uint64_t dev, uint64_t ino)
{
        size_t i;
        if (!ino || !map_get(&c->by_ino, key_inode(dev, ino), &i))
                return NULL;
        Item *it = &c->items[i];
        return it->ino == ino && it->dev == dev ? it : NULL;
}

static Item *item_by_orig(Ctx *c, const char *path)
{
        for (size_t i = 0; i < c->n_items; i++)
                if (strcmp(c->items[i].orig, path) == 0)
                        return &c->items[i];
        return NULL;
}

static void set_cur(Ctx *c, Item *it, const char *path)
{
        free(it->cur);
        it->cur = path ? strdup(path) : NULL;
        if (it->cur)
                (void)map_put(&c->by_cur, hash_path(it->cur), (size_t)(it - c->items));
}

static Item *item_new(Ctx *c, uint64_t dev, uint64_t ino, const char *orig, double t)
{
        if (hf_reserve((void **)&c->items, &c->cap_items, c->n_items, sizeof(Item)) < 0)
                return NULL;
        Item *it = &c->items[c->n_items];
        *it = (Item){ .dev = dev, .ino = ino, .first_touch = t, .size_before = -1 };
        it->orig = strdup(orig);
        if (!it->orig)
                return NULL;
        c->n_items++;
        set_cur(c, it, orig);
        if (ino)
                (void)map_put(&c->by_ino, key_inode(dev, ino), (size_t)(it - c->items));
        return it;
}

static Junk *junk_find(Ctx *c, const char *path)
{
        for (size_t i = c->n_junk; i > 0; i--)
                if (!c->junk[i - 1].dead && strcmp(c->junk[i - 1].path, path) == 0)
                        return &c->junk[i - 1];
        return NULL;
}

static int junk_add(Ctx *c, const char *path, uint64_t ino, double t)
{
        Junk *j = junk_find(c, path);
        if (j) {
                if (ino)
                        j->ino = ino;
                return 0;
        }
        if (hf_reserve((void **)&c->junk, &c->cap_junk, c->n_junk, sizeof(Junk)) < 0)
                return -ENOMEM;
        c->junk[c->n_junk] = (Junk){ .path = strdup(path), .ino = ino, .time = t };
        if (!c->junk[c->n_junk].path)
                return -ENOMEM;
        c->n_junk++;
        return 0;
}

static bool content_kind(const char *k)
{
        return strcmp(k, "modify") == 0 || strcmp(k, "truncate") == 0 ||
               strcmp(k, "open-trunc") == 0 || strcmp(k, "mmap") == 0;
}

/* An item of unknown inode (a delete event carries none) whose original lived at path. */
static Item *item_unknown_at(Ctx *c, const char *path)
{
        for (size_t i = 0; i < c->n_items; i++)
                if (!c->items[i].ino && strcmp(c->items[i].orig, path) == 0)
                        return &c->items[i];
        return NULL;
}

static void adopt_ino(Ctx *c, Item *it, uint64_t dev, uint64_t ino)
{
        it->dev = dev;
        it->ino = ino;
        (void)map_put(&c->by_ino, key_inode(dev, ino), (size_t)(it - c->items));
}

static Item *touch(Ctx *c, const Ev *e, const char *path)
{
        Item *it = item_by_ino(c, e->dev, e->ino);
        if (!it)
                it = item_by_cur(c, path);
        /* The analysis of a change may be recorded after the delete that followed it (the
         * sentinel looks at a file when its writer closes it, or a moment later). */
        if (!it && e->ino && (it = item_unknown_at(c, path)))
                adopt_ino(c, it, e->dev, e->ino);
        if (!it)
                it = item_new(c, e->dev, e->ino, path, e->time);
        if (it && !it->ino && e->ino) {
                it->ino = e->ino;
                it->dev = e->dev;
                (void)map_put(&c->by_ino, key_inode(e->dev, e->ino), (size_t)(it - c->items));
        }
        return it;
}

static int replay(Ctx *c)
{
        for (size_t k = 0; k < c->n_ev; k++) {
                const Ev *e = &c->ev[k];
                Junk *j;
                Item *it;

                if (c->o->scope == HF_RECOVER_BEFORE && !under_paths(c, e->path) &&
                    !(e->new_path && under_paths(c, e->new_path)))
                        continue;
                if (strcmp(e->kind, "create") == 0) {
                        it = item_by_cur(c, e->path);
                        if (it && it->ino && e->ino && it->ino == e->ino)
                                continue; /* an analysis record of an original */
                        if (junk_add(c, e->path, e->ino, e->time) < 0)
                                return -ENOMEM;
                        continue;
                }
                if (content_kind(e->kind)) {
                        j = junk_find(c, e->path);
                        if (j && (!e->ino || !j->ino || j->ino == e->ino))
                                continue; /* the attacker's own file */
                        it = touch(c, e, e->path);
                        if (!it)
                                return -ENOMEM;
                        it->changed = true;
                        if (!it->first_change || e->time < it->first_change)
                                it->first_change = e->time;
                        if (e->hash_after[0])
                                memcpy(it->hash_after, e->hash_after, sizeof(it->hash_after));
                        if (e->size_before >= 0 && it->size_before < 0)
                                it->size_before = e->size_before;
                        continue;
                }
                if (strcmp(e->kind, "delete") == 0) {
                        j = junk_find(c, e->path);
                        if (j) {
                                j->dead = true;
                                continue;
                        }
                        it = item_by_cur(c, e->path);
                        if (!it)
                                it = item_by_ino(c, e->dev, e->ino);
                        if (!it)
                                it = item_new(c, e->dev, e->ino, e->path, e->time);
                        if (!it)
                                return -ENOMEM;
                        it->deleted = true;
                        set_cur(c, it, NULL);
                        continue;
                }
                if (strcmp(e->kind, "rename") == 0 && e->new_path && e->new_path[0] == '/') {
                        j = junk_find(c, e->path);
                        size_t it_i = SIZE_MAX;
                        if (!j) {
                                it = touch(c, e, e->path);
                                if (!it)
                                        return -ENOMEM;
                                it_i = (size_t)(it - c->items);
                        }
                        /* Whatever was at the target is replaced. */
                        Item *over = item_by_cur(c, e->new_path);
                        Junk *jover = junk_find(c, e->new_path);
                        if (over && (it_i == SIZE_MAX || over != &c->items[it_i])) {
                                over->deleted = true;
                                set_cur(c, over, NULL);
                        } else if (jover && jover != j)
                                jover->dead = true;
                        else if (!over && !item_by_orig(c, e->new_path)) {
                                /* Maybe an original was there: look for it later. */
                                Item *m = item_new(c, 0, 0, e->new_path, e->time);
                                if (!m)
                                        return -ENOMEM;
                                m->maybe = true;
                                m->deleted = true;
                                set_cur(c, m, NULL);
                        }
                        if (j) {
                                free(j->path);
                                j->path = strdup(e->new_path);
                                if (!j->path)
                                        return -ENOMEM;
                                continue;
                        }
                        it = &c->items[it_i];
                        it->renamed = true;
                        set_cur(c, it, e->new_path);
                        if (e->hash_after[0] && !it->hash_after[0])
                                memcpy(it->hash_after, e->hash_after, sizeof(it->hash_after));
                        continue;
                }
                /* decoy, raw-write and unknown kinds: nothing to put back */
        }
        return 0;
}

/* Pre-images of the scope whose file no event mentions (the event ring overflowed, or the
 * process was stopped before its change was analysed). */
/* The name an inode has now in the folder of path (NULL when none), from a listing of the
 * folder kept for the next lookups. */
static char *locate_in_dir(Ctx *c, const char *path, uint64_t dev, uint64_t ino)
{
        char dir[HF_RECOVER_PATH_MAX];
        const char *slash = strrchr(path, '/');

        if (!slash || slash == path)
                return NULL;
        (void)snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
        char lbuf[HF_RECOVER_PATH_MAX];
        if (!c->dir_path || strcmp(c->dir_path, dir) != 0) {
                _cleanup_(closedirp) DIR *d = opendir(live(c, dir, lbuf));
                struct dirent *de;
                map_free(&c->dir_map);
                hf_strv_free(c->dir_names, c->n_dir_names);
                c->dir_names = NULL;
                c->n_dir_names = 0;
                free(c->dir_path);
                c->dir_path = strdup(dir);
                if (!d || !c->dir_path)
                        return NULL;
                while ((de = readdir(d)))
                        if (de->d_type == DT_REG || de->d_type == DT_UNKNOWN) {
                                if (hf_strv_push(&c->dir_names, &c->n_dir_names, de->d_name) < 0)
                                        break;
                                (void)map_put(&c->dir_map, hash64(de->d_ino), c->n_dir_names - 1);
                        }
        }
        size_t k;
        if (!map_get(&c->dir_map, hash64(ino), &k) || !c->dir_names || k >= c->n_dir_names)
                return NULL;
        char *p = NULL;
        struct stat st;
        if (asprintf(&p, "%s/%s", dir, c->dir_names[k]) < 0)
                return NULL;
        if (lstat(live(c, p, lbuf), &st) < 0 || !S_ISREG(st.st_mode) || st.st_ino != ino ||
            (uint64_t)st.st_dev != dev) {
                free(p);
                return NULL;
        }
        return p;
}

static int add_preimage_items(Ctx *c)
{
        /* A pin of the scope names the inode a deleted original had. */
        for (size_t i = 0; i < c->n_pins; i++) {
                const Pre *p = &c->pins[i];
                if (item_by_ino(c, p->dev, p->ino))
                        continue;
                Item *it = item_unknown_at(c, p->path);
                if (it)
                        adopt_ino(c, it, p->dev, p->ino);
        }
        for (size_t i = 0; i < c->n_pre; i++) {
                const Pre *p = &c->pre[i];
                Item *it = item_by_ino(c, p->dev, p->ino);
                if (!it && (it = item_unknown_at(c, p->path)))
                        adopt_ino(c, it, p->dev, p->ino);
                if (!it) {
                        if (junk_find(c, p->path))
                                continue;
                        it = item_new(c, p->dev, p->ino, p->path, p->time);
                        if (!it)
                                return -ENOMEM;
                        /* Where is the inode now? At its path, under another name in its folder
                         * (renamed; the event was not recorded), or gone. */
                        struct stat st;
                        char lbuf[HF_RECOVER_PATH_MAX];
                        if (lstat(live(c, p->path, lbuf), &st) < 0 || st.st_ino != p->ino ||
                            (uint64_t)st.st_dev != p->dev) {
                                char *moved = locate_in_dir(c, p->path, p->dev, p->ino);
                                set_cur(c, it, moved);
                                if (moved)
                                        it->renamed = true;
                                free(moved);
                        }
                }
                it->changed = true;
                if (!it->first_change || p->time < it->first_change)
                        it->first_change = p->time;
        }
        return 0;
}

/* ---- choosing sources ---- */

static int query_pre(Ctx *c, const char *sql, uint64_t dev, uint64_t ino, const char *path,
                     double t, Pre *ret)
{
        sqlite3_stmt *s = NULL;
        int r = -ENOENT;

        if (sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) != SQLITE_OK)
                return db_fail(c, "reading the pre-images");
        if (path)
                sqlite3_bind_text(s, 1, path, -1, SQLITE_TRANSIENT);
        else {
                sqlite3_bind_int64(s, 1, (int64_t)dev);
                sqlite3_bind_int64(s, 2, (int64_t)ino);
        }
        sqlite3_bind_double(s, 3, t);
        while (sqlite3_step(s) == SQLITE_ROW) {
                Pre p;
                if (pre_from_row(s, &p) < 0) {
                        pre_done(&p);
                        continue;
                }
                /* Only rows whose content was kept count. */
                if (p.released || !p.abs ||
                    (strcmp(p.method, "reflink") != 0 && strcmp(p.method, "copy") != 0 &&
                     strcmp(p.method, "range") != 0)) {
                        pre_done(&p);
                        continue;
                }
                *ret = p;
                r = 0;
                break;
        }
        sqlite3_finalize(s);
        return r;
}

/* The pre-image whose content is the file just before its first change in the scope. */
static int pick_preimage(Ctx *c, Item *it, Pre *ret)
{
        if (c->o->scope == HF_RECOVER_BEFORE)
                return query_pre(c,
                                 "SELECT " PRE_COLS " FROM preimages WHERE dev = ?1 AND ino = ?2"
                                 " AND time >= ?3 ORDER BY time ASC, id ASC",
                                 it->dev, it->ino, NULL, c->o->before, ret);
        return query_pre(c,
                         "SELECT " PRE_COLS " FROM preimages WHERE dev = ?1 AND ino = ?2 AND"
                         " time <= ?3 ORDER BY time DESC, id DESC",
                         it->dev, it->ino, NULL, it->first_change + 1e-6, ret);
}

/* Is the pre-image file intact (size, and SHA-256 when recorded)? Fills expect. */
static int check_preimage(Pre *p, char expect[65])
{
        struct stat st;
        char hex[65];
        uint64_t size;
        _cleanup_close_ int fd = open(p->abs, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return -ENOENT;
        if (p->size >= 0 && st.st_size != p->size)
                return -EBADMSG;
        int r = hf_recover_sha_fd(fd, hex, &size);
        if (r < 0)
                return r;
        if (p->sha[0] && strcmp(p->sha, hex) != 0)
                return -EBADMSG;
        memcpy(expect, hex, 65);
        return 0;
}

/* A hard-link pin of (dev, ino) in the store of path's filesystem. */
static char *find_pin(const char *path, uint64_t dev, uint64_t ino)
{
        char root[HF_RECOVER_PATH_MAX], dir[HF_RECOVER_PATH_MAX + 64], prefix[32];
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *de;
        char *best = NULL;

        if (!ino || hf_mount_root(path, root, sizeof(root)) < 0)
                return NULL;
        (void)snprintf(dir, sizeof(dir), "%s/" STORE_DIR "/pins", strcmp(root, "/") ? root : "");
        (void)snprintf(prefix, sizeof(prefix), "%llu-", (unsigned long long)ino);
        d = opendir(dir);
        if (!d)
                return NULL;
        while ((de = readdir(d))) {
                struct stat st;
                if (strncmp(de->d_name, prefix, strlen(prefix)) != 0)
                        continue;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                    !S_ISREG(st.st_mode) || st.st_ino != ino || (uint64_t)st.st_dev != dev)
                        continue;
                free(best);
                if (asprintf(&best, "%s/%s", dir, de->d_name) < 0)
                        best = NULL;
        }
        return best;
}

/* Size and mtime just before the first change, from any pre-image row (even one whose
 * content was not kept): proof that a snapshot with the same is the pre-attack content. */
static void load_meta(Ctx *c, Item *it)
{
        sqlite3_stmt *s = NULL;

        if (!it->ino || !it->first_change)
                return;
        if (sqlite3_prepare_v2(c->db,
                               "SELECT size, mtime_ns FROM preimages WHERE dev = ? AND ino = ? AND"
                               " time <= ? AND size IS NOT NULL AND mtime_ns IS NOT NULL"
                               " ORDER BY time DESC, id DESC LIMIT 1",
                               -1, &s, NULL) != SQLITE_OK)
                return;
        sqlite3_bind_int64(s, 1, (int64_t)it->dev);
        sqlite3_bind_int64(s, 2, (int64_t)it->ino);
        sqlite3_bind_double(s, 3, it->first_change + 1e-6);
        if (sqlite3_step(s) == SQLITE_ROW) {
                it->meta_known = true;
                it->meta_size = sqlite3_column_int64(s, 0);
                it->meta_mtime_ns = sqlite3_column_int64(s, 1);
        }
        sqlite3_finalize(s);
        /* A pre-image released since (retention) may have left its hash. */
        s = NULL;
        if (sqlite3_prepare_v2(c->db,
                               "SELECT sha256 FROM preimages WHERE dev = ? AND ino = ? AND"
                               " time <= ? AND sha256 IS NOT NULL AND method IN"
                               " ('reflink','copy') ORDER BY time DESC, id DESC LIMIT 1",
                               -1, &s, NULL) != SQLITE_OK)
                return;
        sqlite3_bind_int64(s, 1, (int64_t)it->dev);
        sqlite3_bind_int64(s, 2, (int64_t)it->ino);
        sqlite3_bind_double(s, 3, it->first_change + 1e-6);
        if (sqlite3_step(s) == SQLITE_ROW)
                col_copy(s, 0, it->meta_sha, sizeof(it->meta_sha));
        sqlite3_finalize(s);
}

static int ensure_vault(Ctx *c)
{
        if (!c->o->repo)
                return -ENOENT;
        if (!c->vault_tried) {
                c->vault_tried = true;
                int r = hf_vault_src_new(c->o->repo, c->t_start, &c->vault);
                if (r < 0) {
                        log_warning_errno(r, "the vault cannot be read (%m): no fallback");
                        return r;
                }
        }
        return c->vault ? 0 : -ENOENT;
}

static void segs_free(Item *it)
{
        for (size_t i = 0; i < it->n_segs; i++)
                free(it->segs[i].log);
        free(it->segs);
        free(it->base);
        it->segs = NULL;
        it->base = NULL;
        it->n_segs = it->cap_segs = 0;
}

/* Reads a kept range into buf (len bytes) and checks its SHA-256. */
static int read_seg(const Seg *g, uint8_t *buf)
{
        _cleanup_close_ int fd = open(g->log, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        HfId id;
        char hex[65];

        if (fd < 0)
                return -errno;
        for (uint64_t got = 0; got < g->len;) {
                ssize_t n = pread(fd, buf + got, (size_t)(g->len - got), (off_t)(g->log_off + got));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? -errno : -EBADMSG;
                got += (uint64_t)n;
        }
        hf_sha256(buf, (size_t)g->len, &id);
        hf_hex_encode(id.b, sizeof(id.b), hex);
        return strcmp(hex, g->sha) == 0 ? 0 : -EBADMSG;
}

/* A regular file at path (after the renames still in effect) that is the inode (dev, ino). */
static char *inode_at(const Ctx *c, const char *path, uint64_t dev, uint64_t ino)
{
        char lbuf[HF_RECOVER_PATH_MAX];
        struct stat st;
        const char *l = path ? live(c, path, lbuf) : NULL;

        if (!l || lstat(l, &st) < 0 || !S_ISREG(st.st_mode) || st.st_ino != ino ||
            (uint64_t)st.st_dev != dev)
                return NULL;
        return strdup(l);
}

/*
 * The pre-image first is the first of a run of ranges (guard.c): collects the ranges kept in
 * the scope from then on, up to the first whole pre-image of the inode (the base, which holds
 * every byte the ranges do not); without one the base is the file as it is now, or its pin.
 * Every range is read and checked against its SHA-256.
 */
static int plan_ranges(Ctx *c, Item *it, const Pre *first)
{
        sqlite3_stmt *s = NULL;
        int r = 0;

        segs_free(it);
        if (sqlite3_prepare_v2(c->db,
                               "SELECT " PRE_COLS " FROM preimages WHERE dev = ?1 AND ino = ?2 AND"
                               " time >= ?3 ORDER BY time, id",
                               -1, &s, NULL) != SQLITE_OK)
                return db_fail(c, "reading the pre-images");
        sqlite3_bind_int64(s, 1, (int64_t)it->dev);
        sqlite3_bind_int64(s, 2, (int64_t)it->ino);
        sqlite3_bind_double(s, 3, first->time);
        while (r == 0 && sqlite3_step(s) == SQLITE_ROW) {
                Pre p;
                if (pre_from_row(s, &p) < 0) {
                        pre_done(&p);
                        r = -ENOMEM;
                        break;
                }
                if (strcmp(p.method, "range") == 0) {
                        /* Ranges kept after the scope are of later changes: left alone. */
                        if (p.time > c->hi && p.id != first->id) {
                                pre_done(&p);
                                continue;
                        }
                        if (p.released || !p.abs || !p.sha[0]) {
                                r = -ENOENT;
                        } else if (hf_reserve((void **)&it->segs, &it->cap_segs, it->n_segs,
                                              sizeof(Seg)) < 0) {
                                r = -ENOMEM;
                        } else {
                                Seg *g = &it->segs[it->n_segs++];
                                *g = (Seg){ .off = p.range_off,
                                            .len = p.range_len,
                                            .log_off = p.log_off,
                                            .log = TAKE_PTR(p.abs) };
                                memcpy(g->sha, p.sha, sizeof(g->sha));
                        }
                } else if ((strcmp(p.method, "reflink") == 0 || strcmp(p.method, "copy") == 0) &&
                           !p.released && p.abs) {
                        char expect[65];
                        r = check_preimage(&p, expect);
                        if (r == 0)
                                it->base = TAKE_PTR(p.abs);
                        pre_done(&p);
                        break;
                }
                pre_done(&p);
        }
        sqlite3_finalize(s);
        if (r == 0 && !it->base)
                it->base = inode_at(c, it->cur, it->dev, it->ino);
        if (r == 0 && !it->base)
                it->base = inode_at(c, it->orig, it->dev, it->ino);
        if (r == 0 && !it->base)
                it->base = find_pin(it->orig, it->dev, it->ino);
        if (r == 0 && (!it->base || it->n_segs == 0))
                r = -ENOENT;
        for (size_t i = 0; r == 0 && i < it->n_segs; i++) {
                _cleanup_free_ uint8_t *buf = malloc(MAX(it->segs[i].len, 1));
                r = buf ? read_seg(&it->segs[i], buf) : -ENOMEM;
        }
        if (r < 0)
                segs_free(it);
        return r;
}

/* Writes the base with the ranges put back (the latest first: the earliest wins) into fd,
 * cut to the size before the run. */
static int put_ranges(const Item *it, int fd)
{
        for (size_t i = it->n_segs; i > 0; i--) {
                const Seg *g = &it->segs[i - 1];
                _cleanup_free_ uint8_t *buf = malloc(MAX(g->len, 1));
                if (!buf)
                        return -ENOMEM;
                int r = read_seg(g, buf);
                if (r < 0)
                        return log_error_errno(r, "%s: a range kept at %s is damaged", it->orig,
                                               g->log);
                r = hf_write_all_at(fd, buf, (size_t)g->len, g->off);
                if (r < 0)
                        return r;
        }
        return ftruncate(fd, it->pre.size) < 0 ? -errno : 0;
}

static int choose(Ctx *c, Item *it)
{
        struct stat st;
        int r;

        /* 1. Content changed: the pre-image from just before the first change. */
        if (it->changed && it->ino) {
                Pre p;
                r = pick_preimage(c, it, &p);
                if (r == 0) {
                        bool ranged = strcmp(p.method, "range") == 0;
                        r = ranged ? plan_ranges(c, it, &p) : check_preimage(&p, it->expect);
                        if (r == 0) {
                                it->pre = p;
                                it->src = SRC_PREIMAGE;
                                it->pre_foreign = (c->o->scope == HF_RECOVER_INCIDENT &&
                                                   !pid_in_scope(c, p.pid)) ||
                                                  (c->o->scope == HF_RECOVER_PROCESS &&
                                                   p.pid != c->o->pid);
                                if (!it->pre_foreign)
                                        return 0;
                                /* Taken for another process: a newer vault snapshot (still
                                 * older than the change) knows more. */
                                const HfNode *n;
                                double vt;
                                char id8[9];
                                if (ensure_vault(c) == 0 &&
                                    hf_vault_src_snapshot(c->vault, id8, &vt) && vt > p.time &&
                                    hf_vault_src_lookup(c->vault, it->orig, &n) == 0 &&
                                    n->type == HF_NODE_FILE && hf_node_copy(n, &it->node) == 0) {
                                        it->has_node = true;
                                        pre_done(&it->pre);
                                        it->src = SRC_VAULT;
                                        it->expect[0] = 0;
                                }
                                return 0;
                        }
                        log_warning_errno(r, "pre-image %lld of %s is %s", (long long)p.id,
                                          it->orig,
                                          r == -EBADMSG ? "damaged (size or hash differs)"
                                                        : "gone from the store");
                        pre_done(&p);
                }
        }
        /* 2. Only renamed: the inode itself still holds the original content. */
        char lbuf[HF_RECOVER_PATH_MAX];
        if (!it->changed && it->cur && it->ino && lstat(live(c, it->cur, lbuf), &st) == 0 &&
            S_ISREG(st.st_mode) && st.st_ino == it->ino && (uint64_t)st.st_dev == it->dev) {
                it->src = SRC_INODE;
                return 0;
        }
        if (!it->changed && !it->cur && it->ino && lstat(live(c, it->orig, lbuf), &st) == 0 &&
            st.st_ino == it->ino && (uint64_t)st.st_dev == it->dev) {
                it->src = SRC_INODE; /* already back where it belongs */
                set_cur(c, it, it->orig);
                return 0;
        }
        /* 3. Deleted but unchanged: a pin keeps the inode, and so its content as of the
         * unlink (or rename-over). */
        if (!it->changed && it->deleted && it->ino) {
                char *pin = find_pin(it->orig, it->dev, it->ino);
                if (pin) {
                        free(it->pin);
                        it->pin = pin;
                        it->src = SRC_PIN;
                        return 0;
                }
        }
        /* 4. The vault. */
        const HfNode *n;
        load_meta(c, it);
        r = ensure_vault(c);
        if (r == 0)
                r = hf_vault_src_lookup(c->vault, it->orig, &n);
        if (r == 0 && n->type == HF_NODE_FILE) {
                r = hf_node_copy(n, &it->node);
                if (r < 0)
                        return r;
                it->has_node = true;
                it->src = SRC_VAULT;
                return 0;
        }
        it->src = SRC_NONE;
        it->why = !c->o->repo ? "no pre-image, and no vault given (-r) to fall back to"
                  : !c->vault ? "no pre-image, and the vault cannot be read"
                  : r == -ENOENT
                          ? "no pre-image, and not in the latest snapshot before the incident"
                          : "no pre-image, and the vault lookup failed";
        return 0;
}

/* ---- writing ---- */

static int step(Ctx *c)
{
        c->steps++;
        if (c->crash_after > 0 && c->steps >= c->crash_after) {
                /* Test hook (HOLDFAST_RECOVER_CRASH_AFTER): die like kill -9 would. */
                (void)raise(SIGKILL);
        }
        return 0;
}

static void dir_of(const char *path, char *out, size_t n)
{
        (void)hf_copy_str(out, n, path);
        char *s = strrchr(out, '/');
        if (s == out)
                out[1] = 0;
        else if (s)
                *s = 0;
}

static void temp_name(const char *path, char *out, size_t n)
{
        HfId h;
        char hex[65], dir[HF_RECOVER_PATH_MAX];

        hf_sha256(path, strlen(path), &h);
        hf_hex_encode(h.b, 32, hex);
        dir_of(path, dir, sizeof(dir));
        (void)snprintf(out, n, "%s/.hf-recover-%.16s.tmp", strcmp(dir, "/") ? dir : "", hex);
}

static int fsync_dir_of(const char *path)
{
        char dir[HF_RECOVER_PATH_MAX];
        dir_of(path, dir, sizeof(dir));
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return fsync(fd) < 0 ? -errno : 0;
}

static int mkdir_parents(const char *path)
{
        char dir[HF_RECOVER_PATH_MAX];
        dir_of(path, dir, sizeof(dir));
        return hf_mkdir_p(dir, 0755);
}

/* One line per renamed folder. */
static void folder_report(Ctx *c, const char *action, const char *path, const char *from,
                          const char *note)
{
        if (c->o->out.json) {
                _cleanup_buf_ HfBuf b = HF_BUF_INIT(1 << 16);
                (void)hf_buf_printf(&b, "{\"message_type\":\"folder\",\"action\":\"%s\"", action);
                out_json_str(&b, "path", path);
                out_json_str(&b, "from", from);
                if (note)
                        out_json_str(&b, "note", note);
                (void)hf_buf_puts(&b, "}\n");
                fwrite(b.data, 1, b.len, stdout);
                return;
        }
        if (c->o->out.quiet && strcmp(action, "failed") != 0)
                return;
        printf("%-9s %s/  from folder %s", action, path, from);
        if (note)
                printf("  (%s)", note);
        printf("\n");
}

/* A copy of path with the renames after move j that are still in effect applied. */
static char *after_move(const Ctx *c, size_t j, const char *path)
{
        char *p = strdup(path);
        for (size_t k = j + 1; p && k < c->n_moves; k++)
                if (c->moves[k].pending && reprefix(&p, c->moves[k].from, c->moves[k].to) < 0) {
                        free(p);
                        p = NULL;
                }
        return p;
}

static bool empty_dir(const char *path)
{
        _cleanup_(closedirp) DIR *d = opendir(path);
        struct dirent *de;

        while (d && (de = readdir(d)))
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                        return false;
        return d != NULL;
}

static bool same_inode(const Move *m, const struct stat *st)
{
        return !m->ino || ((uint64_t)st->st_ino == m->ino && (uint64_t)st->st_dev == m->dev);
}

/*
 * Renames the scope's folders back, latest first, before any file is restored: then every file
 * of the scope is at its pre-incident path again (or will be). A folder whose old name is taken
 * by something else (a non-empty folder, a file) stays where it is and its files are put back
 * there (the rename stays "pending", and live() maps the paths). A dry run changes nothing and
 * leaves every rename pending. Rerun-safe: a folder already at its old name (same inode) is
 * in place.
 */
static int undo_moves(Ctx *c)
{
        for (size_t j = c->n_moves; j > 0; j--) {
                Move *m = &c->moves[j - 1];
                _cleanup_free_ char *cur = after_move(c, j - 1, m->to);
                _cleanup_free_ char *dst = after_move(c, j - 1, m->from);
                struct stat sc, sd;
                bool have_cur, have_dst;

                if (!cur || !dst)
                        return -ENOMEM;
                have_cur = lstat(cur, &sc) == 0 && S_ISDIR(sc.st_mode) && same_inode(m, &sc);
                have_dst = lstat(dst, &sd) == 0;
                m->pending = false;
                if (have_dst && S_ISDIR(sd.st_mode) && same_inode(m, &sd) && (m->ino || !have_cur))
                        folder_report(c, "in-place", dst, cur, "already back");
                else if (!have_cur)
                        folder_report(c, "gone", dst, cur,
                                      "the renamed folder is no longer there; its files are put "
                                      "back under the old name");
                else if (c->o->dry_run) {
                        if (have_dst && !(S_ISDIR(sd.st_mode) && empty_dir(dst)))
                                folder_report(c, "kept", dst, cur,
                                              "its old name is taken by something else; dry run");
                        else
                                folder_report(c, "rename", dst, cur, "dry run");
                        m->pending = true;
                } else {
                        int r = 0;
                        if (renameat2(AT_FDCWD, cur, AT_FDCWD, dst, RENAME_NOREPLACE) < 0) {
                                r = -errno;
                                if (r == -ENOENT && mkdir_parents(dst) == 0)
                                        r = renameat2(AT_FDCWD, cur, AT_FDCWD, dst,
                                                      RENAME_NOREPLACE) < 0
                                                    ? -errno
                                                    : 0;
                                /* A filesystem without RENAME_NOREPLACE: nothing is there. */
                                if (r == -EINVAL && !have_dst)
                                        r = rename(cur, dst) < 0 ? -errno : 0;
                                /* An empty folder took the name: replacing it loses nothing
                                 * (rename(2) refuses a folder that is not empty). */
                                if (r == -EEXIST && have_dst && S_ISDIR(sd.st_mode))
                                        r = rename(cur, dst) < 0 ? -errno : 0;
                        }
                        if (r == -EEXIST || r == -ENOTEMPTY || r == -ENOTDIR || r == -EISDIR) {
                                c->res->kept++;
                                folder_report(c, "kept", dst, cur,
                                              "its old name is taken by something else; its "
                                              "files are put back where the folder is now");
                                m->pending = true;
                        } else if (r < 0) {
                                c->res->failed++;
                                errno = -r;
                                log_error_errno(r, "%s: cannot rename it back to %s: %m", cur, dst);
                                folder_report(c, "failed", dst, cur, strerror(-r));
                                m->pending = true;
                        } else {
                                step(c);
                                (void)fsync_dir_of(dst);
                                (void)fsync_dir_of(cur);
                                c->res->folders++;
                                folder_report(c, "renamed", dst, cur, NULL);
                        }
                }
                if (m->pending) {
                        c->n_pending++;
                        continue;
                }
                /* Undone: later renames still in effect are now relative to the old name. */
                for (size_t k = j; k < c->n_moves; k++) {
                        Move *p = &c->moves[k];
                        if (p->pending && (reprefix(&p->from, m->to, m->from) < 0 ||
                                           reprefix(&p->to, m->to, m->from) < 0))
                                return -ENOMEM;
                }
        }
        return 0;
}

/* Copies xattrs from the inode at from (when it is still the original inode). */
static void copy_xattrs(int from_fd, int to_fd)
{
        char names[8192], val[65536];
        ssize_t n = flistxattr(from_fd, names, sizeof(names));

        for (ssize_t i = 0; n > 0 && i < n; i += (ssize_t)strlen(names + i) + 1) {
                ssize_t l = fgetxattr(from_fd, names + i, val, sizeof(val));
                if (l >= 0)
                        (void)fsetxattr(to_fd, names + i, val, (size_t)l, 0);
        }
}

static int clone_or_copy(int in, int out)
{
        struct stat st;
        uint64_t copied = 0;
        int r;

        if (ioctl(out, FICLONE, in) == 0)
                return 0;
        if (fstat(in, &st) < 0)
                return -errno;
        r = hf_copy_span(in, 0, (uint64_t)st.st_size, out, 0, &copied);
        if (r < 0)
                return r;
        return ftruncate(out, (off_t)copied) < 0 ? -errno : 0;
}

/* Metadata of the original onto the new file. */
static void apply_meta(const Item *it, int fd, int orig_fd)
{
        uint32_t mode = 0, uid = 0, gid = 0;
        struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_nsec = UTIME_OMIT } };
        bool have = false;

        if (it->src == SRC_PREIMAGE && it->pre.mode) {
                mode = it->pre.mode;
                uid = it->pre.uid;
                gid = it->pre.gid;
                ts[1] = (struct timespec){ .tv_sec = it->pre.mtime_ns / 1000000000,
                                           .tv_nsec = it->pre.mtime_ns % 1000000000 };
                have = true;
        } else if (it->src == SRC_VAULT && it->has_node) {
                mode = hf_mode_from_go(it->node.mode);
                uid = it->node.uid;
                gid = it->node.gid;
                ts[0] = (struct timespec){ .tv_sec = it->node.atime.sec,
                                           .tv_nsec = it->node.atime.nsec };
                ts[1] = (struct timespec){ .tv_sec = it->node.mtime.sec,
                                           .tv_nsec = it->node.mtime.nsec };
                have = true;
                for (size_t i = 0; i < it->node.n_xattrs; i++)
                        (void)fsetxattr(fd, it->node.xattrs[i].name, it->node.xattrs[i].value,
                                        it->node.xattrs[i].len, 0);
        } else if (orig_fd >= 0) {
                struct stat st;
                if (fstat(orig_fd, &st) == 0) {
                        mode = st.st_mode;
                        uid = st.st_uid;
                        gid = st.st_gid;
                        ts[1] = st.st_mtim;
                        have = true;
                }
        }
        if (orig_fd >= 0 && it->src != SRC_VAULT)
                copy_xattrs(orig_fd, fd);
        if (!have)
                return;
        if (geteuid() == 0 && fchown(fd, uid, gid) < 0)
                log_debug_errno(errno, "%s: cannot set the owner: %m", it->orig);
        (void)fchmod(fd, mode & 07777);
        (void)futimens(fd, ts);
}

/* Writes the item's content to tmp (created fresh). Returns the content hash. */
static int write_temp(Ctx *c, Item *it, const char *tmp, int orig_fd, char sha[65],
                      uint64_t *ret_size)
{
        _cleanup_close_ int fd = -1, in = -1;
        char back[65];
        uint64_t size = 0, size2 = 0;
        int r;

        (void)unlink(tmp);
        fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        step(c);
        switch (it->src) {
        case SRC_PREIMAGE:
        case SRC_PIN:
                in = open(it->src == SRC_PIN ? it->pin
                          : it->base         ? it->base
                                             : it->pre.abs,
                          O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                if (in < 0)
                        return -errno;
                r = clone_or_copy(in, fd);
                if (r < 0)
                        return r;
                if (it->src == SRC_PREIMAGE && it->base) {
                        /* The content is made here: its hash is of what was made. */
                        r = put_ranges(it, fd);
                        if (r == 0)
                                r = hf_recover_sha_fd(fd, it->expect, NULL);
                        if (r < 0)
                                return r;
                } else if (!it->expect[0]) {
                        r = hf_recover_sha_fd(in, it->expect, NULL);
                        if (r < 0)
                                return r;
                }
                break;
        case SRC_VAULT:
                r = hf_vault_src_write(c->vault, &it->node, fd, it->expect, &size);
                if (r < 0)
                        return r;
                break;
        default:
                return -EINVAL;
        }
        /* A pin is the original inode itself: its owner, mode, times and xattrs are the
         * original's. */
        apply_meta(it, fd, it->src == SRC_PIN ? in : orig_fd);
        /* Verify: what landed on disk hashes to what the source gave. */
        r = hf_recover_sha_fd(fd, back, &size2);
        if (r < 0)
                return r;
        if (strcmp(back, it->expect) != 0)
                return log_error_errno(EBADMSG,
                                       "%s: the restored copy hashes to %.16s, its "
                                       "source to %.16s",
                                       it->orig, back, it->expect);
        memcpy(sha, back, 65);
        *ret_size = size2;
        (void)size;
        return 0;
}

/* Owner, mode and mtime of the source onto a file whose content is already right. */
static void fix_meta(const Item *it, const char *path, const struct stat *st)
{
        uint32_t mode, uid, gid;
        struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_nsec = UTIME_OMIT } };

        if (it->src == SRC_PREIMAGE && it->pre.mode) {
                mode = it->pre.mode;
                uid = it->pre.uid;
                gid = it->pre.gid;
                ts[1] = (struct timespec){ .tv_sec = it->pre.mtime_ns / 1000000000,
                                           .tv_nsec = it->pre.mtime_ns % 1000000000 };
        } else if (it->src == SRC_VAULT && it->has_node) {
                mode = hf_mode_from_go(it->node.mode);
                uid = it->node.uid;
                gid = it->node.gid;
                ts[1] = (struct timespec){ .tv_sec = it->node.mtime.sec,
                                           .tv_nsec = it->node.mtime.nsec };
        } else
                return;
        if ((st->st_uid != uid || st->st_gid != gid) && geteuid() == 0)
                (void)!lchown(path, uid, gid);
        if ((st->st_mode & 07777) != (mode & 07777))
                (void)chmod(path, mode & 07777);
        if (st->st_mtim.tv_sec != ts[1].tv_sec || st->st_mtim.tv_nsec != ts[1].tv_nsec)
                (void)utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW);
}

static int journal_append(Ctx *c, HfJournalVerb v, const char *sha, const char *path)
{
        if (c->o->dry_run)
                return 0;
        return hf_journal_format(&c->jbuf, v, sha, path);
}

static int journal_flush(Ctx *c)
{
        int r;
        if (c->o->dry_run || c->journal_fd < 0 || c->jbuf.len == 0)
                return 0;
        r = hf_write_all(c->journal_fd, c->jbuf.data, c->jbuf.len);
        if (r < 0)
                return log_error_errno(r, "%s: cannot write the journal: %m", c->journal_path);
        hf_buf_reset(&c->jbuf);
        step(c);
        return fdatasync(c->journal_fd) < 0 ? -errno : 0;
}

/* Pending renames of one batch: temps synced first, then renamed, then journalled. */
typedef struct Pending {
        char *tmp;  /* NULL: a plain rename of from */
        char *from; /* SRC_INODE: the renamed original */
        char *to;
        char sha[65];
        size_t item;
        uint64_t bytes;
        bool alt;
} Pending;

typedef struct Batch {
        Pending v[BATCH];
        size_t n;
} Batch;

static void sync_fs_of(const char *path)
{
        char dir[HF_RECOVER_PATH_MAX];
        dir_of(path, dir, sizeof(dir));
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0)
                (void)syncfs(fd);
}

static int flush_batch(Ctx *c, Batch *b)
{
        uint64_t devs[BATCH];
        size_t n_devs = 0;

        if (b->n == 0)
                return 0;
        /* One syncfs per filesystem makes every temp durable before any rename. */
        for (size_t i = 0; i < b->n; i++) {
                struct stat st;
                const char *p = b->v[i].tmp ? b->v[i].tmp : b->v[i].from;
                if (!p || lstat(p, &st) < 0)
                        continue;
                bool seen = false;
                for (size_t k = 0; k < n_devs; k++)
                        seen |= devs[k] == (uint64_t)st.st_dev;
                if (!seen) {
                        devs[n_devs++] = (uint64_t)st.st_dev;
                        sync_fs_of(p);
                }
        }
        for (size_t i = 0; i < b->n; i++) {
                Pending *p = &b->v[i];
                Item *it = &c->items[p->item];
                const char *from = p->tmp ? p->tmp : p->from;
                if (rename(from, p->to) < 0) {
                        int e = errno;
                        c->res->failed++;
                        log_error_errno(e, "%s: cannot put it in place: %m", p->to);
                        if (p->tmp)
                                (void)unlink(p->tmp);
                        continue;
                }
                step(c);
                if (p->alt)
                        report(c, "saved", p->to, it, p->sha, true, p->bytes,
                               "the original is kept; this is the pre-incident version", NULL);
                else {
                        const char *note = NULL;
                        if (it->src == SRC_PREIMAGE && it->pre_foreign)
                                note = "pre-image taken for another process: changes made "
                                       "after it and before the incident are not in it";
                        report(c, it->src == SRC_INODE ? "renamed" : "restored", p->to, it, p->sha,
                               true, p->bytes, note, NULL);
                        switch (it->src) {
                        case SRC_PREIMAGE:
                                c->res->from_preimage++;
                                break;
                        case SRC_PIN:
                                c->res->from_pin++;
                                break;
                        case SRC_INODE:
                                c->res->renamed_back++;
                                break;
                        case SRC_VAULT:
                                c->res->from_vault++;
                                break;
                        default:
                                break;
                        }
                        c->res->bytes += it->src == SRC_INODE ? 0 : p->bytes;
                }
                (void)journal_append(c, HF_JOURNAL_DONE, p->sha, p->to);
        }
        for (size_t k = 0; k < n_devs; k++)
                for (size_t i = 0; i < b->n; i++) {
                        struct stat st;
                        if (lstat(b->v[i].to, &st) == 0 && (uint64_t)st.st_dev == devs[k]) {
                                sync_fs_of(b->v[i].to);
                                break;
                        }
                }
        int r = journal_flush(c);
        for (size_t i = 0; i < b->n; i++) {
                free(b->v[i].tmp);
                free(b->v[i].from);
                free(b->v[i].to);
        }
        b->n = 0;
        return r;
}

static int queue(Ctx *c, Batch *b, size_t item, char *tmp, char *from, const char *to,
                 const char *sha, uint64_t bytes, bool alt)
{
        Pending *p = &b->v[b->n++];
        *p = (Pending){
                .tmp = tmp, .from = from, .to = strdup(to), .item = item, .bytes = bytes, .alt = alt
        };
        memcpy(p->sha, sha, 65);
        if (!p->to)
                return -ENOMEM;
        return b->n == BATCH ? flush_batch(c, b) : 0;
}

/* Someone other than the incident changed this file after containment? */
static bool changed_later(Ctx *c, const Item *it, const char *path, const struct stat *st,
                          const char *cur_sha)
{
        const HfJournalEntry *je = hf_journal_find(&c->journal, path);

        if (c->o->force || c->o->scope == HF_RECOVER_BEFORE)
                return false;
        if (je && je->verb == HF_JOURNAL_DONE)
                return strcmp(je->sha256, cur_sha) != 0; /* after our own restore */
        /* Still exactly what the attacker left: its own. */
        if (it->hash_after[0] && (uint64_t)st->st_ino == it->ino &&
            strcmp(it->hash_after, cur_sha) == 0)
                return false;
        /* A write already past its permission check when the group was stopped lands a moment
         * after containment; later than the grace, another process wrote. */
        double ct = ts_sec(st->st_ctim);
        return ct > c->end + GRACE;
}

static int restore_item(Ctx *c, Batch *b, size_t idx)
{
        Item *it = &c->items[idx];
        char pbuf[HF_RECOVER_PATH_MAX], cbuf[HF_RECOVER_PATH_MAX];
        /* Where it belongs and where it is now (a folder that could not be renamed back keeps
         * its files under its new name). */
        const char *path = live(c, it->orig, pbuf), *cur = live(c, it->cur, cbuf);
        char tmp[HF_RECOVER_PATH_MAX + 64], cur_sha[65] = "", sha[65];
        struct stat st;
        bool exists = lstat(path, &st) == 0;
        _cleanup_close_ int orig_fd = -1;
        uint64_t size = 0;
        int r;

        if (it->src == SRC_NONE) {
                if (it->maybe)
                        return 0; /* nothing was there before */
                if (exists && S_ISREG(st.st_mode) && !it->changed && !it->deleted) {
                        report(c, "kept", path, it, NULL, false, 0, "nothing to do", NULL);
                        return 0;
                }
                c->res->lost++;
                if (it->size_before > 0)
                        c->res->lost_bytes += (uint64_t)it->size_before;
                report(c, "lost", path, it, NULL, false,
                       it->size_before > 0 ? (uint64_t)it->size_before : 0, it->why, NULL);
                return 0;
        }
        if (it->maybe)
                c->res->files++;

        /* Renamed only: move the inode back. */
        if (it->src == SRC_INODE) {
                if (cur && strcmp(cur, path) == 0) {
                        (void)sha_path(path, sha, &size);
                        c->res->already++;
                        report(c, "in-place", path, it, sha, true, size, "already in place", NULL);
                        return 0;
                }
                if (exists && !(st.st_ino == it->ino && (uint64_t)st.st_dev == it->dev)) {
                        Junk *j = junk_find(c, it->orig);
                        double ct = ts_sec(st.st_ctim);
                        if (!j && !c->o->force && ct > c->end + GRACE) {
                                c->res->kept++;
                                report(c, "kept", path, it, NULL, false, 0,
                                       "a newer file took its place after the incident; the "
                                       "original stays at its new name",
                                       NULL);
                                return 0;
                        }
                }
                r = sha_path(cur, sha, &size);
                if (r < 0)
                        return log_error_errno(r, "%s: %m", cur);
                if (c->o->dry_run) {
                        report(c, "rename", path, it, sha, false, size, "dry run", NULL);
                        return 0;
                }
                r = mkdir_parents(path);
                if (r < 0)
                        return log_error_errno(r, "%s: cannot create its folder: %m", path);
                Junk *j = junk_find(c, it->orig);
                if (j)
                        j->dead = true; /* replaced by the original */
                char *from = strdup(cur);
                if (!from)
                        return -ENOMEM;
                return queue(c, b, idx, NULL, from, path, sha, size, false);
        }

        /* Content from a pre-image, a pin or the vault. */
        if (exists && S_ISREG(st.st_mode)) {
                orig_fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
                if (orig_fd >= 0)
                        (void)hf_recover_sha_fd(orig_fd, cur_sha, NULL);
                const HfJournalEntry *je = hf_journal_find(&c->journal, path);
                if ((it->expect[0] && strcmp(cur_sha, it->expect) == 0) ||
                    (je && je->verb == HF_JOURNAL_DONE && strcmp(je->sha256, cur_sha) == 0)) {
                        /* The content survived (a write stopped in time); the metadata may
                         * not have. */
                        if (!c->o->dry_run && orig_fd >= 0)
                                fix_meta(it, path, &st);
                        c->res->already++;
                        report(c, "in-place", path, it, cur_sha, true, (uint64_t)st.st_size,
                               "already in place", NULL);
                        return 0;
                }
        }
        bool alt = false;
        if (exists && S_ISREG(st.st_mode) && !junk_find(c, it->orig) &&
            ((uint64_t)st.st_ino == it->ino ? changed_later(c, it, path, &st, cur_sha)
                                            : (!c->o->force && c->o->scope != HF_RECOVER_BEFORE &&
                                               (ts_sec(st.st_ctim) > c->end + GRACE)))) {
                /* Another process changed it (or put a new file there) after the incident:
                 * leave it, and save the pre-incident version beside it. */
                c->res->kept++;
                report(c, "kept", path, it, cur_sha, false, (uint64_t)st.st_size,
                       "changed after the incident by another process (--force overwrites)", NULL);
                alt = true;
        }
        if (exists && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) {
                c->res->failed++;
                report(c, "failed", path, it, NULL, false, 0,
                       "something that is not a file is in its place", NULL);
                return 0;
        }
        char target[HF_RECOVER_PATH_MAX + 64];
        (void)snprintf(target, sizeof(target), "%s%s", path, alt ? ".holdfast-recovered" : "");
        if (c->o->dry_run) {
                report(c, alt ? "save" : "restore", target, it, it->expect[0] ? it->expect : NULL,
                       false, 0, "dry run", NULL);
                return 0;
        }
        r = mkdir_parents(target);
        if (r < 0)
                return log_error_errno(r, "%s: cannot create its folder: %m", target);
        temp_name(target, tmp, sizeof(tmp));
        r = write_temp(c, it, tmp, orig_fd >= 0 && (uint64_t)st.st_ino == it->ino ? orig_fd : -1,
                       sha, &size);
        if (r < 0) {
                (void)unlink(tmp);
                c->res->failed++;
                log_error_errno(r, "%s: cannot restore it: %m", path);
                report(c, "failed", path, it, NULL, false, 0, strerror(-r), NULL);
                return 0;
        }
        if (exists && !alt && cur_sha[0] && strcmp(cur_sha, sha) == 0) {
                /* Same content already (a vault source, known only now). */
                (void)unlink(tmp);
                c->res->already++;
                report(c, "in-place", path, it, sha, true, size, "already in place", NULL);
                return 0;
        }
        if (alt) {
                struct stat ast;
                char asha[65];
                if (lstat(target, &ast) == 0 && sha_path(target, asha, NULL) == 0 &&
                    strcmp(asha, sha) == 0) {
                        (void)unlink(tmp);
                        return 0;
                }
        }
        if (it->src == SRC_VAULT && !alt) {
                /* What the vault cannot prove about the pre-attack content. */
                /* Unchanged since the snapshot when the size and mtime recorded just before the
                 * first change equal the snapshot's. */
                bool proven = (it->meta_sha[0] && strcmp(it->meta_sha, sha) == 0) ||
                              (it->meta_known && it->has_node &&
                               (int64_t)it->node.size == it->meta_size &&
                               it->node.mtime.sec * 1000000000LL + it->node.mtime.nsec ==
                                       it->meta_mtime_ns);
                if (!proven) {
                        _cleanup_buf_ HfBuf ranges = HF_BUF_INIT(1 << 16);
                        uint64_t unproven = 0;
                        if (orig_fd >= 0 && (uint64_t)st.st_ino == it->ino) {
                                /* Bytes equal in the damaged file and the snapshot are
                                 * certain; the others are as of the snapshot. */
                                _cleanup_close_ int tfd = open(tmp, O_RDONLY | O_CLOEXEC);
                                uint8_t x[4096], y[4096];
                                uint64_t off = 0, start = 0;
                                bool in = false;
                                for (; tfd >= 0; off += sizeof(x)) {
                                        ssize_t a = pread(tfd, x, sizeof(x), (off_t)off);
                                        ssize_t bb = pread(orig_fd, y, sizeof(y), (off_t)off);
                                        if (a <= 0)
                                                break;
                                        bool diff = bb != a || memcmp(x, y, (size_t)a) != 0;
                                        if (diff && !in) {
                                                start = off;
                                                in = true;
                                        } else if (!diff && in) {
                                                (void)hf_buf_printf(&ranges, "%s[%llu,%llu]",
                                                                    ranges.len ? "," : "",
                                                                    (unsigned long long)start,
                                                                    (unsigned long long)off);
                                                unproven += off - start;
                                                in = false;
                                        }
                                }
                                if (in) {
                                        (void)hf_buf_printf(&ranges, "%s[%llu,%llu]",
                                                            ranges.len ? "," : "",
                                                            (unsigned long long)start,
                                                            (unsigned long long)size);
                                        unproven += size - start;
                                }
                        } else if (size > 0) {
                                (void)hf_buf_printf(&ranges, "[0,%llu]", (unsigned long long)size);
                                unproven = size;
                        }
                        if (unproven) {
                                c->res->unproven++;
                                c->res->unproven_bytes += unproven;
                                (void)hf_buf_putc(&ranges, 0);
                                char id8[9] = "?";
                                double vt = 0;
                                char t[32];
                                (void)hf_vault_src_snapshot(c->vault, id8, &vt);
                                fmt_time(vt, t, sizeof(t));
                                char note[160];
                                (void)snprintf(note, sizeof(note),
                                               "no pre-image: content as of the snapshot (%s); "
                                               "changes made after it are not known",
                                               t);
                                if (!c->o->out.json && !c->o->out.quiet)
                                        printf("          %s: %llu byte(s) as of snapshot %s, "
                                               "not provably the pre-attack bytes: %s\n",
                                               path, (unsigned long long)unproven, id8,
                                               (const char *)ranges.data);
                                else if (c->o->out.json) {
                                        _cleanup_buf_ HfBuf jb = HF_BUF_INIT(1 << 20);
                                        (void)hf_buf_puts(&jb, "{\"message_type\":\"unproven\"");
                                        out_json_str(&jb, "path", path);
                                        (void)hf_buf_printf(&jb, ",\"bytes\":%llu,\"ranges\":[%s]",
                                                            (unsigned long long)unproven,
                                                            (const char *)ranges.data);
                                        out_json_str(&jb, "note", note);
                                        (void)hf_buf_puts(&jb, "}\n");
                                        fwrite(jb.data, 1, jb.len, stdout);
                                }
                        }
                }
        }
        if (it->src == SRC_PREIMAGE && it->pre_foreign && !alt) {
                /* Taken for another process: what that process (or others) wrote between the
                 * capture and the incident's first change is not in it. */
                c->res->unproven++;
                c->res->unproven_bytes += size;
                if (c->o->out.json) {
                        _cleanup_buf_ HfBuf jb = HF_BUF_INIT(1 << 16);
                        (void)hf_buf_puts(&jb, "{\"message_type\":\"unproven\"");
                        out_json_str(&jb, "path", path);
                        (void)hf_buf_printf(&jb, ",\"bytes\":%llu,\"ranges\":[[0,%llu]]",
                                            (unsigned long long)size, (unsigned long long)size);
                        out_json_str(&jb, "note",
                                     "the pre-image was taken for another process "
                                     "before the incident");
                        (void)hf_buf_puts(&jb, "}\n");
                        fwrite(jb.data, 1, jb.len, stdout);
                }
        }
        char *t = strdup(tmp);
        if (!t)
                return -ENOMEM;
        return queue(c, b, idx, t, NULL, target, sha, size, alt);
}

static bool original_at(Ctx *c, const char *path);

static void relocate(Ctx *c)
{
        for (size_t i = 0; i < c->n_items; i++) {
                Item *it = &c->items[i];
                struct stat st;
                char lbuf[HF_RECOVER_PATH_MAX];
                if (!it->ino || !it->cur)
                        continue;
                if (lstat(live(c, it->cur, lbuf), &st) == 0 && st.st_ino == it->ino &&
                    (uint64_t)st.st_dev == it->dev)
                        continue;
                char *moved = locate_in_dir(c, it->cur, it->dev, it->ino);
                if (!moved && strcmp(it->cur, it->orig) != 0)
                        moved = locate_in_dir(c, it->orig, it->dev, it->ino);
                set_cur(c, it, moved);
                if (moved)
                        it->renamed = true;
                else
                        it->deleted = true;
                free(moved);
        }
}

/* Shannon entropy of the first 64 KiB above 7.5 bits per byte (ciphertext, random junk). Only
 * byte counts: nothing of the attacker's file is parsed. */
static bool looks_random(const char *path)
{
        uint8_t buf[65536];
        uint64_t cnt[256] = { 0 };
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        ssize_t n = fd < 0 ? -1 : pread(fd, buf, sizeof(buf), 0);
        double h = 0;

        if (n < 512)
                return false;
        for (ssize_t i = 0; i < n; i++)
                cnt[buf[i]]++;
        for (int i = 0; i < 256; i++)
                if (cnt[i]) {
                        double q = (double)cnt[i] / (double)n;
                        h -= q * log2(q);
                }
        return h > 7.5;
}

/*
 * Ransom notes the event list missed: a file with the very name of a file the scope created,
 * in another folder the scope touched, created within the incident's window, and not in the
 * snapshot before it.
 */
static int note_copies(Ctx *c)
{
        size_t n_junk = c->n_junk;
        char **dirs = NULL;
        size_t n_dirs = 0;
        char lbuf[HF_RECOVER_PATH_MAX];

        for (size_t i = 0; i < c->n_items; i++) {
                char d[HF_RECOVER_PATH_MAX];
                dir_of(c->items[i].orig, d, sizeof(d));
                bool seen = false;
                for (size_t k = 0; k < n_dirs && !seen; k++)
                        seen = strcmp(dirs[k], d) == 0;
                if (!seen && n_dirs < 4096)
                        (void)hf_strv_push(&dirs, &n_dirs, d);
        }
        for (size_t j = 0; j < n_junk; j++) {
                const char *base = strrchr(c->junk[j].path, '/');
                if (!base)
                        continue;
                base++;
                bool dup = false;
                for (size_t k = 0; k < j && !dup; k++) {
                        const char *b2 = strrchr(c->junk[k].path, '/');
                        dup = b2 && strcmp(b2 + 1, base) == 0;
                }
                if (dup)
                        continue;
                for (size_t k = 0; k < n_dirs; k++) {
                        char p[2 * HF_RECOVER_PATH_MAX];
                        struct stat st;
                        const HfNode *n;
                        (void)snprintf(p, sizeof(p), "%s/%s", strcmp(dirs[k], "/") ? dirs[k] : "",
                                       base);
                        if (junk_find(c, p) || original_at(c, p) ||
                            lstat(live(c, p, lbuf), &st) < 0 || !S_ISREG(st.st_mode))
                                continue;
                        double ct = ts_sec(st.st_ctim);
                        if (ct < c->lo || ct > c->end + GRACE)
                                continue;
                        if (ensure_vault(c) == 0 && hf_vault_src_lookup(c->vault, p, &n) == 0)
                                continue;
                        (void)junk_add(c, p, (uint64_t)st.st_ino, ct);
                }
        }
        /* The suffixes the scope gave its own copies (NAME.SUFFIX beside an original NAME). */
        char **sfx = NULL;
        size_t n_sfx = 0;
        for (size_t j = 0; j < n_junk; j++) {
                const char *jp = c->junk[j].path;
                for (size_t i = 0; i < c->n_items; i++) {
                        const char *o = c->items[i].orig;
                        size_t lo = strlen(o);
                        if (strncmp(jp, o, lo) == 0 && jp[lo] == '.' && jp[lo + 1] &&
                            !strchr(jp + lo + 1, '/')) {
                                bool have = false;
                                for (size_t q = 0; q < n_sfx && !have; q++)
                                        have = strcmp(sfx[q], jp + lo + 1) == 0;
                                if (!have)
                                        (void)hf_strv_push(&sfx, &n_sfx, jp + lo + 1);
                                break;
                        }
                }
        }
        /* Copies the event list missed: NAME.SUFFIX beside NAME, created in the window, not in
         * the snapshot, and random-looking or with a suffix the scope used (a copy cut short
         * by the kill may be empty). */
        for (size_t k = 0; k < n_dirs; k++) {
                _cleanup_(closedirp) DIR *d = opendir(live(c, dirs[k], lbuf));
                char **names = NULL;
                size_t n_names = 0;
                struct dirent *de;
                while (d && (de = readdir(d)))
                        if (de->d_name[0] != '.' || (de->d_name[1] && de->d_name[1] != '.'))
                                (void)hf_strv_push(&names, &n_names, de->d_name);
                for (size_t i = 0; i < n_names; i++) {
                        char p[2 * HF_RECOVER_PATH_MAX];
                        struct stat st;
                        const HfNode *n;
                        size_t li = strlen(names[i]);
                        bool copy = false, known = false;
                        /* NAME.SUFFIX with a suffix the scope used, NAME gone but in the
                         * snapshot: the scope destroyed NAME (its delete went unrecorded). */
                        for (size_t q = 0; q < n_sfx && !copy; q++) {
                                size_t ls = strlen(sfx[q]);
                                if (li <= ls + 1 || names[i][li - ls - 1] != '.' ||
                                    strcmp(names[i] + li - ls, sfx[q]) != 0)
                                        continue;
                                char orig[2 * HF_RECOVER_PATH_MAX], cp[2 * HF_RECOVER_PATH_MAX];
                                struct stat so, sc;
                                const HfNode *vn;
                                (void)snprintf(orig, sizeof(orig), "%s/%.*s",
                                               strcmp(dirs[k], "/") ? dirs[k] : "",
                                               (int)(li - ls - 1), names[i]);
                                (void)snprintf(cp, sizeof(cp), "%s/%s",
                                               strcmp(dirs[k], "/") ? dirs[k] : "", names[i]);
                                if (lstat(live(c, orig, lbuf), &so) == 0 || item_by_orig(c, orig) ||
                                    junk_find(c, cp) || lstat(live(c, cp, lbuf), &sc) < 0 ||
                                    !S_ISREG(sc.st_mode))
                                        continue;
                                double ct = ts_sec(sc.st_ctim);
                                if (ct < c->lo || ct > c->end + GRACE)
                                        continue;
                                if (ensure_vault(c) < 0 ||
                                    hf_vault_src_lookup(c->vault, orig, &vn) < 0 ||
                                    vn->type != HF_NODE_FILE ||
                                    hf_vault_src_lookup(c->vault, cp, &vn) == 0)
                                        continue;
                                Item *it = item_new(c, 0, 0, orig, ct);
                                if (!it) {
                                        hf_strv_free(names, n_names);
                                        hf_strv_free(sfx, n_sfx);
                                        hf_strv_free(dirs, n_dirs);
                                        return -ENOMEM;
                                }
                                it->deleted = true;
                                set_cur(c, it, NULL);
                                (void)junk_add(c, cp, (uint64_t)sc.st_ino, ct);
                                copy = true;
                        }
                        if (copy)
                                continue;
                        for (size_t j = 0; j < n_names && !copy; j++) {
                                size_t lj = strlen(names[j]);
                                copy = j != i && lj + 1 < li &&
                                       strncmp(names[i], names[j], lj) == 0 &&
                                       names[i][lj] == '.' && !strchr(names[i] + lj + 1, '/');
                                for (size_t q = 0; copy && q < n_sfx && !known; q++)
                                        known = strcmp(names[i] + lj + 1, sfx[q]) == 0;
                        }
                        if (!copy)
                                continue;
                        (void)snprintf(p, sizeof(p), "%s/%s", strcmp(dirs[k], "/") ? dirs[k] : "",
                                       names[i]);
                        if (junk_find(c, p) || original_at(c, p) ||
                            lstat(live(c, p, lbuf), &st) < 0 || !S_ISREG(st.st_mode))
                                continue;
                        double ct = ts_sec(st.st_ctim);
                        if (ct < c->lo || ct > c->end + GRACE ||
                            !(known || looks_random(live(c, p, lbuf))))
                                continue;
                        if (ensure_vault(c) == 0 && hf_vault_src_lookup(c->vault, p, &n) == 0)
                                continue;
                        (void)junk_add(c, p, (uint64_t)st.st_ino, ct);
                }
                hf_strv_free(names, n_names);
        }
        hf_strv_free(sfx, n_sfx);
        hf_strv_free(dirs, n_dirs);
        return 0;
}

/* Does an original (with a source) belong at path? */
static bool original_at(Ctx *c, const char *path)
{
        for (size_t i = 0; i < c->n_items; i++) {
                const Item *it = &c->items[i];
                if (strcmp(it->orig, path) == 0 && !(it->maybe && it->src == SRC_NONE))
                        return true;
        }
        return false;
}

/* ---- folders made and removed ---- */

/* Was the folder at dirs[i]'s path only made (made) or only removed (!made) by the scope? A
 * folder removed and made again (or the other way round) is as it was. */
static bool dir_net(const Ctx *c, size_t i, bool made)
{
        for (size_t k = 0; k < c->n_dirs; k++)
                if (strcmp(c->dirs[k].path, c->dirs[i].path) == 0 && c->dirs[k].made != made)
                        return false;
        /* The first entry of the path speaks for all. */
        for (size_t k = 0; k < i; k++)
                if (strcmp(c->dirs[k].path, c->dirs[i].path) == 0)
                        return false;
        return c->dirs[i].made == made;
}

static int by_depth(const void *a, const void *b)
{
        size_t la = strlen(((const Dir *)a)->path), lb = strlen(((const Dir *)b)->path);
        return la < lb ? -1 : la > lb;
}

/*
 * Makes again the folders the scope removed, shallowest first, before any file is put back:
 * owner and mode from the vault's snapshot when it has the folder, else root's 0755 (as the
 * parents of a restored file get). A folder of the pre-incident name already there is left.
 */
static void make_dirs(Ctx *c)
{
        if (c->n_dirs > 1)
                qsort(c->dirs, c->n_dirs, sizeof(Dir), by_depth);
        for (size_t i = 0; i < c->n_dirs; i++) {
                struct stat st;
                const HfNode *n = NULL;
                const Dir *d = &c->dirs[i];
                if (!dir_net(c, i, false) || lstat(d->path, &st) == 0)
                        continue;
                if (ensure_vault(c) == 0 && hf_vault_src_lookup(c->vault, d->path, &n) == 0 &&
                    n->type != HF_NODE_DIR)
                        n = NULL;
                if (c->o->dry_run) {
                        report(c, "mkdir", d->path, NULL, NULL, false, 0,
                               "folder removed by the attacker; dry run", NULL);
                        continue;
                }
                if (mkdir_parents(d->path) < 0 ||
                    (mkdir(d->path, n ? (n->mode & 07777) : 0755) < 0 && errno != EEXIST)) {
                        c->res->failed++;
                        log_error_errno(errno, "%s: cannot make the folder again: %m", d->path);
                        continue;
                }
                if (n) {
                        /* Both are tried: a failed chown must not leave the mode unset too. */
                        int e = lchown(d->path, n->uid, n->gid) < 0 ? errno : 0;
                        if (chmod(d->path, n->mode & 07777) < 0)
                                e = errno;
                        if (e)
                                log_warning_errno(e,
                                                  "%s: folder made again, but its owner or "
                                                  "mode could not be set: %m",
                                                  d->path);
                }
                step(c);
                c->res->folders_made++;
                report(c, "mkdir", d->path, NULL, NULL, false, 0,
                       n ? "folder removed by the attacker; owner and mode from the vault"
                         : "folder removed by the attacker",
                       NULL);
                (void)fsync_dir_of(d->path);
        }
}

/* Removes the folders the scope made, deepest first, once the attacker's files are gone: only
 * empty ones (rmdir); one with anything left in it is kept and said. */
static void remove_dirs(Ctx *c)
{
        if (c->o->scope == HF_RECOVER_BEFORE)
                return; /* as its files: new since the time, left in place */
        for (size_t i = c->n_dirs; i > 0; i--) {
                struct stat st;
                char lbuf[HF_RECOVER_PATH_MAX];
                const Dir *d = &c->dirs[i - 1];
                const char *path = live(c, d->path, lbuf);
                if (!dir_net(c, i - 1, true) || lstat(path, &st) < 0 || !S_ISDIR(st.st_mode))
                        continue;
                if (c->o->dry_run) {
                        report(c, "remove", path, NULL, NULL, false, 0,
                               "folder made by the attacker; dry run", NULL);
                        continue;
                }
                if (rmdir(path) < 0) {
                        c->res->kept++;
                        report(c, "kept", path, NULL, NULL, false, 0,
                               "folder made by the attacker, not empty", NULL);
                        continue;
                }
                step(c);
                c->res->folders_removed++;
                report(c, "removed", path, NULL, NULL, false, 0, "folder made by the attacker",
                       NULL);
                (void)fsync_dir_of(path);
        }
}

static int remove_junk(Ctx *c)
{
        for (size_t i = 0; i < c->n_junk; i++) {
                Junk *j = &c->junk[i];
                struct stat st;
                char lbuf[HF_RECOVER_PATH_MAX];
                if (j->dead)
                        continue;
                if (original_at(c, j->path)) {
                        /* An original lives at this name again. */
                        continue;
                }
                const char *path = live(c, j->path, lbuf);
                if (lstat(path, &st) < 0) {
                        if (errno == ENOENT && hf_journal_find(&c->journal, path))
                                c->res->removed++; /* done by an earlier run */
                        continue;
                }
                if (!S_ISREG(st.st_mode))
                        continue;
                if (j->ino && (uint64_t)st.st_ino != j->ino) {
                        report(c, "kept", path, NULL, NULL, false, (uint64_t)st.st_size,
                               "not the file the attacker created", NULL);
                        continue;
                }
                double ct = ts_sec(st.st_ctim);
                if (!c->o->force && c->o->scope != HF_RECOVER_BEFORE && ct > c->end + GRACE) {
                        c->res->kept++;
                        report(c, "kept", path, NULL, NULL, false, (uint64_t)st.st_size,
                               "created by the attacker but changed after the incident", NULL);
                        continue;
                }
                if (c->o->scope == HF_RECOVER_BEFORE) {
                        report(c, "new", path, NULL, NULL, false, (uint64_t)st.st_size,
                               "created after the given time; left in place", NULL);
                        continue;
                }
                if (c->o->dry_run) {
                        report(c, "remove", path, NULL, NULL, false, (uint64_t)st.st_size,
                               "created by the attacker; dry run", NULL);
                        continue;
                }
                if (unlink(path) < 0) {
                        c->res->failed++;
                        log_error_errno(errno, "%s: cannot remove: %m", path);
                        continue;
                }
                step(c);
                c->res->removed++;
                report(c, "removed", path, NULL, NULL, false, (uint64_t)st.st_size,
                       "created by the attacker", NULL);
                (void)journal_append(c, HF_JOURNAL_REMOVED, NULL, path);
                (void)fsync_dir_of(path);
        }
        return journal_flush(c);
}

/* ---- journal file ---- */

static int journal_open(Ctx *c)
{
        char dir[HF_RECOVER_PATH_MAX];
        _cleanup_buf_ HfBuf text = HF_BUF_INIT(1ULL << 30);
        int r;

        c->journal_fd = -1;
        if (snprintf(dir, sizeof(dir), "%s/recover", c->o->state_dir) >= (int)sizeof(dir) ||
            snprintf(c->journal_path, sizeof(c->journal_path), "%s/%s.journal", dir, c->key) >=
                    (int)sizeof(c->journal_path))
                return log_error_errno(-ENAMETOOLONG,
                                       "%s: the state folder's path is too long for the recover "
                                       "journal; use a shorter --state",
                                       c->o->state_dir);
        {
                _cleanup_close_ int fd = open(c->journal_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                if (fd >= 0 && hf_read_fd(fd, 1ULL << 30, &text) == 0 &&
                    hf_journal_parse((const char *)text.data, text.len, &c->journal) < 0)
                        log_warning("%s: not a recover journal; starting afresh", c->journal_path);
        }
        if (c->o->dry_run)
                return 0;
        r = hf_mkdir_p(dir, 0700);
        if (r < 0)
                return log_error_errno(r, "%s: cannot create: %m", dir);
        c->journal_fd = open(c->journal_path,
                             O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (c->journal_fd < 0)
                return log_error_errno(errno, "%s: cannot open: %m", c->journal_path);
        struct stat st;
        if (fstat(c->journal_fd, &st) == 0 && st.st_size == 0) {
                char head[96];
                (void)snprintf(head, sizeof(head), "holdfast-recover-journal 1 %.6f\n",
                               hf_recover_now());
                r = hf_write_all(c->journal_fd, head, strlen(head));
                if (r < 0)
                        return r;
        } else if (st.st_size > 0 && c->journal.n == 0 && !c->journal.began) {
                /* An unreadable journal: keep it aside, start a new one. */
                char aside[HF_RECOVER_PATH_MAX + 16];
                (void)snprintf(aside, sizeof(aside), "%s.bad", c->journal_path);
                (void)rename(c->journal_path, aside);
                closep(&c->journal_fd);
                return journal_open(c);
        } else {
                /* Make sure a torn last line does not glue onto the next one. */
                (void)hf_write_all(c->journal_fd, "\n", 1);
        }
        return 0;
}

/* ---- the run ---- */

static void ctx_done(Ctx *c)
{
        for (size_t i = 0; i < c->n_ev; i++)
                ev_done(&c->ev[i]);
        free(c->ev);
        for (size_t i = 0; i < c->n_moves; i++) {
                free(c->moves[i].from);
                free(c->moves[i].to);
        }
        free(c->moves);
        for (size_t i = 0; i < c->n_dirs; i++)
                free(c->dirs[i].path);
        free(c->dirs);
        for (size_t i = 0; i < c->n_pre; i++)
                pre_done(&c->pre[i]);
        free(c->pre);
        for (size_t i = 0; i < c->n_pins; i++)
                pre_done(&c->pins[i]);
        free(c->pins);
        for (size_t i = 0; i < c->n_items; i++) {
                Item *it = &c->items[i];
                free(it->orig);
                free(it->cur);
                free(it->pin);
                pre_done(&it->pre);
                segs_free(it);
                if (it->has_node)
                        hf_node_done(&it->node);
        }
        free(c->items);
        for (size_t i = 0; i < c->n_junk; i++)
                free(c->junk[i].path);
        free(c->junk);
        free(c->pids);
        map_free(&c->by_ino);
        map_free(&c->by_cur);
        map_free(&c->dir_map);
        hf_strv_free(c->dir_names, c->n_dir_names);
        free(c->dir_path);
        hf_vault_src_free(c->vault);
        hf_journal_done(&c->journal);
        if (c->journal_fd >= 0)
                close(c->journal_fd);
        hf_buf_free(&c->jbuf);
        if (c->db)
                sqlite3_close(c->db);
}

static int open_db(Ctx *c)
{
        int r = hf_db_path(c->o->state_dir, c->db_path, sizeof(c->db_path));

        if (r < 0)
                return r;
        if (access(c->db_path, F_OK) < 0) {
                log_error("no sentinel database at %s (is --state right? the sentinel creates it "
                          "on start)",
                          c->db_path);
                return -ENOENT;
        }
        if (sqlite3_open_v2(c->db_path, &c->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
                log_error("%s: cannot open: %s", c->db_path,
                          c->db ? sqlite3_errmsg(c->db) : "out of memory");
                return -EIO;
        }
        sqlite3_busy_timeout(c->db, 10000);
        return 0;
}

static int close_incident(Ctx *c)
{
        sqlite3 *w = NULL;
        sqlite3_stmt *s = NULL;
        int r = 0;

        if (sqlite3_open_v2(c->db_path, &w, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
                log_warning("%s: cannot mark incident %lld recovered: %s", c->db_path,
                            (long long)c->o->incident, w ? sqlite3_errmsg(w) : "?");
                sqlite3_close(w);
                return -EIO;
        }
        sqlite3_busy_timeout(w, 10000);
        if (sqlite3_prepare_v2(w,
                               "UPDATE incidents SET state = 'recovered', closed = ? WHERE id = ?",
                               -1, &s, NULL) != SQLITE_OK ||
            (sqlite3_bind_double(s, 1, hf_recover_now()), sqlite3_bind_int64(s, 2, c->o->incident),
             sqlite3_step(s) != SQLITE_DONE)) {
                log_warning("%s: cannot mark incident %lld recovered: %s", c->db_path,
                            (long long)c->o->incident, sqlite3_errmsg(w));
                r = -EIO;
        }
        sqlite3_finalize(s);
        sqlite3_close(w);
        return r;
}

int hf_recover(const HfRecoverOptions *o, HfRecoverResult *ret)
{
        Ctx c = { .o = o, .res = ret, .journal_fd = -1, .jbuf = HF_BUF_INIT(1 << 24) };
        double t0 = hf_recover_now();
        Batch *b = NULL;
        int r;

        *ret = (HfRecoverResult){ .incident = o->scope == HF_RECOVER_INCIDENT ? o->incident : 0 };
        const char *crash = getenv("HOLDFAST_RECOVER_CRASH_AFTER");
        if (crash) {
                uint64_t v;
                if (hf_parse_u64(crash, &v) == 0 && v > 0 && v < LONG_MAX)
                        c.crash_after = (long)v;
        }
        r = open_db(&c);
        if (r < 0)
                goto out;
        switch (o->scope) {
        case HF_RECOVER_INCIDENT:
                r = load_incident(&c);
                if (r < 0)
                        goto out;
                (void)snprintf(c.key, sizeof(c.key), "incident-%lld", (long long)o->incident);
                if (strcmp(c.kind, "raw-disk") == 0 || strcmp(c.kind, "allow-disk") == 0) {
                        if (!o->out.json && !o->out.quiet)
                                printf("incident %lld is a %s incident: block-device writes "
                                       "were %s, no file was touched; nothing to put back\n",
                                       (long long)o->incident, c.kind,
                                       strcmp(c.kind, "raw-disk") == 0 ? "denied" : "allowed");
                        if (!o->dry_run)
                                (void)close_incident(&c);
                        goto summary;
                }
                /* The window in which pre-images of the incident's processes count. */
                c.lo = c.first_event - 5;
                c.end = c.contained > 0 ? c.contained : hf_recover_now();
                c.hi = c.end + GRACE;
                /* A write already past its permission check when the group was stopped still
                 * lands, and the sentinel commits its pre-image rows in batches (0.2 s): give
                 * a just-contained incident a moment to be complete. */
                if (c.contained > 0) {
                        double wait = c.contained + 0.5 - hf_recover_now();
                        if (wait > 0 && wait <= 0.5) {
                                struct timespec ts = { 0, (long)(wait * 1e9) };
                                (void)nanosleep(&ts, NULL);
                        }
                }
                break;
        case HF_RECOVER_PROCESS:
                (void)snprintf(c.key, sizeof(c.key), "process-%d-%lld", (int)o->pid,
                               (long long)o->since);
                c.pids = malloc(sizeof(pid_t));
                if (!c.pids) {
                        r = -ENOMEM;
                        goto out;
                }
                c.pids[0] = o->pid;
                c.n_pids = 1;
                c.lo = o->since;
                c.end = hf_recover_now();
                c.hi = c.end + GRACE;
                if (kill(o->pid, 0) == 0)
                        log_warning("process %d is still running: what it changes from now on "
                                    "is not recovered (stop it first)",
                                    (int)o->pid);
                break;
        default: {
                HfId h;
                _cleanup_buf_ HfBuf all = HF_BUF_INIT(1 << 20);
                for (size_t i = 0; i < o->n_paths; i++)
                        (void)hf_buf_printf(&all, "%s\n", o->paths[i]);
                hf_sha256(all.data, all.len, &h);
                char hex[65];
                hf_hex_encode(h.b, 32, hex);
                (void)snprintf(c.key, sizeof(c.key), "before-%lld-%.12s", (long long)o->before,
                               hex);
                c.lo = o->before;
                c.end = hf_recover_now();
                c.hi = c.end;
                break;
        }
        }
        r = load_events(&c);
        if (r < 0)
                goto out;
        /* The first event may precede first_event (events the scoring did not weigh). */
        for (size_t i = 0; o->scope == HF_RECOVER_INCIDENT && i < c.n_ev; i++)
                if (c.ev[i].time - 5 < c.lo)
                        c.lo = c.ev[i].time - 5;
        r = load_preimages(&c);
        if (r < 0)
                goto out;
        /* Renamed folders: every path to its pre-incident name, then the folders back. */
        r = take_moves(&c);
        if (r < 0)
                goto out;
        r = undo_moves(&c);
        if (r < 0)
                goto out;
        r = replay(&c);
        if (r < 0)
                goto out;
        r = add_preimage_items(&c);
        if (r < 0)
                goto out;
        /* --before FILE: a file named explicitly is put back even when the shadow store knows
         * nothing of it (changed through a loop device, or before the sentinel ran): from
         * the snapshot before TIME, when its content differs. */
        for (size_t i = 0; o->scope == HF_RECOVER_BEFORE && i < o->n_paths; i++) {
                struct stat st;
                bool exists = lstat(o->paths[i], &st) == 0;
                if (exists && !S_ISREG(st.st_mode))
                        continue;
                if ((exists && item_by_ino(&c, (uint64_t)st.st_dev, (uint64_t)st.st_ino)) ||
                    item_by_orig(&c, o->paths[i]))
                        continue;
                Item *it = item_new(&c, exists ? (uint64_t)st.st_dev : 0,
                                    exists ? (uint64_t)st.st_ino : 0, o->paths[i], o->before);
                if (!it) {
                        r = -ENOMEM;
                        goto out;
                }
                it->changed = exists;
                it->deleted = !exists;
                it->first_change = o->before;
                if (!exists)
                        set_cur(&c, it, NULL);
        }
        /* The vault snapshot must predate everything the scope did. */
        c.t_start = o->scope == HF_RECOVER_BEFORE ? o->before : c.first_event;
        if (o->scope == HF_RECOVER_PROCESS)
                c.t_start = o->since;
        for (size_t i = 0; i < c.n_ev; i++)
                if (c.ev[i].time < c.t_start || c.t_start <= 0)
                        c.t_start = c.ev[i].time;
        for (size_t i = 0; i < c.n_pre; i++)
                if (c.pre[i].time < c.t_start || c.t_start <= 0)
                        c.t_start = c.pre[i].time;
        /* Where the inodes are now: a rename after the last recorded event moved some. */
        relocate(&c);
        if (o->scope != HF_RECOVER_BEFORE) {
                r = note_copies(&c);
                if (r < 0)
                        goto out;
        }
        for (size_t i = 0; i < c.n_items; i++) {
                r = choose(&c, &c.items[i]);
                if (r < 0)
                        goto out;
                if (!c.items[i].maybe)
                        ret->files++;
        }
        /* One original per name: a name seen twice (deleted, then a rename brought another
         * file there) is restored once, from the earliest original that has a source. */
        {
                Map seen = { 0 };
                for (size_t i = 0; i < c.n_items; i++) {
                        Item *it = &c.items[i];
                        size_t k;
                        if (it->src == SRC_NONE && it->maybe)
                                continue;
                        if (map_get(&seen, hash_path(it->orig), &k) &&
                            strcmp(c.items[k].orig, it->orig) == 0) {
                                Item *first = &c.items[k];
                                if (src_rank(it->src) > src_rank(first->src)) {
                                        first->maybe = true;
                                        (void)map_put(&seen, hash_path(it->orig), i);
                                } else {
                                        it->src = SRC_NONE;
                                        it->maybe = true;
                                }
                                if (ret->files)
                                        ret->files--;
                                continue;
                        }
                        (void)map_put(&seen, hash_path(it->orig), i);
                }
                map_free(&seen);
        }
        r = journal_open(&c);
        if (r < 0)
                goto out;
        if (!o->out.json && !o->out.quiet) {
                if (o->scope == HF_RECOVER_INCIDENT)
                        printf("incident %lld (%s, %s): %zu file(s) to put back, %zu file(s) "
                               "the attacker created%s\n",
                               (long long)o->incident, c.kind, c.state, (size_t)ret->files,
                               c.n_junk, o->dry_run ? " (dry run: nothing is changed)" : "");
                else
                        printf("%zu file(s) to put back%s\n", (size_t)ret->files,
                               o->dry_run ? " (dry run: nothing is changed)" : "");
                if (c.journal.n && !o->dry_run)
                        printf("resuming: an earlier run %s %zu step(s)\n",
                               c.journal.complete ? "completed" : "was interrupted after",
                               c.journal.n);
        }
        b = calloc(1, sizeof(*b));
        if (!b) {
                r = -ENOMEM;
                goto out;
        }
        make_dirs(&c);
        for (size_t i = 0; i < c.n_items; i++) {
                if (restore_item(&c, b, i) < 0)
                        ret->failed++;
        }
        r = flush_batch(&c, b);
        if (r < 0)
                goto out;
        /* The attacker's copies of originals now back at their names. */
        for (size_t i = 0; i < c.n_items; i++) {
                Item *it = &c.items[i];
                if (it->cur && strcmp(it->cur, it->orig) != 0 && it->src != SRC_INODE &&
                    it->src != SRC_NONE && !original_at(&c, it->cur))
                        (void)junk_add(&c, it->cur, it->ino, 0);
        }
        r = remove_junk(&c);
        if (r < 0)
                goto out;
        remove_dirs(&c);
        if (!o->dry_run) {
                char line[64];
                (void)snprintf(line, sizeof(line), "C %.6f\n", hf_recover_now());
                if (c.journal_fd >= 0 && hf_write_all(c.journal_fd, line, strlen(line)) == 0)
                        (void)fdatasync(c.journal_fd);
                if (o->scope == HF_RECOVER_INCIDENT)
                        (void)close_incident(&c);
        }
summary:
        ret->seconds = hf_recover_now() - t0;
        if (o->out.json)
                printf("{\"message_type\":\"summary\",\"incident\":%lld,\"dry_run\":%s,"
                       "\"files\":%llu,\"from_preimage\":%llu,\"from_pin\":%llu,"
                       "\"renamed_back\":%llu,\"folders_renamed_back\":%llu,"
                       "\"folders_made\":%llu,\"folders_removed\":%llu,\"from_vault\":%llu,"
                       "\"already\":%llu,"
                       "\"removed\":%llu,\"kept\":%llu,\"lost\":%llu,\"lost_bytes\":%llu,"
                       "\"unproven\":%llu,\"unproven_bytes\":%llu,\"failed\":%llu,"
                       "\"bytes\":%llu,\"seconds\":%.3f}\n",
                       (long long)ret->incident, o->dry_run ? "true" : "false",
                       (unsigned long long)ret->files, (unsigned long long)ret->from_preimage,
                       (unsigned long long)ret->from_pin, (unsigned long long)ret->renamed_back,
                       (unsigned long long)ret->folders, (unsigned long long)ret->folders_made,
                       (unsigned long long)ret->folders_removed,
                       (unsigned long long)ret->from_vault, (unsigned long long)ret->already,
                       (unsigned long long)ret->removed, (unsigned long long)ret->kept,
                       (unsigned long long)ret->lost, (unsigned long long)ret->lost_bytes,
                       (unsigned long long)ret->unproven, (unsigned long long)ret->unproven_bytes,
                       (unsigned long long)ret->failed, (unsigned long long)ret->bytes,
                       ret->seconds);
        else {
                char bb[32], tt[32];
                printf("%s%llu file(s): %llu from pre-images, %llu from pins, %llu renamed back, "
                       "%llu from the vault, %llu already in place; %llu attacker file(s) "
                       "removed; %llu kept (changed by others); %llu lost (%s); %llu failed; "
                       "in %s\n",
                       o->dry_run ? "dry run: " : "recovered: ", (unsigned long long)ret->files,
                       (unsigned long long)ret->from_preimage, (unsigned long long)ret->from_pin,
                       (unsigned long long)ret->renamed_back, (unsigned long long)ret->from_vault,
                       (unsigned long long)ret->already, (unsigned long long)ret->removed,
                       (unsigned long long)ret->kept, (unsigned long long)ret->lost,
                       hf_format_bytes(bb, sizeof(bb), ret->lost_bytes),
                       (unsigned long long)ret->failed,
                       hf_format_duration(tt, sizeof(tt), ret->seconds));
                if (ret->folders)
                        printf("%llu folder(s) renamed back\n", (unsigned long long)ret->folders);
                if (ret->folders_made || ret->folders_removed)
                        printf("%llu folder(s) the attacker removed made again, %llu empty "
                               "folder(s) it made removed\n",
                               (unsigned long long)ret->folders_made,
                               (unsigned long long)ret->folders_removed);
                if (ret->unproven)
                        printf("%llu file(s) came from the vault without proof that they match "
                               "the pre-attack content (%llu bytes, listed above)\n",
                               (unsigned long long)ret->unproven,
                               (unsigned long long)ret->unproven_bytes);
        }
        r = ret->lost || ret->failed || ret->unproven ? HF_INCOMPLETE : 0;
out:
        free(b);
        ctx_done(&c);
        return r;
}
