/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Interfaces between the sentinel's parts (not used outside src/sentinel/). */

#include <dirent.h>
#include <pthread.h>
#include <sqlite3.h>
#include <sys/types.h>

#include "sentinel.h"

#define HF_STORE_DIR ".holdfast"
#define HF_PATH_MAX 4096
/* A file handle as hex: 8 digits of handle type, then the handle bytes (at most 128). */
#define HF_FID_MAX (8 + 2 * 128 + 1)

double hf_now_real(void);

static inline void closedirp_(DIR **d)
{
        if (*d)
                (void)closedir(*d);
}

/* ---- rawdisk.c ---- */
typedef struct HfRawDisk HfRawDisk;
typedef struct HfRawDenial {
        pid_t pid; /* 0 when the kernel gives device programs no pid */
        uint64_t cgroup_id;
        uint32_t major, minor, access;
} HfRawDenial;
int hf_rawdisk_new(HfRawDisk **ret, char *why, size_t whyn);
HfRawDisk *hf_rawdisk_free(HfRawDisk *d);
DEFINE_TRIVIAL_CLEANUP_FUNC(HfRawDisk *, hf_rawdisk_free);
/* 1 and a denial, 0 when none is queued. */
int hf_rawdisk_pop(HfRawDisk *d, HfRawDenial *ret);
const char *hf_rawdisk_allow_path(const HfRawDisk *d);
int hf_cgroup2_root(char *buf, size_t n);
int hf_cgroup_id(const char *path, uint64_t *ret);

/* ---- proc.c ---- */
typedef struct HfProcInfo {
        pid_t pid, ppid, sid;
        uint64_t start; /* clock ticks since boot */
        uid_t uid;
        gid_t gid;
        bool trusted;
        bool gone; /* could not be read: exited before we saw it */
        char exe[512];
        char comm[32];
        char cmdline[512];
        char cgroup[256];
} HfProcInfo;

