/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * holdfast sentinel: start-up (mode detection and report), the main loop, scoring of process
 * groups, and the response. docs/internals/sentinel.md describes the whole; the parts live in
 * guard.c (permission group, pre-images), watch.c (notification group), proc.c, analyze.c
 * (in the privsep child), db.c, respond.c, decoy.c and rawdisk.c.
 *
 * Scoring is file-centric and aggregated per process group (the session, else the process),
 * so splitting the work over many processes does not hide it (detection-notes §1.2, "The
 * Naked Sun"). Signals and weights (a group acts at `threshold`, default 9):
 *   file destroyed (encrypted / masked / magic destroyed / truncated / wiped)   3
 *   pre-existing file replaced by a random-looking new file + delete           3
 *   rename of a pre-existing file that changes its extension                    1
 *     (plus 1 when the file's content was destroyed)
 *   delete of a file the group did not create                                   0.5
 * Renames and deletes alone add up to at most ALONE_CAP (the alert level): mass deletion
 * (make clean, tmp cleaners, rsync --delete) and mass renaming by themselves only warn; they
 * kill only together with destroyed content. Pins and the vault cover what they remove.
 *   the same new file name in 3+ folders (ransom note)                          2
 *   destroyed files in 3+ folders (breadth)                                     2
 *   write, rename or delete of a decoy; change inside the shadow store        100
 * Signals count for `window` seconds.
 */
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <syslog.h>

#include "../base/gojson.h"
#include "../base/interrupt.h"
#include "../base/log.h"
#include "../base/util.h"
#include "retention.h"
#include "sentinel-internal.h"

#define MAX_GROUPS 128
#define GROUP_EVENTS 2048
#define GROUP_SIGNALS 4096
#define GROUP_NAMES 1024
#define GROUP_PIDS 1024
#define FILES 65536
#define DIRTY 1024
/* Files written to and not yet closed that the sentinel holds open (dirty_add). */
#define DIRTY_FDS 256

enum {
        W_DESTROYED = 3,
        W_REPLACE = 3,
        W_RENAME = 1,
        W_NOTE = 2,
        W_BREADTH = 2,
        W_DECOY = 100
};
#define ALONE_CAP 3.0
#define CREATED_SET 16384 /* per group: hashes of paths it created */

/*
 * What main knows of a file: its newest pre-image. Found by the file's handle (fid) when
 * known, which unlike (dev, ino) is never reused by a later file: a new file on the inode
 * number of a deleted one must not be compared with, or linked to, the old file's pre-image.
 */
typedef struct FileRec {
        uint64_t key; /* file_key() */
        uint64_t dev, ino;
        uint64_t fid; /* hash of the handle, 0: unknown */
        int64_t preimage_id;
        double pre_time;
        char *pre_store; /* absolute path of the pre-image, NULL when none */
        uint64_t pre_size;
        bool pre_ranges; /* the pre-image is a run of ranges (rows from pre_time on) */
        double used;
        HfFileVerdict verdict;
        bool analyzed;
        pid_t charged; /* group the guard charged the capture to, until judged */
} FileRec;

typedef struct GEvent {
        double time;
        pid_t pid;
        const char *kind;
        char *path, *new_path;
        uint64_t dev, ino;
        int64_t size_before, size_after;
        int64_t preimage_id;
        HfFileVerdict verdict;
        bool has_verdict;
        bool ondir;
        char *fid; /* handle of the object as hex, NULL when unknown */
} GEvent;

typedef struct Signal {
        double time;
        double weight;
} Signal;

typedef struct Name {
        uint64_t hash; /* of the full path */
        uint64_t base; /* of the basename */
        uint64_t dir;  /* of the folder */
        double time;
        uint8_t kind; /* 'c' created, 'r' created random, 'd' deleted pre-existing */
        char *path;
} Name;

typedef struct Group {
        bool used;
        bool session;
        pid_t key;
        double first_destructive; /* 0: none yet */
        double last_event;
        Signal sig[GROUP_SIGNALS];
        size_t n_sig, sig_head;
        GEvent ev[GROUP_EVENTS];
        size_t n_ev, ev_head;
        uint64_t files_touched;
        uint64_t destroyed, renames, deletes, replaces;
        Name names[GROUP_NAMES];
        size_t names_head;
        uint64_t dirs_destroyed[8];
        size_t n_dirs;
        uint64_t note_bases[64][4]; /* basename hash, dirs seen (up to 3) */
        size_t n_notes;
        bool note_counted, breadth_counted;
        pid_t pids[GROUP_PIDS];
        size_t n_pids;
        double alone; /* weight added by plain renames and deletes */
        uint64_t *created;
        bool alerted, acted;
        int64_t incident;
        char reason[512];
        char grp[48]; /* key of the events it spilled to the database before a verdict */
        GEvent late;  /* an event after the verdict, written at once */
        HfContainment cont;
        size_t n_recorded; /* members of cont already in the processes table */
        bool released;     /* the containment cgroup is gone */
} Group;

typedef struct Root {
        char path[HF_PATH_MAX];
        char fstype[32];
        dev_t dev; /* stat's, taken at start: a rescan touches no filesystem it has met */
        bool pre;
        bool clones; /* pre-images are clones (reflink), not copies */
} Root;

/*
 * A mount inside a tree, met at start or since, as /proc/self/mountinfo names it: a mount
 * found there again is not looked at again. Its filesystem may have stopped answering since (a
 * hard NFS mount whose server is gone, a FUSE daemon stopped) and the main loop must not wait
 * on it. The ID alone would do but for its reuse after an unmount; with the device and the
 * path, a mount taken for another is the same filesystem at the same place.
 */
typedef struct Mounted {
        uint64_t id;
        dev_t dev;
        char *path;
        bool live; /* still in the mount table at the last reading */
} Mounted;

typedef struct Sentinel {
        const HfSentinelConfig *c;
        HfMode mode;
        HfProcs *procs;
        HfGuard *guard;
        HfWatch *watch;
        HfAnalyzer *analyzer;
        HfDb *db;
        HfRawDisk *raw;
        pid_t self_sid;
        Root roots[64];
        size_t n_roots;
        Mounted *mounted; /* filesystems mounted inside the trees, as last read */
        size_t n_mounted;
        int mounts_fd; /* /proc/self/mounts: POLLPRI when the mount table changes */
        FileRec *files;
        struct {
                uint64_t dev, ino;
                int fs;
                int fd; /* the file, opened at its first write seen; -1 if not */
                _Alignas(8) unsigned char fh[128];
                double since;
                pid_t pid;
                char path[HF_PATH_MAX];
        } dirty[DIRTY];
        size_t n_dirty, n_dirty_fds;
        Group *groups;
        int control_fd;
        char control_path[HF_PATH_MAX];
        struct {
                pid_t pid;
                double time, since;
                char path[HF_PATH_MAX];
        } decoy_del[64];
        size_t n_decoy_del;
        FILE *alerts;
        uint64_t events, analyses, incidents, overflows;
        bool rescan;
        double last_rescan;
        bool db_in_tx;
        double tx_started;
        char run[24]; /* start time: with a serial, the group keys of this run */
        uint64_t group_serial;
        char cg_root[256]; /* the cgroup v2 mount, "" when there is none */
        double last_prune, last_release;
} Sentinel;

static uint64_t hash_str(const char *s)
{
        uint64_t h = 1469598103934665603ULL;
        for (; *s; s++)
                h = (h ^ (uint8_t)*s) * 1099511628211ULL;
        return h | 1;
}

static uint64_t hash_dir(const char *path)
{
        const char *slash = strrchr(path, '/');
        uint64_t h = 1469598103934665603ULL;
        for (const char *p = path; slash && p < slash; p++)
                h = (h ^ (uint8_t)*p) * 1099511628211ULL;
        return h | 1;
}

static const char *basename_of(const char *path)
{
        const char *s = strrchr(path, '/');
        return s ? s + 1 : path;
}

static const char *ext_of(const char *path)
{
        const char *b = basename_of(path), *d = strrchr(b, '.');
        return d && d != b ? d + 1 : "";
}

/* ---- alert sinks ---- */

static void alert(Sentinel *s, const char *level, const Group *g, const char *kind,
                  const char *reason, double score)
{
        _cleanup_buf_ HfBuf b = HF_BUF_INIT(1 << 16);

        (void)hf_buf_printf(&b, "{\"time\":%.6f,\"level\":\"%s\",\"kind\":\"%s\",", hf_now_real(),
                            level, kind);
        (void)hf_buf_printf(&b, "\"group\":{\"kind\":\"%s\",\"key\":%d},\"score\":%.1f,",
                            g ? (g->session ? "session" : "process") : "none", g ? g->key : 0,
                            score);
        (void)hf_buf_printf(&b, "\"incident\":%lld,\"action\":\"%s\",\"reason\":",
                            g ? (long long)g->incident : 0LL, hf_action_name(s->c->action));
        (void)hf_json_put_string(&b, reason, strlen(reason));
        (void)hf_buf_puts(&b, "}\n");
        if (s->alerts) {
                fwrite(b.data, 1, b.len, s->alerts);
                fflush(s->alerts);
        }
        if (s->c->syslog)
                syslog(strcmp(level, "alert") == 0 ? LOG_ALERT : LOG_WARNING, "%s: %s", kind,
                       reason);
        if (s->c->webhook) {
                /* Fire and forget through curl(1); never block the loop on the network. */
                int pfd[2];
                if (pipe2(pfd, O_CLOEXEC) == 0) {
                        pid_t pid = fork();
                        if (pid == 0) {
                                if (fork() == 0) {
                                        dup2(pfd[0], 0);
                                        int nul = open("/dev/null", O_WRONLY);
                                        if (nul >= 0) {
                                                dup2(nul, 1);
                                                dup2(nul, 2);
                                        }
                                        execlp("curl", "curl", "-s", "-m", "5", "-H",
                                               "Content-Type: application/json", "--data-binary",
                                               "@-", s->c->webhook, (char *)NULL);
                                        _exit(127);
                                }
                                _exit(0);
                        }
                        close(pfd[0]);
                        (void)!write(pfd[1], b.data, b.len);
                        close(pfd[1]);
                        if (pid > 0)
                                (void)waitpid(pid, NULL, 0);
                }
        }
}

/* ---- files ---- */

static uint64_t fid_hash(const char *hex)
{
        return hex && *hex ? hash_str(hex) : 0;
}

static uint64_t file_key(uint64_t dev, uint64_t ino, uint64_t fid)
{
        uint64_t k = fid ? fid ^ (dev * 0xc2b2ae3d27d4eb4fULL)
                         : (dev * 0x9e3779b97f4a7c15ULL) ^ ino;
        /* Not "| 1": neighbouring inode numbers would share one record. 0 marks a free slot. */
        return k ? k : 1;
}

static FileRec *file_probe(Sentinel *s, uint64_t key, FileRec **oldest)
{
        size_t h = (size_t)(key * 0xff51afd7ed558ccdULL >> 32);

        for (int i = 0; i < 16; i++) {
                FileRec *f = &s->files[(h + (size_t)i) % FILES];
                if (f->key == key)
                        return f;
                if (oldest && (!*oldest || f->used < (*oldest)->used))
                        *oldest = f;
        }
        return NULL;
}

/* The record of a file: by its handle when known (fid != 0); a record made without a handle
 * matches by (dev, ino). */
static FileRec *file_get(Sentinel *s, uint64_t dev, uint64_t ino, uint64_t fid, bool create)
{
        FileRec *oldest = NULL;
        FileRec *f = file_probe(s, file_key(dev, ino, fid), &oldest);

        if (!f && fid && ino && !create) {
                FileRec *o = file_probe(s, file_key(dev, ino, 0), NULL);
                if (o && !o->fid)
                        f = o;
        }
        if (f || !create)
                return f;
        free(oldest->pre_store);
        *oldest = (FileRec){ .key = file_key(dev, ino, fid),
                             .dev = dev,
                             .ino = ino,
                             .fid = fid,
                             .used = hf_now_mono() };
        return oldest;
}

/* ---- groups ---- */

static void gevent_clear(GEvent *e)
{
        free(e->path);
        free(e->new_path);
        free(e->fid);
        *e = (GEvent){ 0 };
}

/* Frees what a group slot holds and empties it (the created set is kept, emptied). */
static void group_clear(Group *g)
{
        for (size_t i = 0; i < GROUP_EVENTS; i++)
                gevent_clear(&g->ev[i]);
        gevent_clear(&g->late);
        for (size_t i = 0; i < GROUP_NAMES; i++)
                free(g->names[i].path);
        if (g->cont.cgroup[0])
                (void)hf_respond_release(&g->cont);
        hf_containment_done(&g->cont);
        uint64_t *created = g->created;
        memset(g, 0, sizeof(*g));
        g->created = created ? created : calloc(CREATED_SET, sizeof(uint64_t));
        if (created)
                memset(created, 0, CREATED_SET * sizeof(uint64_t));
}

static Group *group_for(Sentinel *s, const HfProcInfo *p)
{
        bool session = p->sid > 1 && p->sid != s->self_sid;
        pid_t key = session ? p->sid : p->pid;
        Group *free_slot = NULL, *oldest = NULL;

        for (size_t i = 0; i < MAX_GROUPS; i++) {
                Group *g = &s->groups[i];
                if (g->used && g->key == key && g->session == session)
                        return g;
                if (!g->used && !free_slot)
                        free_slot = g;
                if (g->used && !g->acted && (!oldest || g->last_event < oldest->last_event))
                        oldest = g;
        }
        Group *g = free_slot ? free_slot : oldest;
        if (!g)
                g = &s->groups[0];
        group_clear(g);
        g->used = true;
        g->session = session;
        g->key = key;
        (void)snprintf(g->grp, sizeof(g->grp), "%s:%llu", s->run,
                       (unsigned long long)++s->group_serial);
        return g;
}

static void group_add_pid(Group *g, pid_t pid)
{
        for (size_t i = 0; i < g->n_pids; i++)
                if (g->pids[i] == pid)
                        return;
        if (g->n_pids < GROUP_PIDS)
                g->pids[g->n_pids++] = pid;
}

static void add_signal(Group *g, double w, double t)
{
        size_t i = (g->sig_head + g->n_sig) % GROUP_SIGNALS;
        if (g->n_sig == GROUP_SIGNALS) {
                g->sig_head = (g->sig_head + 1) % GROUP_SIGNALS;
                i = (g->sig_head + g->n_sig - 1) % GROUP_SIGNALS;
        } else
                g->n_sig++;
        g->sig[i] = (Signal){ t, w };
}

static double group_score(const Sentinel *s, const Group *g, double now)
{
        double sc = 0;
        for (size_t k = 0; k < g->n_sig; k++) {
                const Signal *x = &g->sig[(g->sig_head + k) % GROUP_SIGNALS];
                if (now - x->time <= s->c->window)
                        sc += x->weight;
        }
        return sc;
}

static void created_add(Group *g, const char *path)
{
        uint64_t k = hash_str(path);
        if (!g->created)
                return;
        for (size_t i = 0; i < 64; i++) {
                uint64_t *x = &g->created[(k + i) % CREATED_SET];
                if (*x == k)
                        return;
                if (!*x) {
                        *x = k;
                        return;
                }
        }
        g->created[k % CREATED_SET] = k; /* full probe run: replace */
}

static bool created_has(Group *g, const char *path)
{
        uint64_t k = hash_str(path);
        if (!g->created)
                return false;
        for (size_t i = 0; i < 64; i++) {
                uint64_t x = g->created[(k + i) % CREATED_SET];
                if (x == k)
                        return true;
                if (!x)
                        return false;
        }
        return false;
}

static void add_alone(Group *g, double w, double t)
{
        if (g->alone + w > ALONE_CAP)
                w = ALONE_CAP - g->alone;
        if (w <= 0)
                return;
        g->alone += w;
        add_signal(g, w, t);
}

static void record_event(Sentinel *s, Group *g, const GEvent *e, int64_t incident);

/*
 * A new event of the group, for the caller to fill and then pass to group_event_done(). The
 * group keeps its last GROUP_EVENTS events in memory; an older one is spilled to the database
 * under the group's key (file_events.grp), and an incident claims those too. After the verdict
 * every event goes to the database at once, with the incident: recovery needs every file the
 * group touched, in-flight events included.
 */
static GEvent *group_event(Sentinel *s, Group *g, const HfEvent *ev, const char *kind)
{
        GEvent *e;
        if (g->acted) {
                e = &g->late;
                gevent_clear(e);
        } else {
                size_t i;
                if (g->n_ev == GROUP_EVENTS) {
                        i = g->ev_head;
                        g->ev_head = (g->ev_head + 1) % GROUP_EVENTS;
                        record_event(s, g, &g->ev[i], 0);
                        gevent_clear(&g->ev[i]);
                } else
                        i = (g->ev_head + g->n_ev++) % GROUP_EVENTS;
                e = &g->ev[i];
        }
        char fid[HF_FID_MAX];
        hf_fid_hex(ev->fh, fid, sizeof(fid));
        *e = (GEvent){ .time = ev->time,
                       .pid = ev->pid,
                       .kind = kind,
                       .dev = ev->dev,
                       .ino = ev->ino,
                       .size_before = -1,
                       .size_after = -1,
                       .ondir = ev->ondir };
        e->path = strdup(ev->path);
        e->new_path = ev->new_path[0] ? strdup(ev->new_path) : NULL;
        e->fid = fid[0] ? strdup(fid) : NULL;
        return e;
}

static void group_event_done(Sentinel *s, Group *g, GEvent *e)
{
        if (g->acted && e == &g->late) {
                record_event(s, g, e, g->incident);
                gevent_clear(e);
        }
}

static Name *name_find(Group *g, uint64_t hash, char kind)
{
        for (size_t i = 0; i < GROUP_NAMES; i++)
                if (g->names[i].hash == hash && (!kind || g->names[i].kind == (uint8_t)kind))
                        return &g->names[i];
        return NULL;
}

static void name_add(Group *g, const char *path, char kind, double t)
{
        Name *n = name_find(g, hash_str(path), 0);
        if (!n) {
                n = &g->names[g->names_head];
                g->names_head = (g->names_head + 1) % GROUP_NAMES;
                free(n->path);
                *n = (Name){ 0 };
                n->path = strdup(path);
        }
        n->hash = hash_str(path);
        n->base = hash_str(basename_of(path));
        n->dir = hash_dir(path);
        n->kind = (uint8_t)kind;
        n->time = t;
}

/* "a.txt" and "a.txt.locked" / "a.locked" belong together (write new, delete original). */
static bool same_stem(const char *orig, const char *copy)
{
        const char *bo = basename_of(orig), *bc = basename_of(copy);
        size_t lo = strlen(bo);
        if (hash_dir(orig) != hash_dir(copy))
                return false;
        if (strncmp(bo, bc, lo) == 0 && bc[lo] == '.')
                return true;
        const char *dot = strrchr(bo, '.');
        size_t stem = dot && dot != bo ? (size_t)(dot - bo) : lo;
        return stem > 0 && strncmp(bo, bc, stem) == 0 && bc[stem] == '.';
}

static void destroyed(Sentinel *s, Group *g, const char *path, double t, double first)
{
        if (!g->first_destructive || first < g->first_destructive)
                g->first_destructive = first;
        g->destroyed++;
        add_signal(g, W_DESTROYED, t);
        uint64_t d = hash_dir(path);
        bool seen = false;
        for (size_t i = 0; i < g->n_dirs; i++)
                seen |= g->dirs_destroyed[i] == d;
        if (!seen && g->n_dirs < ELEMENTSOF(g->dirs_destroyed))
                g->dirs_destroyed[g->n_dirs++] = d;
        if (g->n_dirs >= 3 && !g->breadth_counted) {
                g->breadth_counted = true;
                add_signal(g, W_BREADTH, t);
        }
        (void)s;
}

static void note_check(Group *g, const char *path, double t)
{
        uint64_t b = hash_str(basename_of(path)), d = hash_dir(path);
        for (size_t i = 0; i < g->n_notes; i++) {
                if (g->note_bases[i][0] != b)
                        continue;
                uint64_t *v = g->note_bases[i];
                for (int k = 1; k < 4; k++) {
                        if (v[k] == d)
                                return;
                        if (!v[k]) {
                                v[k] = d;
                                if (k == 3 && !g->note_counted) {
                                        g->note_counted = true;
                                        add_signal(g, W_NOTE, t);
                                }
                                return;
                        }
                }
                return;
        }
        if (g->n_notes < ELEMENTSOF(g->note_bases)) {
                g->note_bases[g->n_notes][0] = b;
                g->note_bases[g->n_notes][1] = d;
                g->n_notes++;
        }
}

/* ---- response ---- */

static void hash_path_hex(const char *path, char out[65])
{
        uint8_t sha[32];
        out[0] = 0;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd >= 0 && hf_sha256_fd(fd, 64ULL << 20, sha) == 0)
                hf_hex_encode(sha, 32, out);
}

static void db_flush(Sentinel *s)
{
        if (s->db_in_tx) {
                (void)hf_db_commit(s->db);
                s->db_in_tx = false;
        }
}

static void db_tx(Sentinel *s)
{
        if (!s->db_in_tx) {
                (void)hf_db_begin(s->db);
                s->db_in_tx = true;
                s->tx_started = hf_now_mono();
        }
}

/* Writes one event of group g: with its incident, or (incident 0) under the group's key. */
static void record_event(Sentinel *s, Group *g, const GEvent *e, int64_t incident)
{
        char hb[65] = "", ha[65] = "";

        db_tx(s);
        if (e->preimage_id > 0) {
                char root[512], rel[256], sha[65], p[HF_PATH_MAX + 800];
                if (hf_db_preimage_location(s->db, e->preimage_id, root, sizeof(root), rel,
                                            sizeof(rel), sha, sizeof(sha)) == 0) {
                        if (sha[0])
                                (void)snprintf(hb, sizeof(hb), "%s", sha);
                        else if (rel[0]) {
                                (void)snprintf(p, sizeof(p), "%s/" HF_STORE_DIR "/%s",
                                               strcmp(root, "/") ? root : "", rel);
                                hash_path_hex(p, hb);
                                if (hb[0])
                                        (void)hf_db_set_preimage_sha(s->db, e->preimage_id, hb);
                        }
                }
                if (incident > 0)
                        (void)hf_db_claim_preimage(s->db, e->preimage_id, incident);
        }
        if (strcmp(e->kind, "delete") != 0 && !e->ondir)
                hash_path_hex(e->new_path ? e->new_path : e->path, ha);
        HfDbFileEvent fe = {
                .time = e->time,
                .pid = e->pid,
                .kind = e->kind,
                .path = e->path,
                .new_path = e->new_path,
                .dev = e->dev,
                .ino = e->ino,
                .size_before = e->size_before,
                .size_after = e->size_after,
                .hash_before = hb,
                .hash_after = ha,
                .preimage_id = e->preimage_id,
                .verdict = e->has_verdict ? hf_file_verdict_name(e->verdict) : NULL,
                .fid = e->fid,
                .ondir = e->ondir,
                .grp = g->grp,
        };
        (void)hf_db_add_file_event(s->db, incident, &fe);
}

static const char *member_action(const Sentinel *s)
{
        return s->c->action == HF_ACTION_KILL   ? "killed"
               : s->c->action == HF_ACTION_STOP ? "stopped"
                                                : "alerted";
}

/* Writes the members of the containment from index from on into the processes table. */
static void record_members(Sentinel *s, Group *g, size_t from)
{
        for (size_t i = from; i < g->cont.n_pids; i++) {
                pid_t pid = g->cont.pids[i];
                HfProcInfo info;
                if (hf_procs_get(s->procs, pid, &info) < 0) {
                        memset(&info, 0, sizeof(info));
                        info.pid = pid;
                        (void)hf_proc_stat(pid, &info.ppid, &info.sid, &info.start);
                        info.gone = true;
                }
                char sha[65] = "", ev[HF_PATH_MAX] = "";
                (void)hf_respond_evidence(s->c->state_dir, pid, sha, ev, sizeof(ev));
                (void)hf_db_add_process(s->db, g->incident, &info, sha, ev, member_action(s), 0);
        }
        g->n_recorded = g->cont.n_pids;
}

static void contain_member(void *userdata, pid_t pid)
{
        Sentinel *s = userdata;
        /* Denied from now on: a member blocked in a permission event (or in the tarpit)
         * gets its answer and can be frozen. */
        hf_guard_contain(s->guard, pid);
}

/* Stops the group (or the members that joined it since the verdict). Returns how many new
 * members were stopped. */
static size_t stop_group(Sentinel *s, Group *g)
{
        char name[96];
        size_t before = g->cont.n_pids;

        g->cont.on_member = contain_member;
        g->cont.userdata = s;
        (void)snprintf(name, sizeof(name), "%s-%d-%lld", g->session ? "session" : "process",
                       (int)g->key, (long long)(hf_now_real() * 1000));
        int r = hf_respond_stop(&g->cont, s->cg_root[0] ? s->cg_root : NULL, name,
                                g->session ? g->key : 0, g->pids, g->n_pids);
        if (r < 0)
                log_error_errno(r, "containment failed: %m");
        return g->cont.n_pids - before;
}

static void contain(Sentinel *s, Group *g, const char *kind, double score)
{
        double detected = hf_now_real(), contained = -1;
        const char *state = "alerted";

        g->acted = true;
        if (s->c->action != HF_ACTION_ALERT) {
                (void)stop_group(s, g);
                contained = hf_now_real();
                state = "contained";
        }
        if (!g->first_destructive)
                g->first_destructive = detected;
        db_flush(s);
        db_tx(s);
        HfDbIncident inc = {
                .kind = kind,
                .state = state,
                .action = hf_action_name(s->c->action),
                .reason = g->reason,
                .group_kind = g->session ? "session" : "process",
                .score = score,
                .first_event = g->first_destructive,
                .detected = detected,
                .contained = contained,
                .files_touched = (int64_t)g->files_touched,
        };
        char key[32], details[1024];
        (void)snprintf(key, sizeof(key), "%d", g->key);
        inc.group_key = key;
        (void)snprintf(details, sizeof(details),
                       "{\"destroyed\":%llu,\"renames\":%llu,\"deletes\":%llu,\"replaced\":%llu,"
                       "\"processes\":%zu,\"mode\":\"%s\",\"containment\":\"%s\"}",
                       (unsigned long long)g->destroyed, (unsigned long long)g->renames,
                       (unsigned long long)g->deletes, (unsigned long long)g->replaces,
                       g->cont.n_pids,
                       s->mode == HF_MODE_PRE_CONTENT ? "pre-content"
                       : s->mode == HF_MODE_OPEN_PERM ? "open-perm"
                                                      : "notify",
                       s->c->action == HF_ACTION_ALERT ? "none"
                       : g->cont.cgroup[0]             ? "cgroup-freeze"
                                                       : "sigstop");
        inc.details = details;
        if (hf_db_add_incident(s->db, &inc, &g->incident) < 0)
                g->incident = 0;
        /* Processes: the stopped ones, plus members seen earlier that already exited. */
        record_members(s, g, 0);
        for (size_t i = 0; i < g->n_pids; i++) {
                bool dup = false;
                for (size_t k = 0; k < g->cont.n_pids && !dup; k++)
                        dup = g->cont.pids[k] == g->pids[i];
                if (dup)
                        continue;
                HfProcInfo info;
                if (hf_procs_get(s->procs, g->pids[i], &info) < 0) {
                        memset(&info, 0, sizeof(info));
                        info.pid = g->pids[i];
                        info.gone = true;
                }
                (void)hf_db_add_process(s->db, g->incident, &info, NULL, NULL,
                                        s->c->action == HF_ACTION_ALERT ? "alerted" : "gone", 0);
        }
        if (s->c->action == HF_ACTION_KILL)
                hf_respond_kill(&g->cont, 0);
        /* Files: the events in memory, then those spilled earlier. */
        for (size_t k = 0; k < g->n_ev; k++) {
                GEvent *e = &g->ev[(g->ev_head + k) % GROUP_EVENTS];
                record_event(s, g, e, g->incident);
                gevent_clear(e);
        }
        g->n_ev = g->ev_head = 0;
        (void)hf_db_claim_group_events(s->db, g->grp, g->incident);
        db_flush(s);
        s->incidents++;
        char msg[1024];
        (void)snprintf(msg, sizeof(msg),
                       "incident %lld: %s by %s %d: %s; %zu process(es) %s, %.3fs after the "
                       "first destructive event, %llu file(s) touched",
                       (long long)g->incident, kind, g->session ? "session" : "process", g->key,
                       g->reason, g->cont.n_pids,
                       s->c->action == HF_ACTION_KILL   ? "killed"
                       : s->c->action == HF_ACTION_STOP ? "stopped"
                                                        : "left running (alert only)",
                       contained >= 0 ? contained - g->first_destructive
                                      : detected - g->first_destructive,
                       (unsigned long long)g->files_touched);
        log_error("%s", msg);
        alert(s, "alert", g, kind, msg, score);
}

/* An event of an acted group: a process that is no known member joined after the verdict
 * (or escaped the sweep): stop it too and record it. */
static void late_member(Sentinel *s, Group *g, pid_t pid)
{
        if (s->c->action == HF_ACTION_ALERT || pid <= 0)
                return;
        for (size_t i = 0; i < g->cont.n_pids; i++)
                if (g->cont.pids[i] == pid)
                        return;
        size_t from = g->cont.n_pids;
        if (stop_group(s, g) == 0)
                return;
        if (s->c->action == HF_ACTION_KILL)
                hf_respond_kill(&g->cont, from);
        db_tx(s);
        record_members(s, g, from);
        log_warning("incident %lld: %zu process(es) joined the group after the verdict: %s",
                    (long long)g->incident, g->cont.n_pids - from, member_action(s));
}

static void evaluate(Sentinel *s, Group *g, const char *kind, pid_t pid)
{
        double now = hf_now_real(), sc = group_score(s, g, now);

        if (g->acted)
                return late_member(s, g, pid);
        if (sc >= s->c->threshold) {
                (void)snprintf(g->reason, sizeof(g->reason),
                               "%llu file(s) destroyed, %llu replaced by encrypted copies, %llu "
                               "extension-changing rename(s), %llu delete(s) of files it did not "
                               "create, in %zu folder(s)%s (score %.1f)",
                               (unsigned long long)g->destroyed, (unsigned long long)g->replaces,
                               (unsigned long long)g->renames, (unsigned long long)g->deletes,
                               g->n_dirs, g->note_counted ? ", ransom-note pattern" : "", sc);
                contain(s, g, kind, sc);
        } else if (sc >= s->c->alert_threshold && !g->alerted) {
                char msg[512];
                g->alerted = true;
                (void)snprintf(msg, sizeof(msg),
                               "suspicious: %s %d: %llu destroyed, %llu renamed, %llu deleted "
                               "(score %.1f of %.1f)",
                               g->session ? "session" : "process", g->key,
                               (unsigned long long)g->destroyed, (unsigned long long)g->renames,
                               (unsigned long long)g->deletes, sc, s->c->threshold);
                log_warning("%s", msg);
                alert(s, "warning", g, "suspicious", msg, sc);
        }
}

static void immediate(Sentinel *s, pid_t pid, const char *kind, const char *why, const char *path,
                      double t)
{
        HfProcInfo info;
        if (hf_procs_get(s->procs, pid, &info) < 0) {
                memset(&info, 0, sizeof(info));
                info.pid = pid;
        }
        Group *g = group_for(s, &info);
        group_add_pid(g, pid);
        HfEvent ev = { .time = t, .pid = pid, .fd = -1 };
        (void)snprintf(ev.path, sizeof(ev.path), "%s", path);
        GEvent *e = group_event(s, g, &ev, "decoy");
        group_event_done(s, g, e);
        if (g->acted)
                return evaluate(s, g, kind, pid);
        if (!g->first_destructive)
                g->first_destructive = t;
        add_signal(g, W_DECOY, t);
        (void)snprintf(g->reason, sizeof(g->reason), "%s: %s", why, path);
        contain(s, g, kind, group_score(s, g, hf_now_real()));
}

/* ---- the event stream ---- */

static bool in_roots(Sentinel *s, const char *path, const Root **ret)
{
        for (size_t i = 0; i < s->n_roots; i++) {
                const char *r = s->roots[i].path;
                size_t n = strlen(r);
                if (strcmp(r, "/") == 0 ||
                    (strncmp(path, r, n) == 0 && (path[n] == '/' || path[n] == 0))) {
                        *ret = &s->roots[i];
                        return true;
                }
        }
        return false;
}

static bool in_store_path(const char *path)
{
        return strstr(path, "/" HF_STORE_DIR "/") != NULL ||
               (strlen(path) >= strlen(HF_STORE_DIR) + 1 &&
                strcmp(path + strlen(path) - strlen(HF_STORE_DIR) - 1, "/" HF_STORE_DIR) == 0);
}

static bool excluded(Sentinel *s, const char *path)
{
        for (size_t i = 0; i < s->c->n_exclude; i++) {
                size_t n = strlen(s->c->exclude[i]);
                if (strncmp(path, s->c->exclude[i], n) == 0 && (path[n] == '/' || !path[n]))
                        return true;
        }
        return false;
}

/*
 * The analyser's view of a file whose pre-image is a run of ranges: a memfd of the old size
 * holding, in the spans the analyser samples, the file as it is now with every kept range put
 * back (the earliest last, so it wins). -1 on failure (the change is then judged alone).
 */
static int range_pre(Sentinel *s, const FileRec *f, int post, uint64_t post_size)
{
        uint64_t off[HF_SAMPLE_SPANS], len[HF_SAMPLE_SPANS];
        size_t spans = hf_analyze_spans(f->pre_size, off, len);
        sqlite3_stmt *q = NULL;
        _cleanup_close_ int fd = memfd_create("holdfast-pre", MFD_CLOEXEC);
        _cleanup_close_ int log = -1;
        char logpath[HF_PATH_MAX] = "";

        if (fd < 0 || ftruncate(fd, (off_t)f->pre_size) < 0)
                return -1;
        for (size_t i = 0; i < spans; i++)
                if (off[i] < post_size &&
                    hf_copy_span(post, off[i], MIN(len[i], post_size - off[i]), fd, off[i], NULL) <
                            0)
                        return -1;
        if (sqlite3_prepare_v2(hf_db_handle(s->db),
                               "SELECT range_off, range_len, log_off, store_root, store_path"
                               " FROM preimages WHERE dev = ? AND ino = ? AND method = 'range'"
                               " AND time >= ? AND store_path IS NOT NULL AND released IS NULL"
                               " ORDER BY time DESC, id DESC",
                               -1, &q, NULL) != SQLITE_OK)
                return -1;
        sqlite3_bind_int64(q, 1, (int64_t)f->dev);
        sqlite3_bind_int64(q, 2, (int64_t)f->ino);
        sqlite3_bind_double(q, 3, f->pre_time);
        while (sqlite3_step(q) == SQLITE_ROW) {
                uint64_t ro = (uint64_t)sqlite3_column_int64(q, 0),
                         rl = (uint64_t)sqlite3_column_int64(q, 1),
                         lo = (uint64_t)sqlite3_column_int64(q, 2);
                const char *root = (const char *)sqlite3_column_text(q, 3),
                           *rel = (const char *)sqlite3_column_text(q, 4);
                char p[HF_PATH_MAX];
                if (!root || !rel || strstr(rel, ".."))
                        continue;
                (void)snprintf(p, sizeof(p), "%s/" HF_STORE_DIR "/%s",
                               strcmp(root, "/") ? root : "", rel);
                if (strcmp(p, logpath) != 0) {
                        closep(&log);
                        log = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                        (void)snprintf(logpath, sizeof(logpath), "%s", p);
                }
                if (log < 0)
                        continue;
                for (size_t i = 0; i < spans; i++) {
                        uint64_t a = MAX(ro, off[i]), b = MIN(ro + rl, off[i] + len[i]);
                        if (a < b)
                                (void)hf_copy_span(log, lo + (a - ro), b - a, fd, a, NULL);
                }
        }
        sqlite3_finalize(q);
        return TAKE_FD(fd);
}

/*
 * Files written to and not yet closed, by (dev, ino), or by handle for an event whose file was
 * gone when it was read (no inode number). The first write seen keeps the file open (up to
 * DIRTY_FDS of them): a file overwritten, deleted and only then closed, as shred does, can
 * then still be read when its CLOSE_WRITE comes.
 */
static size_t dirty_find(Sentinel *s, const HfEvent *ev)
{
        for (size_t i = 0; i < s->n_dirty; i++) {
                const struct file_handle *h = (const struct file_handle *)s->dirty[i].fh;
                if (ev->ino ? s->dirty[i].ino == ev->ino && s->dirty[i].dev == ev->dev
                            : ev->fh && s->dirty[i].fs == ev->fs &&
                                      h->handle_type == ev->fh->handle_type &&
                                      h->handle_bytes == ev->fh->handle_bytes &&
                                      memcmp(h->f_handle, ev->fh->f_handle, h->handle_bytes) == 0)
                        return i;
        }
        return s->n_dirty;
}

static void dirty_drop(Sentinel *s, size_t i)
{
        if (s->dirty[i].fd >= 0) {
                close(s->dirty[i].fd);
                s->n_dirty_fds--;
        }
        s->dirty[i] = s->dirty[--s->n_dirty];
}

static void dirty_add(Sentinel *s, const HfEvent *ev)
{
        size_t i = dirty_find(s, ev);

        if (i == s->n_dirty) {
                if (s->n_dirty == DIRTY)
                        return;
                s->n_dirty++;
                s->dirty[i].dev = ev->dev;
                s->dirty[i].ino = ev->ino;
                s->dirty[i].fs = ev->fs;
                memcpy(s->dirty[i].fh, ev->fh, sizeof(struct file_handle) + ev->fh->handle_bytes);
                s->dirty[i].since = hf_now_mono();
                (void)snprintf(s->dirty[i].path, sizeof(s->dirty[i].path), "%s", ev->path);
                s->dirty[i].fd = -1;
                /* The watcher's O_PATH fd, kept: it holds the inode, and analyze_file() reopens
                 * it for reading. */
                if (s->n_dirty_fds < DIRTY_FDS && ev->fd >= 0) {
                        s->dirty[i].fd = fcntl(ev->fd, F_DUPFD_CLOEXEC, 3);
                        if (s->dirty[i].fd >= 0)
                                s->n_dirty_fds++;
                }
        }
        s->dirty[i].pid = ev->pid;
}

/*
 * Looks at a written file's content against its pre-image. held: the file kept open since its
 * first write (dirty_add, O_PATH), or -1: it is then opened by its handle, which a file
 * deleted and closed since may no longer allow (ESTALE in a btrfs subvolume).
 */
static void analyze_file(Sentinel *s, Group *g, int fs, struct file_handle *fh, uint64_t dev,
                         uint64_t ino, pid_t pid, const char *path, double t, int held)
{
        HfEvent fake = { .kind = HF_EV_CLOSE_WRITE,
                         .fs = fs,
                         .fd = -1,
                         .fh = fh,
                         .pid = pid,
                         .time = t,
                         .dev = dev,
                         .ino = ino };
        _cleanup_close_ int post = held >= 0 ? hf_fd_reopen(held, O_RDONLY) : -EBADF;
        _cleanup_close_ int pre = -1;
        HfFeatures feat;
        struct stat st;
        char fid[HF_FID_MAX];

        if (post < 0)
                post = hf_watch_open(s->watch, &fake, O_RDONLY | O_NOFOLLOW);
        if (post < 0 || fstat(post, &st) < 0 || !S_ISREG(st.st_mode))
                return;
        /* The event may carry no inode number (the file was deleted before it was read: the
         * kernel merged CLOSE_WRITE with the DELETE): the open file has it. */
        ino = (uint64_t)st.st_ino;
        hf_fid_hex(fh, fid, sizeof(fid));
        FileRec *f = file_get(s, dev, ino, fid_hash(fid), false);
        if (hf_guard_is_decoy(s->guard, dev, ino) || hf_decoy_name(basename_of(path)))
                return;
        Name *created = name_find(g, hash_str(path), 0);
        bool own = (created && (created->kind == 'c' || created->kind == 'r')) ||
                   created_has(g, path);
        if (f && f->pre_store)
                pre = open(f->pre_store, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        else if (f && f->pre_ranges)
                pre = range_pre(s, f, post, (uint64_t)st.st_size);
        /* Too small to say anything about its bytes, and nothing to compare with: skip the
         * round trip (an event storm of tiny files stays cheap). */
        if (pre < 0 && st.st_size < 256 && (own || s->guard))
                return;
        pid_t before = hf_analyzer_pid(s->analyzer);
        int r = hf_analyzer_run(s->analyzer, pre, post, &feat);
        if (hf_analyzer_pid(s->analyzer) != before && hf_analyzer_pid(s->analyzer) > 0)
                hf_guard_allow_pid(s->guard, hf_analyzer_pid(s->analyzer));
        s->analyses++;
        if (r < 0)
                return;
        HfFileVerdict v = hf_file_verdict(&feat);
        log_debug("analysis %s (pid %d, pre-image %s): %llu of %llu bytes changed, entropy %.2f "
                  "(before %.2f), base64 %.2f, %s -> %s: %s",
                  path, (int)pid, pre >= 0 ? "yes" : "no", (unsigned long long)feat.changed,
                  (unsigned long long)feat.compared, feat.entropy_changed, feat.entropy_before,
                  feat.b64_changed, hf_magic_name(feat.magic_before),
                  hf_magic_name(feat.magic_after), hf_file_verdict_name(v));
        /* Without a pre-image (notify mode, files changed before start) a random-looking
         * result in a file this group did not create is an overwrite of someone's data. */
        if (v == HF_FILE_NEW_RANDOM && !own && pre < 0)
                v = HF_FILE_ENCRYPTED;
        /* Likewise an existing file left empty (notify mode has no sizes before). */
        if (v == HF_FILE_BENIGN && !own && pre < 0 && !s->guard && feat.size_after == 0)
                v = HF_FILE_TRUNCATED;
        HfEvent ev = { .time = t, .pid = pid, .dev = dev, .ino = ino, .fh = fh, .fd = -1 };
        (void)snprintf(ev.path, sizeof(ev.path), "%s", path);
        GEvent *e = group_event(s, g, &ev,
                                own                                              ? "create"
                                : (feat.size_after == 0 && feat.size_before > 0) ? "truncate"
                                                                                 : "modify");
        e->size_after = (int64_t)feat.size_after;
        e->size_before = pre >= 0 ? (int64_t)feat.size_before : -1;
        e->preimage_id = f ? f->preimage_id : 0;
        e->verdict = v;
        e->has_verdict = true;
        group_event_done(s, g, e);
        if (!own)
                g->files_touched++;
        if (f) {
                f->verdict = v;
                f->analyzed = true;
                if (f->charged) {
                        hf_guard_judged(s->guard, f->charged);
                        f->charged = 0;
                }
        }
        if (v == HF_FILE_NEW_RANDOM) {
                name_add(g, path, 'r', t);
                /* The original it replaces may already be gone. */
                for (size_t i = 0; i < GROUP_NAMES; i++) {
                        Name *n = &g->names[i];
                        if (n->kind == 'd' && n->path && same_stem(n->path, path)) {
                                n->kind = 'x';
                                g->replaces++;
                                destroyed(s, g, n->path, t, n->time);
                                break;
                        }
                }
        } else if (hf_file_verdict_destructive(v) && !own) {
                destroyed(s, g, path, t, f && f->pre_time ? f->pre_time : t);
        }
}

static void drain_guard(Sentinel *s);

/* The contained group a pid was a member of, NULL when none. */
static Group *acted_group_of(Sentinel *s, pid_t pid)
{
        for (size_t i = 0; i < MAX_GROUPS; i++) {
                Group *g = &s->groups[i];
                if (!g->used || !g->acted)
                        continue;
                for (size_t k = 0; k < g->n_pids; k++)
                        if (g->pids[k] == pid)
                                return g;
                for (size_t k = 0; k < g->cont.n_pids; k++)
                        if (g->cont.pids[k] == pid)
                                return g;
        }
        return NULL;
}

static void on_event(const HfEvent *ev, void *ud)
{
        Sentinel *s = ud;
        const Root *root = NULL;

        /* Pre-images recorded while this batch was read belong to changes in it. */
        drain_guard(s);
        s->events++;
        if (ev->kind == HF_EV_OVERFLOW) {
                s->overflows++;
                log_warning("event queue overflow (%llu so far): events were lost under a burst; "
                            "rescanning",
                            (unsigned long long)s->overflows);
                s->rescan = true;
                return;
        }
        if (!in_roots(s, ev->path, &root))
                return;
        if (ev->pid == getpid() || ev->pid == hf_analyzer_pid(s->analyzer))
                return;
        if (in_store_path(ev->path) || (ev->new_path[0] && in_store_path(ev->new_path))) {
                if (ev->kind == HF_EV_DELETE || ev->kind == HF_EV_RENAME)
                        immediate(s, ev->pid, "self-protection",
                                  "deleted or renamed a file in the shadow store", ev->path,
                                  ev->time);
                return;
        }
        const char *bn = basename_of(ev->path);
        if (hf_decoy_name(bn) && !ev->ondir && ev->kind == HF_EV_DELETE) {
                /* Judged a moment later: removing the whole folder (rm -rf build/) takes its
                 * decoy along and is no verdict; deleting the decoy out of a folder that
                 * stays is. */
                if (s->n_decoy_del < ELEMENTSOF(s->decoy_del)) {
                        s->decoy_del[s->n_decoy_del].pid = ev->pid;
                        s->decoy_del[s->n_decoy_del].time = ev->time;
                        s->decoy_del[s->n_decoy_del].since = hf_now_mono();
                        (void)snprintf(s->decoy_del[s->n_decoy_del].path, HF_PATH_MAX, "%s",
                                       ev->path);
                        s->n_decoy_del++;
                }
                return;
        }
        if (hf_decoy_name(bn) && !ev->ondir &&
            (ev->kind == HF_EV_RENAME || ev->kind == HF_EV_MODIFY)) {
                immediate(s, ev->pid, "decoy",
                          ev->kind == HF_EV_DELETE   ? "deleted a decoy file"
                          : ev->kind == HF_EV_RENAME ? "renamed a decoy file"
                                                     : "wrote to a decoy file",
                          ev->path, ev->time);
                return;
        }
        if (excluded(s, ev->path) || (ev->ondir && ev->kind != HF_EV_RENAME &&
                                      ev->kind != HF_EV_CREATE && ev->kind != HF_EV_DELETE))
                return;
        HfProcInfo info;
        Group *g = NULL;
        if (hf_procs_get(s->procs, ev->pid, &info) < 0) {
                memset(&info, 0, sizeof(info));
                info.pid = ev->pid;
                info.gone = true;
                /* Exited before we saw it: a member of a contained group (killed with it)
                 * still belongs to that group's incident. */
                g = acted_group_of(s, ev->pid);
        }
        if (info.trusted)
                return;
        if (!g)
                g = group_for(s, &info);
        group_add_pid(g, ev->pid);
        g->last_event = ev->time;
        if (ev->ondir) {
                /* A folder renamed, made or removed: no score, but recover follows the files
                 * below a renamed one, removes the folders an attacker made and makes again
                 * those it removed. */
                const char *kind = ev->kind == HF_EV_RENAME   ? "rename"
                                   : ev->kind == HF_EV_CREATE ? "create"
                                                              : "delete";
                group_event_done(s, g, group_event(s, g, ev, kind));
                return evaluate(s, g, "ransomware", ev->pid);
        }

        switch (ev->kind) {
        case HF_EV_CREATE:
                name_add(g, ev->path, 'c', ev->time);
                created_add(g, ev->path);
                group_event_done(s, g, group_event(s, g, ev, "create"));
                note_check(g, ev->path, ev->time);
                break;
        case HF_EV_MODIFY:
                if (ev->ino && ev->fh && ev->fh->handle_bytes <= 120)
                        dirty_add(s, ev);
                return;
        case HF_EV_CLOSE_WRITE: {
                size_t i = dirty_find(s, ev);
                _cleanup_close_ int held = -1;
                if (i < s->n_dirty) {
                        held = TAKE_FD(s->dirty[i].fd);
                        if (held >= 0)
                                s->n_dirty_fds--;
                        dirty_drop(s, i);
                }
                if (ev->fh)
                        analyze_file(s, g, ev->fs, ev->fh, ev->dev, ev->ino, ev->pid, ev->path,
                                     ev->time, held);
                break;
        }
        case HF_EV_DELETE: {
                Name *n = name_find(g, hash_str(ev->path), 0);
                if ((n && (n->kind == 'c' || n->kind == 'r')) || created_has(g, ev->path)) {
                        if (n)
                                n->kind = 0; /* its own temporary file */
                        break;
                }
                g->deletes++;
                g->files_touched++;
                GEvent *e = group_event(s, g, ev, "delete");
                if (!e->ino && e->fid) {
                        /* The inode is gone by now; its handle names it. */
                        FileRec *f = file_get(s, ev->dev, 0, fid_hash(e->fid), false);
                        if (f)
                                e->ino = f->ino;
                }
                group_event_done(s, g, e);
                add_alone(g, 0.5, ev->time);
                /* Replaced by an encrypted copy written before? */
                bool replaced = false;
                for (size_t i = 0; i < GROUP_NAMES && !replaced; i++) {
                        Name *m = &g->names[i];
                        if (m->kind == 'r' && m->path && same_stem(ev->path, m->path)) {
                                m->kind = 'c';
                                replaced = true;
                        }
                }
                if (replaced) {
                        g->replaces++;
                        destroyed(s, g, ev->path, ev->time, ev->time);
                } else
                        name_add(g, ev->path, 'd', ev->time);
                break;
        }
        case HF_EV_RENAME: {
                Name *n = name_find(g, hash_str(ev->path), 0);
                group_event_done(s, g, group_event(s, g, ev, "rename"));
                if ((n && (n->kind == 'c' || n->kind == 'r')) || created_has(g, ev->path)) {
                        name_add(g, ev->new_path, n ? (char)n->kind : 'c', ev->time);
                        created_add(g, ev->new_path);
                        break;
                }
                g->files_touched++;
                if (strcmp(ext_of(ev->path), ext_of(ev->new_path)) != 0) {
                        g->renames++;
                        add_alone(g, W_RENAME, ev->time);
                        char fid[HF_FID_MAX];
                        hf_fid_hex(ev->fh, fid, sizeof(fid));
                        FileRec *f = ev->ino ? file_get(s, ev->dev, ev->ino, fid_hash(fid), false)
                                             : NULL;
                        if (f && f->analyzed && hf_file_verdict_destructive(f->verdict))
                                add_signal(g, 1, ev->time);
                }
                break;
        }
        default:
                break;
        }
        evaluate(s, g, "ransomware", ev->pid);
}

static void check_decoy_deletes(Sentinel *s)
{
        double now = hf_now_mono();

        for (size_t i = 0; i < s->n_decoy_del;) {
                if (now - s->decoy_del[i].since < 0.3) {
                        i++;
                        continue;
                }
                char dir[HF_PATH_MAX];
                struct stat st;
                (void)snprintf(dir, sizeof(dir), "%s", s->decoy_del[i].path);
                char *slash = strrchr(dir, '/');
                if (slash)
                        *slash = 0;
                if (stat(dir, &st) == 0)
                        immediate(s, s->decoy_del[i].pid, "decoy", "deleted a decoy file",
                                  s->decoy_del[i].path, s->decoy_del[i].time);
                else
                        log_notice("decoy %s went away with its folder", s->decoy_del[i].path);
                s->decoy_del[i] = s->decoy_del[--s->n_decoy_del];
        }
}

static void check_dirty(Sentinel *s)
{
        double now = hf_now_mono();

        for (size_t i = 0; i < s->n_dirty;) {
                /* Written to and not closed for a while: look anyway (an attacker may keep
                 * its fds open); then again every second while it stays dirty, for 30 s. */
                if (now - s->dirty[i].since > 30) {
                        dirty_drop(s, i);
                        continue;
                }
                if (now < s->dirty[i].since + 0.3 || (s->dirty[i].since < 0)) {
                        i++;
                        continue;
                }
                HfProcInfo info;
                const Root *root;
                if (hf_procs_get(s->procs, s->dirty[i].pid, &info) == 0 && !info.trusted &&
                    in_roots(s, s->dirty[i].path, &root)) {
                        Group *g = group_for(s, &info);
                        group_add_pid(g, s->dirty[i].pid);
                        analyze_file(s, g, s->dirty[i].fs, (struct file_handle *)s->dirty[i].fh,
                                     s->dirty[i].dev, s->dirty[i].ino, s->dirty[i].pid,
                                     s->dirty[i].path, hf_now_real(), s->dirty[i].fd);
                        evaluate(s, g, "ransomware", s->dirty[i].pid);
                }
                s->dirty[i].since += 1.0;
                i++;
        }
}

/* The counters, for the periodic log line and the last line. */
static void stats_text(Sentinel *s, char *out, size_t n)
{
        HfGuardStats st = { 0 };

        if (s->guard)
                hf_guard_stats(s->guard, &st);
        (void)snprintf(out, n,
                       "%llu events, %llu analyses, %llu incidents, %llu overflows; guard: %llu "
                       "permission events, %llu pre-images, %llu ranges kept, %llu bytes copied, "
                       "%llu denied, %llu failures",
                       (unsigned long long)s->events, (unsigned long long)s->analyses,
                       (unsigned long long)s->incidents, (unsigned long long)s->overflows,
                       (unsigned long long)st.events, (unsigned long long)st.captures,
                       (unsigned long long)st.ranges, (unsigned long long)st.capture_bytes,
                       (unsigned long long)st.denied, (unsigned long long)st.failures);
}

static void drain_guard(Sentinel *s)
{
        HfGuardMsg *m;

        if (!s->guard)
                return;
        while ((m = hf_guard_pop(s->guard))) {
                if (m->type == HF_GMSG_PREIMAGE) {
                        int64_t id = 0;
                        db_tx(s);
                        (void)hf_db_add_preimage(s->db, &m->pi, &id);
                        if (strcmp(m->pi.method, "link") == 0) {
                                free(m); /* a pin: no content to compare against */
                                continue;
                        }
                        FileRec *f = file_get(s, m->pi.dev, m->pi.ino, fid_hash(m->pi.fid), true);
                        if (m->pi.cont && f->pre_ranges && f->preimage_id > 0) {
                                free(m); /* changes still compare with the run's start */
                                continue;
                        }
                        f->pre_ranges = strcmp(m->pi.method, "range") == 0;
                        f->preimage_id = id;
                        f->pre_time = m->pi.time;
                        f->pre_size = m->pi.size;
                        f->used = hf_now_mono();
                        f->analyzed = false;
                        if (f->charged)
                                hf_guard_judged(s->guard, f->charged);
                        f->charged = m->pi.group;
                        free(f->pre_store);
                        f->pre_store = NULL;
                        if (m->pi.store_path[0] && !f->pre_ranges) {
                                char p[HF_PATH_MAX];
                                (void)snprintf(p, sizeof(p), "%s/" HF_STORE_DIR "/%s",
                                               strcmp(m->pi.store_root, "/") ? m->pi.store_root
                                                                             : "",
                                               m->pi.store_path);
                                f->pre_store = strdup(p);
                        }
                } else if (m->type == HF_GMSG_DECOY) {
                        immediate(s, m->pi.pid, "decoy", "write to a decoy file (denied)",
                                  m->pi.path, m->pi.time);
                } else {
                        immediate(s, m->pi.pid, "self-protection",
                                  "write into the sentinel's own files (denied)", m->pi.path,
                                  m->pi.time);
                }
                free(m);
        }
}

static void drain_rawdisk(Sentinel *s)
{
        HfRawDenial d;
        static pid_t last_pid;
        static double last_time;

        while (s->raw && hf_rawdisk_pop(s->raw, &d) > 0) {
                double now = hf_now_real();
                /* One incident per process and burst (dd retries nothing, mkfs opens twice). */
                if (d.pid == last_pid && now - last_time < 5)
                        continue;
                last_pid = d.pid;
                last_time = now;
                HfProcInfo info;
                if (d.pid <= 0 || hf_procs_get(s->procs, d.pid, &info) < 0) {
                        memset(&info, 0, sizeof(info));
                        info.pid = d.pid;
                        info.gone = true;
                }
                char reason[600];
                (void)snprintf(reason, sizeof(reason),
                               "write-open of block device %u:%u denied (%s, pid %d)", d.major,
                               d.minor, info.exe[0] ? info.exe : "?", d.pid);
                db_flush(s);
                (void)hf_db_begin(s->db);
                HfDbIncident inc = { .kind = "raw-disk",
                                     .state = "denied",
                                     .action = "deny",
                                     .reason = reason,
                                     .group_kind = "process",
                                     .group_key = "",
                                     .score = 0,
                                     .first_event = now,
                                     .detected = now,
                                     .contained = now,
                                     .files_touched = 0 };
                char key[32];
                (void)snprintf(key, sizeof(key), "%d", d.pid);
                inc.group_key = key;
                int64_t id = 0;
                (void)hf_db_add_incident(s->db, &inc, &id);
                char sha[65] = "", ev[HF_PATH_MAX] = "";
                if (!info.gone)
                        (void)hf_respond_evidence(s->c->state_dir, d.pid, sha, ev, sizeof(ev));
                (void)hf_db_add_process(s->db, id, &info, sha, ev, "denied", 0);
                char dev[64];
                (void)snprintf(dev, sizeof(dev), "/dev/block/%u:%u", d.major, d.minor);
                HfDbFileEvent fe = { .time = now,
                                     .pid = d.pid,
                                     .kind = "raw-write",
                                     .path = dev,
                                     .size_before = -1,
                                     .size_after = -1 };
                (void)hf_db_add_file_event(s->db, id, &fe);
                (void)hf_db_commit(s->db);
                s->incidents++;
                char msg[800];
                (void)snprintf(msg, sizeof(msg), "incident %lld: %s", (long long)id, reason);
                log_error("%s", msg);
                alert(s, "alert", NULL, "raw-disk", msg, 0);
        }
}

/* ---- housekeeping ---- */

/*
 * About once a minute (and at start): retention of the shadow stores (retention.c; only the
 * sentinel deletes there, a deletion by anyone else is a self-protection verdict), events
 * spilled by groups that never became an incident, and the cgroups of killed groups.
 */
static void housekeeping(Sentinel *s, bool force)
{
        double now = hf_now_mono();

        if (force || now - s->last_release > 5) {
                s->last_release = now;
                for (size_t i = 0; i < MAX_GROUPS; i++) {
                        Group *g = &s->groups[i];
                        if (g->used && g->acted && g->cont.cgroup[0] &&
                            s->c->action == HF_ACTION_KILL)
                                (void)hf_respond_release(&g->cont);
                }
        }
        if (!force && now - s->last_prune < 60)
                return;
        s->last_prune = now;
        db_flush(s);
        HfRetention pol;
        HfPruneStats st;
        hf_retention_defaults(&pol);
        pol.window = s->c->retention;
        pol.max_share = s->c->shadow_share;
        int r = hf_shadow_prune(hf_db_handle(s->db), &pol, hf_now_real(), &st);
        if (r < 0)
                log_warning_errno(r, "retention of the shadow store failed: %m");
        else if (st.released || st.pins_released)
                log_info("retention: %llu pre-image(s) released (%llu bytes: %llu past the window, "
                         "%llu in the vault, %llu over budget), %llu pin(s); %llu kept (%llu "
                         "bytes)",
                         (unsigned long long)st.released, (unsigned long long)st.released_bytes,
                         (unsigned long long)st.by_window, (unsigned long long)st.by_vault,
                         (unsigned long long)st.by_budget, (unsigned long long)st.pins_released,
                         (unsigned long long)st.kept, (unsigned long long)st.kept_bytes);
        if (r >= 0 && st.over_budget) {
                char msg[700];
                (void)snprintf(msg, sizeof(msg),
                               "shadow store %s/" HF_STORE_DIR " is over its budget with "
                               "pre-images of open incidents only: recover or close them",
                               st.over_root);
                alert(s, "warning", NULL, "shadow-store-full", msg, 0);
        }
        /* Events a group spilled before a verdict that never came. */
        double keep = MAX(3600.0, 2.0 * s->c->window);
        db_tx(s);
        (void)hf_db_expire_group_events(s->db, hf_now_real() - keep);
        db_flush(s);
}

/* ---- allow-disk control socket ---- */

/* Writes an audit incident (allow-disk): closed at once, the process recorded. */
static void audit(Sentinel *s, const char *kind, const char *reason, const HfProcInfo *info)
{
        double now = hf_now_real();
        char key[32];
        int64_t id = 0;

        db_flush(s);
        db_tx(s);
        (void)snprintf(key, sizeof(key), "%d", (int)info->pid);
        HfDbIncident inc = { .kind = kind,
                             .state = "closed",
                             .action = "allow",
                             .reason = reason,
                             .group_kind = "process",
                             .group_key = key,
                             .first_event = now,
                             .detected = now,
                             .contained = -1 };
        (void)hf_db_add_incident(s->db, &inc, &id);
        (void)hf_db_add_process(s->db, id, info, NULL, NULL, "allowed", 0);
        db_flush(s);
        log_notice("audit: %s", reason);
        alert(s, "notice", NULL, kind, reason, 0);
}

static void control_accept(Sentinel *s)
{
        _cleanup_close_ int fd = accept4(s->control_fd, NULL, NULL, SOCK_CLOEXEC);
        struct ucred cr;
        socklen_t len = sizeof(cr);
        char req[64] = "";

        if (fd < 0)
                return;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || cr.uid != 0) {
                (void)!write(fd, "denied: root only\n", 18);
                return;
        }
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 1000) <= 0 || read(fd, req, sizeof(req) - 1) <= 0 ||
            strncmp(req, "allow-disk\n", 11) != 0) {
                (void)!write(fd, "denied: bad request\n", 20);
                return;
        }
        if (!s->raw) {
                (void)!write(fd, "ok: raw-disk guard is off\n", 26);
                return;
        }
        char procs[HF_PATH_MAX], pid[32];
        (void)snprintf(procs, sizeof(procs), "%s/cgroup.procs", hf_rawdisk_allow_path(s->raw));
        (void)snprintf(pid, sizeof(pid), "%d\n", (int)cr.pid);
        _cleanup_close_ int cg = open(procs, O_WRONLY | O_CLOEXEC);
        if (cg < 0 || write(cg, pid, strlen(pid)) < 0) {
                (void)!write(fd, "denied: cannot move the process\n", 32);
                return;
        }
        HfProcInfo info;
        if (hf_procs_get(s->procs, cr.pid, &info) < 0) {
                memset(&info, 0, sizeof(info));
                info.pid = cr.pid;
        }
        char reason[700];
        (void)snprintf(reason, sizeof(reason), "raw-disk writes allowed for %s (pid %d, uid %u)",
                       info.cmdline[0] ? info.cmdline : "?", (int)cr.pid, cr.uid);
        audit(s, "allow-disk", reason, &info);
        (void)!write(fd, "ok\n", 3);
}