typedef struct HfProcs HfProcs;
int hf_procs_new(const HfSentinelConfig *c, HfProcs **ret);
HfProcs *hf_procs_free(HfProcs *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(HfProcs *, hf_procs_free);
/* Info of process pid (a tgid), from the cache or /proc. -ESRCH when gone and never seen. */
int hf_procs_get(HfProcs *p, pid_t pid, HfProcInfo *ret);
/* Is exe (as /proc/PID/exe gives it) the program at path? A binary replaced since the process
 * started (a package upgrade) reads "PATH (deleted)" and still counts as PATH. */
bool hf_exe_is(const char *exe, const char *path);
/* The thread group of a thread id (fast path: tid == tgid). 0 when gone. */
pid_t hf_procs_tgid(HfProcs *p, pid_t tid);
/* Reads /proc/PID/stat: ppid, sid, start time. */
int hf_proc_stat(pid_t pid, pid_t *ppid, pid_t *sid, uint64_t *start);
/* ppid, sid and the state letter (R, S, D, T, t, Z, X ...). */
int hf_proc_stat_state(pid_t pid, pid_t *ppid, pid_t *sid, char *state);
int hf_sha256_fd(int fd, uint64_t max, uint8_t out[32]);

/* ---- guard.c: the permission group ---- */
typedef struct HfPreimage {
        double time;
        pid_t pid;
        pid_t group; /* session (or pid) the guard charged this capture to */
        char reason[16];
        char method[16];
        uint64_t dev, ino;
        uint64_t size;
        uint32_t mode, uid, gid;
        int64_t mtime_ns;
        char store_root[512];
        char store_path[128];
        char fid[HF_FID_MAX]; /* the file's handle: tells it from a later file that reuses
                               * its inode number (the handle holds the generation) */
        char path[HF_PATH_MAX];
        /*
         * Method "range": bytes [range_off, range_off + range_len) of the file as they were
         * before one write, kept at log_off of the day's range log (store_path); sha is their
         * SHA-256 and size the file's size before that write.
         */
        uint64_t range_off, range_len, log_off;
        char sha[65];
        /* Continues the coverage of the same group (a later range, or the whole pre-image
         * that ends a run of ranges): the first row of the run stays what changes compare
         * against. */
        bool cont;
} HfPreimage;

typedef enum HfGuardMsgType {
        HF_GMSG_PREIMAGE,
        HF_GMSG_DECOY, /* write to a decoy: denied, immediate verdict */
        HF_GMSG_SELF, /* write into the store, the state or the config: denied, immediate verdict */
} HfGuardMsgType;

typedef struct HfGuardMsg {
        HfGuardMsgType type;
        HfPreimage pi; /* time, pid, dev, ino, path are set for every type */
} HfGuardMsg;

typedef struct HfGuard HfGuard;
typedef struct HfGuardStats {
        uint64_t events, pre_access, open_perm, captures, capture_bytes, denied, self_events,
                read_ignores, failures, deferred, ranges;
} HfGuardStats;

/* Sets *ret_mode to the mode actually in force (weaker when the kernel refuses). */
int hf_guard_new(const HfSentinelConfig *c, HfMode want, HfProcs *procs, HfGuard **ret,
                 HfMode *ret_mode, char *why, size_t whyn);
HfGuard *hf_guard_free(HfGuard *g);
DEFINE_TRIVIAL_CLEANUP_FUNC(HfGuard *, hf_guard_free);
/* Marks the filesystem mounted at root; creates root/.holdfast/{shadow,pins}. Also after
 * hf_guard_start(), from the thread that called it (the reader sees an entry once complete).
 * *ret_pre tells whether pre-content events are on there (tmpfs and others refuse them),
 * *ret_clones whether pre-images there are clones (reflink) rather than copies. */
int hf_guard_add_fs(HfGuard *g, const char *root, bool *ret_pre, bool *ret_clones);
int hf_guard_start(HfGuard *g);
/* Readable when messages are queued. */
int hf_guard_wake_fd(HfGuard *g);
/* The next message (caller frees), NULL when none. */
HfGuardMsg *hf_guard_pop(HfGuard *g);
void hf_guard_contain(HfGuard *g, pid_t tgid);
void hf_guard_add_decoy(HfGuard *g, uint64_t dev, uint64_t ino);
bool hf_guard_is_decoy(HfGuard *g, uint64_t dev, uint64_t ino);
void hf_guard_allow_pid(HfGuard *g, pid_t pid);
void hf_guard_stats(HfGuard *g, HfGuardStats *ret);
/* Main judged one captured file of the group: it may change its next file (tarpit). */
void hf_guard_judged(HfGuard *g, pid_t group);

/* ---- watch.c: the notification group ---- */
typedef enum HfEventKind {
        HF_EV_MODIFY,
        HF_EV_CLOSE_WRITE,
        HF_EV_CREATE,
        HF_EV_DELETE,
        HF_EV_RENAME,
        HF_EV_OVERFLOW,
} HfEventKind;

typedef struct HfEvent {
        HfEventKind kind;
        pid_t pid;
        bool ondir;
        double time;
        uint64_t dev, ino;      /* of the object, when it could be opened (0 otherwise) */
        int fs;                 /* index of the watched filesystem */
        struct file_handle *fh; /* the object's handle (valid during the callback) */
        int fd;                 /* the object opened O_PATH (valid during the callback), or -1 */
        char path[HF_PATH_MAX];
        char new_path[HF_PATH_MAX];
} HfEvent;

typedef struct HfWatch HfWatch;
typedef void (*HfWatchCallback)(const HfEvent *ev, void *userdata);
int hf_watch_new(HfWatch **ret, char *why, size_t whyn);
HfWatch *hf_watch_free(HfWatch *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(HfWatch *, hf_watch_free);
int hf_watch_add_fs(HfWatch *w, const char *root);
int hf_watch_fd(HfWatch *w);
/* Reads what is queued and calls cb for each event. */
int hf_watch_dispatch(HfWatch *w, HfWatchCallback cb, void *userdata);
/* Opens the object of an event (read-only) by its handle. */
int hf_watch_open(HfWatch *w, const HfEvent *ev, int flags);
uint64_t hf_watch_overflows(HfWatch *w);
/* Caches the handle of folder path, so that events in it still have a path after the
 * folder itself was removed. */
void hf_watch_prime(HfWatch *w, const char *path);

/* The handle of a file as hex (HF_FID_MAX bytes): the identity that survives renames and,
 * unlike (dev, ino), is never reused by a later file (ext4, XFS and btrfs encode the inode
 * generation in it). "" when unknown. The notification group reports the same encoding. */
void hf_fid_hex(const struct file_handle *fh, char *out, size_t n);
int hf_fd_fid(int fd, char *out, size_t n);

/* ---- privsep.c ---- */
typedef struct HfAnalyzer HfAnalyzer;
int hf_analyzer_new(HfAnalyzer **ret);
HfAnalyzer *hf_analyzer_free(HfAnalyzer *a);
DEFINE_TRIVIAL_CLEANUP_FUNC(HfAnalyzer *, hf_analyzer_free);
pid_t hf_analyzer_pid(HfAnalyzer *a);
/* Sends both fds (pre_fd may be -1) to the child and waits for its answer (restarts it when
 * it died or hung). */
int hf_analyzer_run(HfAnalyzer *a, int pre_fd, int post_fd, HfFeatures *ret);

/* ---- db.c ---- */
typedef struct HfDb HfDb;
int hf_db_open(const char *state_dir, bool create, HfDb **ret);
HfDb *hf_db_close(HfDb *db);
DEFINE_TRIVIAL_CLEANUP_FUNC(HfDb *, hf_db_close);
int hf_db_begin(HfDb *db);
int hf_db_commit(HfDb *db);
int hf_db_set_meta(HfDb *db, const char *key, const char *value);
int hf_db_add_preimage(HfDb *db, const HfPreimage *p, int64_t *ret_id);

typedef struct HfDbIncident {
        const char *kind, *state, *action, *reason, *group_kind, *group_key, *details;
        double score, first_event, detected, contained; /* contained < 0: NULL */
        int64_t files_touched;
} HfDbIncident;
int hf_db_add_incident(HfDb *db, const HfDbIncident *inc, int64_t *ret_id);
int hf_db_update_incident(HfDb *db, int64_t id, const char *state, double contained,
                          int64_t files_touched);
int hf_db_add_process(HfDb *db, int64_t incident, const HfProcInfo *p, const char *exe_sha256,
                      const char *evidence, const char *action, double score);
typedef struct HfDbFileEvent {
        double time;
        pid_t pid;
        const char *kind, *path, *new_path, *hash_before, *hash_after, *verdict;
        uint64_t dev, ino;
        int64_t size_before, size_after; /* -1: NULL */
        int64_t preimage_id;             /* 0: NULL */
        const char *fid;                 /* handle of the object as hex, NULL when unknown */
        bool ondir;                      /* the object is a folder */
        const char *grp;                 /* group key, kept only while incident is 0 */
} HfDbFileEvent;
/* incident 0: an event of a group that is no incident (yet), kept under its group key. */
int hf_db_add_file_event(HfDb *db, int64_t incident, const HfDbFileEvent *e);
/* The events a group spilled before its verdict become the incident's. */
int hf_db_claim_group_events(HfDb *db, const char *grp, int64_t incident);
/* Drops unclaimed events older than before; returns how many. */
int hf_db_expire_group_events(HfDb *db, double before);
sqlite3 *hf_db_handle(HfDb *db);
int hf_db_claim_preimage(HfDb *db, int64_t preimage_id, int64_t incident);
/* Store location of the whole pre-image row id, for hashing at incident time (-ENOENT for a
 * range: it holds no whole file). */
int hf_db_preimage_location(HfDb *db, int64_t id, char *root, size_t rn, char *rel, size_t reln,
                            char *sha, size_t shan);
int hf_db_set_preimage_sha(HfDb *db, int64_t id, const char *sha);

/* ---- respond.c ---- */
typedef struct HfContainment {
        bool started;
        pid_t sid;
        char cgroup[512]; /* our frozen cgroup holding the members, "" when signals only */
        pid_t *pids;      /* every member found so far, in the order found */
        size_t n_pids, cap;
        pid_t anc[64]; /* the sentinel's ancestors: never touched */
        size_t n_anc;
        void (*on_member)(void *userdata, pid_t pid); /* called for each new member */
        void *userdata;
} HfContainment;
/*
 * Stops every process of a group: the session sid (when > 1), the seed pids, and their
 * descendants, never pid 1, the sentinel or its ancestors. On the first call with cg_root
 * (the cgroup v2 mount, NULL for none) it makes a frozen cgroup cg_root/holdfast-contain/name
 * and moves the members into it; it sweeps until no new member appears and all are confirmed
 * frozen or stopped (at most 2 s). Later calls sweep again (late joiners). Returns how many
 * members this call added (c->pids from the old n_pids on).
 */
int hf_respond_stop(HfContainment *c, const char *cg_root, const char *name, pid_t sid,
                    const pid_t *seed, size_t n_seed);
/* SIGKILLs the members from index from on (and the whole cgroup). */
void hf_respond_kill(HfContainment *c, size_t from);
/* Removes the cgroup once it is empty; -EBUSY while members are left. */
int hf_respond_release(HfContainment *c);
void hf_containment_done(HfContainment *c);
/* Copies the executable of pid into state/evidence/<sha256>; writes the hash hex. */
int hf_respond_evidence(const char *state_dir, pid_t pid, char sha_hex[65], char *path,
                        size_t pathn);

/* ---- decoy.c ---- */
/* Plants decoys in root and its first-level folders (at most max); calls add for each. A
 * folder that is another mount is passed by unless into_mounts: its filesystem may have stopped
 * answering (a dead NFS server), and the main loop must not wait on it. */
int hf_decoys_plant(const char *root, unsigned max, bool into_mounts,
                    void (*add)(void *ud, uint64_t dev, uint64_t ino, const char *path), void *ud);
bool hf_decoy_name(const char *name);