/*
 * The address of the control socket in state_dir. sun_path holds 107 bytes; a longer state
 * path is reached through an O_PATH descriptor of the folder (/proc/self/fd/N/control.sock),
 * which *ret_dirfd holds until bind() or connect() is done (-1 when the path fits).
 */
static int control_addr(const char *state_dir, struct sockaddr_un *sa, int *ret_dirfd)
{
        int n;

        *ret_dirfd = -1;
        *sa = (struct sockaddr_un){ .sun_family = AF_UNIX };
        n = snprintf(sa->sun_path, sizeof(sa->sun_path), "%s/control.sock", state_dir);
        if (n >= 0 && (size_t)n < sizeof(sa->sun_path))
                return 0;
        *ret_dirfd = open(state_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (*ret_dirfd < 0)
                return -errno;
        (void)snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/control.sock",
                       *ret_dirfd);
        return 0;
}

static int control_open(Sentinel *s)
{
        struct sockaddr_un sa;
        _cleanup_close_ int dfd = -1;
        int r;

        (void)snprintf(s->control_path, sizeof(s->control_path), "%s/control.sock",
                       s->c->state_dir);
        r = control_addr(s->c->state_dir, &sa, &dfd);
        if (r < 0)
                return r;
        (void)unlink(s->control_path);
        s->control_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (s->control_fd < 0)
                return -errno;
        if (bind(s->control_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
            listen(s->control_fd, 8) < 0)
                return -errno;
        (void)chmod(s->control_path, 0600);
        return 0;
}

int hf_allow_disk_exec(const char *state_dir, char **argv)
{
        struct sockaddr_un sa;
        char reply[128] = "";
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        _cleanup_close_ int dfd = -1;

        if (fd < 0)
                return log_error_errno(errno, "cannot make a socket: %m");
        if (control_addr(state_dir, &sa, &dfd) < 0 ||
            connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                log_notice("no sentinel answers at %s/control.sock: running %s without asking",
                           state_dir, argv[0]);
        } else {
                if (write(fd, "allow-disk\n", 11) != 11)
                        return -EIO;
                ssize_t n = read(fd, reply, sizeof(reply) - 1);
                if (n <= 0)
                        return log_error_errno(EIO, "the sentinel did not answer");
                reply[n] = 0;
                if (strncmp(reply, "ok", 2) != 0)
                        return log_error_errno(EPERM, "the sentinel refused: %s", reply);
                log_notice("raw-disk writes allowed for %s (recorded as an audit incident)",
                           argv[0]);
        }
        execvp(argv[0], argv);
        return log_error_errno(errno, "%s: cannot run: %m", argv[0]);
}

/* ---- start-up ---- */

/* How the mode line says a filesystem's files are kept before their first change. */
static const char *capture_name(const Sentinel *s, bool pre, bool clones)
{
        if (!s->guard)
                return "detection only";
        if (!pre)
                return clones ? "open-perm, reflink" : "open-perm, copy";
        return clones ? "pre-content, reflink" : "pre-content, copy";
}

/* Mounted inside a protected tree: filesystems without files to keep (kernel interfaces,
 * memory-backed ones that a reboot empties, read-only images). */
static bool nothing_to_keep(const char *type)
{
        static const char *const v[] = {
                "autofs",     "binfmt_misc", "bpf",      "cgroup",   "cgroup2", "configfs",
                "debugfs",    "devpts",      "devtmpfs", "efivarfs", "fusectl", "hugetlbfs",
                "iso9660",    "mqueue",      "nsfs",     "proc",     "pstore",  "ramfs",
                "rpc_pipefs", "securityfs",  "squashfs", "sysfs",    "tmpfs",   "tracefs",
        };
        for (size_t i = 0; i < ELEMENTSOF(v); i++)
                if (strcmp(type, v[i]) == 0)
                        return true;
        return false;
}

typedef struct Inside {
        Sentinel *s;
        HfBuf *report;
        dev_t outer;
} Inside;

/* Whether mount m was met before; marks it as still mounted if so. */
static bool mounted_before(Sentinel *s, const HfMountEntry *m)
{
        for (size_t i = 0; i < s->n_mounted; i++)
                if (s->mounted[i].id == m->id && s->mounted[i].dev == m->dev &&
                    strcmp(s->mounted[i].path, m->path) == 0) {
                        s->mounted[i].live = true;
                        return true;
                }
        return false;
}

static void remember_mount(Sentinel *s, const HfMountEntry *m)
{
        Mounted *nv = realloc(s->mounted, (s->n_mounted + 1) * sizeof(*nv));

        if (!nv)
                return;
        s->mounted = nv;
        nv[s->n_mounted] = (Mounted){
                .id = m->id, .dev = m->dev, .path = strdup(m->path), .live = true
        };
        if (nv[s->n_mounted].path)
                s->n_mounted++;
}

/*
 * A filesystem mounted inside a protected tree (a data disk at /srv/data) is a filesystem of
 * its own: marked and given a store of its own, or its files would go unwatched. One that
 * cannot be is named as unprotected; the sentinel still starts.
 */
static int add_inside(void *ud, const HfMountEntry *m)
{
        Inside *in = ud;
        Sentinel *s = in->s;
        const char *mnt = m->path, *type = m->type;
        bool pre = false, clones = false;
        struct statx sx;
        int r = 0;

        /* Its device as stat gives it (a btrfs subvolume's differs from the mountinfo's). */
        if (nothing_to_keep(type) || mounted_before(s, m) || hf_statx_cached(mnt, &sx) < 0)
                return 0;
        /* Skipped or not, a rescan passes it by from now on. */
        remember_mount(s, m);
        if (makedev(sx.stx_dev_major, sx.stx_dev_minor) == in->outer)
                return 0; /* the tree's own filesystem, mounted again (a bind mount) */
        if (strcmp(type, "overlay") == 0) {
                /* A container's root: its writes land in its upper directory, on a filesystem
                 * of its own (the tree's, often), and fanotify cannot mark the overlay. */
                (void)hf_buf_printf(in->report,
                                    "%s (overlay, mounted inside): its upper "
                                    "directory's filesystem only; ",
                                    mnt);
                return 0;
        }
        r = hf_watch_add_fs(s->watch, mnt);
        if (r < 0) {
                log_warning_errno(r,
                                  "%s (%s) is mounted inside a protected tree and is NOT "
                                  "protected: %m",
                                  mnt, type);
                (void)hf_buf_printf(in->report, "%s (%s, mounted inside): NOT protected; ", mnt,
                                    type);
                return 0;
        }
        if (s->guard) {
                r = hf_guard_add_fs(s->guard, mnt, &pre, &clones);
                if (r < 0) {
                        /* Watched all the same: detected and stopped, nothing kept. */
                        log_warning_errno(r,
                                          "%s (%s) is mounted inside a protected tree: no "
                                          "pre-images there, detection only: %m",
                                          mnt, type);
                        (void)hf_buf_printf(in->report,
                                            "%s (%s, mounted inside): detection only, no "
                                            "pre-images; ",
                                            mnt, type);
                        return 0;
                }
        }
        (void)hf_buf_printf(in->report, "%s (%s, mounted inside, store %s/" HF_STORE_DIR "): %s; ",
                            mnt, type, mnt, capture_name(s, pre, clones));
        return 0;
}

/* Protects the filesystems mounted below the tree root not met before (add_inside). */
static void add_mounts_below(Sentinel *s, const Root *root, HfBuf *report)
{
        Inside in = { .s = s, .report = report, .outer = root->dev };

        (void)hf_mounts_below(root->path, add_inside, &in);
}

/*
 * The mount table changed: a filesystem mounted inside a tree since start (a data disk
 * attached later) is marked and given a store as the ones found at start were, and named in a
 * line of its own. Entries of filesystems no longer mounted are forgotten.
 */
static void rescan_mounts(Sentinel *s)
{
        _cleanup_buf_ HfBuf report = HF_BUF_INIT(1 << 16);
        size_t kept = 0;

        for (size_t i = 0; i < s->n_mounted; i++)
                s->mounted[i].live = false;
        for (size_t i = 0; i < s->n_roots; i++)
                add_mounts_below(s, &s->roots[i], &report);
        for (size_t i = 0; i < s->n_mounted; i++) {
                if (s->mounted[i].live)
                        s->mounted[kept++] = s->mounted[i];
                else
                        free(s->mounted[i].path);
        }
        s->n_mounted = kept;
        if (report.len > 2) {
                report.len -= 2; /* the last "; " */
                printf("holdfast sentinel: mounted since start: %.*s\n", (int)report.len,
                       (const char *)report.data);
                fflush(stdout);
        }
}

static void add_decoy_cb(void *ud, uint64_t dev, uint64_t ino, const char *path)
{
        Sentinel *s = ud;
        char dir[HF_PATH_MAX];
        if (s->guard)
                hf_guard_add_decoy(s->guard, dev, ino);
        (void)snprintf(dir, sizeof(dir), "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) {
                *slash = 0;
                hf_watch_prime(s->watch, dir);
        }
        log_debug("decoy %s", path);
}

int hf_sentinel_run(const HfSentinelConfig *c)
{
        Sentinel *s = calloc(1, sizeof(*s));
        char why[512] = "", mode_line[4096];
        _cleanup_buf_ HfBuf report = HF_BUF_INIT(1 << 16);
        int r;

        if (!s)
                return log_oom();
        s->c = c;
        s->control_fd = -1;
        s->mounts_fd = -1;
        s->files = calloc(FILES, sizeof(FileRec));
        s->groups = calloc(MAX_GROUPS, sizeof(Group));
        if (!s->files || !s->groups) {
                r = log_oom();
                goto out;
        }
        (void)hf_proc_stat(getpid(), NULL, &s->self_sid, NULL);
        (void)snprintf(s->run, sizeof(s->run), "%.6f", hf_now_real());
        if (hf_cgroup2_root(s->cg_root, sizeof(s->cg_root)) < 0)
                s->cg_root[0] = 0;
        if (geteuid() != 0) {
                r = log_error_errno(EPERM, "the sentinel needs root (fanotify, BPF, kill)");
                goto out;
        }
        if (c->n_paths == 0) {
                r = log_error_errno(EINVAL, "no protected paths (config [protect] path = ...)");
                goto out;
        }
        r = hf_mkdir_p(c->state_dir, 0700);
        if (r < 0) {
                log_error_errno(r, "%s: cannot create: %m", c->state_dir);
                goto out;
        }
        r = hf_db_open(c->state_dir, true, &s->db);
        if (r < 0)
                goto out;
        if (c->alert_file) {
                char p[HF_PATH_MAX];
                if (c->alert_file[0] == '/')
                        (void)snprintf(p, sizeof(p), "%s", c->alert_file);
                else
                        (void)snprintf(p, sizeof(p), "%s/%s", c->state_dir, c->alert_file);
                s->alerts = fopen(p, "ae");
                if (!s->alerts)
                        log_warning_errno(errno, "%s: cannot open the alert file: %m", p);
        }
        if (c->syslog)
                openlog("holdfast-sentinel", LOG_PID, LOG_DAEMON);
        r = hf_procs_new(c, &s->procs);
        if (r < 0)
                goto out;

        HfMode want = c->mode;
        const char *env = getenv("HOLDFAST_SENTINEL_MODE");
        if (env && !strcmp(env, "open-perm"))
                want = HF_MODE_OPEN_PERM;
        else if (env && !strcmp(env, "notify"))
                want = HF_MODE_NOTIFY;
        else if (env && !strcmp(env, "pre-content"))
                want = HF_MODE_PRE_CONTENT;
        r = hf_guard_new(c, want, s->procs, &s->guard, &s->mode, why, sizeof(why));
        if (r < 0) {
                s->mode = HF_MODE_NOTIFY;
                log_warning("no pre-images: %s", why);
        }
        r = hf_watch_new(&s->watch, why, sizeof(why));
        if (r < 0) {
                log_error("%s", why);
                goto out;
        }
        r = hf_analyzer_new(&s->analyzer);
        if (r < 0) {
                log_error_errno(r, "cannot start the analysis child: %m");
                goto out;
        }
        if (s->guard)
                hf_guard_allow_pid(s->guard, hf_analyzer_pid(s->analyzer));

        /* Opened before the table is first read: a mount made after that is seen. */
        s->mounts_fd = open("/proc/self/mounts", O_RDONLY | O_CLOEXEC);
        if (s->mounts_fd < 0)
                log_warning_errno(errno,
                                  "/proc/self/mounts: %m; filesystems mounted inside the trees "
                                  "after start are not protected until a restart");
        struct utsname un;
        (void)uname(&un);
        (void)hf_buf_printf(&report, "kernel %s; ", un.release);
        for (size_t i = 0; i < c->n_paths && s->n_roots < ELEMENTSOF(s->roots); i++) {
                Root *rt = &s->roots[s->n_roots];
                char mnt[HF_PATH_MAX];
                struct statfs sf;
                struct stat st;
                if (statfs(c->paths[i], &sf) < 0) {
                        r = log_error_errno(errno, "%s: %m", c->paths[i]);
                        goto out;
                }
                if (stat(c->paths[i], &st) < 0) {
                        r = log_error_errno(errno, "%s: %m", c->paths[i]);
                        goto out;
                }
                (void)snprintf(rt->path, sizeof(rt->path), "%s", c->paths[i]);
                (void)snprintf(rt->fstype, sizeof(rt->fstype), "%s",
                               hf_fs_type_name((unsigned long)sf.f_type) ?: "other");
                rt->dev = st.st_dev;
                r = hf_mount_root(c->paths[i], mnt, sizeof(mnt));
                if (r < 0) {
                        log_error_errno(r, "%s: %m", c->paths[i]);
                        goto out;
                }
                /* Marked first: a filesystem that cannot be watched is refused before the
                 * guard makes its store there. */
                r = hf_watch_add_fs(s->watch, mnt);
                if (r < 0 && (unsigned long)sf.f_type == OVERLAYFS_SUPER_MAGIC) {
                        log_error("%s is on an overlay filesystem, which fanotify cannot watch "
                                  "as a whole (filesystem mark: %s); protect the overlay's upper "
                                  "directory instead (upperdir= in /proc/mounts): writes through "
                                  "the overlay are then detected and stopped, but only the vault "
                                  "keeps what they overwrite (the kernel gives no pre-content "
                                  "events for them)",
                                  c->paths[i], strerror(-r));
                        goto out;
                }
                if (r < 0) {
                        log_error_errno(r,
                                        "%s (%s): the kernel cannot report file events on this "
                                        "filesystem (fanotify filesystem mark: %m); protect "
                                        "trees on ext4, xfs or btrfs",
                                        c->paths[i], rt->fstype);
                        goto out;
                }
                if (s->guard) {
                        r = hf_guard_add_fs(s->guard, mnt, &rt->pre, &rt->clones);
                        if (r < 0)
                                goto out;
                }
                (void)hf_buf_printf(&report, "%s (%s, store %s/" HF_STORE_DIR "): %s; ", rt->path,
                                    rt->fstype, strcmp(mnt, "/") ? mnt : "",
                                    capture_name(s, rt->pre, rt->clones));
                s->n_roots++;
                add_mounts_below(s, rt, &report);
        }
        /* Answer permission events from now on: everything below touches the marked
         * filesystems (and would otherwise wait for itself). */
        if (s->guard) {
                r = hf_guard_start(s->guard);
                if (r < 0) {
                        log_error_errno(r, "cannot start the guard: %m");
                        goto out;
                }
        }
        if (c->raw_disk_guard) {
                r = hf_rawdisk_new(&s->raw, why, sizeof(why));
                (void)hf_buf_printf(&report, "raw-disk: %s%s; ", r < 0 ? "UNPROTECTED (" : "", why);
                if (r < 0)
                        (void)hf_buf_puts(&report, ")");
        } else
                (void)hf_buf_puts(&report, "raw-disk: guard off by config; ");
        (void)hf_buf_printf(&report, "containment: %s; ",
                            s->cg_root[0] ? "cgroup v2 freeze" : "SIGSTOP sweeps (no cgroup v2)");
        (void)hf_buf_puts(&report, "BPF-LSM: not used; ");
        (void)hf_buf_printf(&report, "gaps: %s",
                            s->mode == HF_MODE_PRE_CONTENT
                                    ? "unlink/rename-over of files never opened for write by the "
                                      "deleter (vault only), fds opened before start"
                            : s->mode == HF_MODE_OPEN_PERM
                                    ? "no FAN_PRE_ACCESS: copy on every write-open; truncate(path),"
                                      " unlink/rename-over of unopened files, fds opened before "
                                      "start are not preserved"
                                    : "no permission events: no pre-images at all, detection and "
                                      "containment only");
        (void)snprintf(mode_line, sizeof(mode_line), "mode %s: %s",
                       s->mode == HF_MODE_PRE_CONTENT ? "pre-content"
                       : s->mode == HF_MODE_OPEN_PERM ? "open-perm"
                                                      : "notify",
                       (const char *)report.data);
        printf("holdfast sentinel: %s\n", mode_line);
        (void)hf_db_set_meta(s->db, "mode", mode_line);
        if (c->decoys)
                for (size_t i = 0; i < s->n_roots; i++)
                        (void)hf_decoys_plant(s->roots[i].path, 64, true, add_decoy_cb, s);
        r = control_open(s);
        if (r < 0)
                log_warning_errno(r, "%s: control socket: %m", s->control_path);
        {
                char pidf[HF_PATH_MAX], pidv[32];
                (void)snprintf(pidf, sizeof(pidf), "%s/sentinel.pid", c->state_dir);
                (void)snprintf(pidv, sizeof(pidv), "%d\n", (int)getpid());
                _cleanup_close_ int pfd = open(pidf, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC,
                                               0644);
                if (pfd >= 0)
                        (void)hf_write_all(pfd, pidv, strlen(pidv));
        }
        housekeeping(s, true);
        printf("holdfast sentinel: ready, protecting %zu tree(s), action %s\n", s->n_roots,
               hf_action_name(c->action));
        fflush(stdout);

        double last_stats = hf_now_mono();
        while (!hf_is_interrupted()) {
                struct pollfd p[4] = {
                        { .fd = hf_watch_fd(s->watch), .events = POLLIN },
                        { .fd = s->guard ? hf_guard_wake_fd(s->guard) : -1, .events = POLLIN },
                        { .fd = s->control_fd, .events = POLLIN },
                        { .fd = s->mounts_fd, .events = POLLPRI },
                };
                int k = poll(p, 4, 100);
                if (k < 0 && errno != EINTR)
                        break;
                housekeeping(s, false);
                /* Pre-images first: they were taken before the changes the stream reports. */
                drain_guard(s);
                if (k > 0 && (p[0].revents & POLLIN))
                        (void)hf_watch_dispatch(s->watch, on_event, s);
                drain_guard(s);
                if (k > 0 && (p[2].revents & POLLIN))
                        control_accept(s);
                if (k > 0 && (p[3].revents & (POLLPRI | POLLERR)))
                        rescan_mounts(s);
                check_dirty(s);
                check_decoy_deletes(s);
                if (s->rescan && hf_now_mono() - s->last_rescan > 5) {
                        /* Events were lost: decoys may be gone unseen (plant them again) and
                         * paths may have moved (the watch dropped its cache). */
                        s->rescan = false;
                        s->last_rescan = hf_now_mono();
                        if (c->decoys)
                                for (size_t i = 0; i < s->n_roots; i++)
                                        (void)hf_decoys_plant(s->roots[i].path, 64, false,
                                                              add_decoy_cb, s);
                }
                drain_rawdisk(s);
                if (s->db_in_tx && hf_now_mono() - s->tx_started > 0.2)
                        db_flush(s);
                if (hf_now_mono() - last_stats > 60) {
                        char line[512];
                        stats_text(s, line, sizeof(line));
                        log_info("stats: %s", line);
                        last_stats = hf_now_mono();
                }
        }
        drain_guard(s);
        db_flush(s);
        {
                char line[512];
                stats_text(s, line, sizeof(line));
                printf("holdfast sentinel: stopping: %s\n", line);
        }
        r = 0;
out:
        while (s->n_dirty > 0)
                dirty_drop(s, s->n_dirty - 1);
        if (s->control_fd >= 0) {
                close(s->control_fd);
                (void)unlink(s->control_path);
        }
        if (s->mounts_fd >= 0)
                close(s->mounts_fd);
        for (size_t i = 0; i < s->n_mounted; i++)
                free(s->mounted[i].path);
        free(s->mounted);
        hf_rawdisk_free(s->raw);
        hf_guard_free(s->guard);
        hf_watch_free(s->watch);
        hf_analyzer_free(s->analyzer);
        hf_db_close(s->db);
        hf_procs_free(s->procs);
        if (s->alerts)
                fclose(s->alerts);
        if (s->files)
                for (size_t i = 0; i < FILES; i++)
                        free(s->files[i].pre_store);
        if (s->groups)
                for (size_t i = 0; i < MAX_GROUPS; i++) {
                        /* A stopped group stays frozen in its cgroup for the investigator;
                         * the cgroups of killed ones go (group_clear). */
                        group_clear(&s->groups[i]);
                        free(s->groups[i].created);
                }
        free(s->files);
        free(s->groups);
        free(s);
        return r;
}
