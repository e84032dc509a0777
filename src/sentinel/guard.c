/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The permission group: keeps the pre-image of a file before a process that is not trusted
 * first changes it, and denies what must never happen (writes to decoys, into the shadow
 * store, anything by a contained process). Design and measured kernel behaviour:
 * fanotify-notes.md §5; this file follows its `hsm` design on 6.14+ and `open61` on older
 * kernels.
 *
 * One reader thread answers every event that needs no I/O at once (its own process, reads,
 * trusted writers, denials) and hands the first write of an inode to two capture workers,
 * which clone or copy the file from the event fd into the shadow store, add an ignore mark
 * (later writes cost nothing) and only then allow. The reader never opens a file, so the
 * workers' own opens in the shadow store (which raise events in this group) are answered.
 *
 * Range pre-images: when a group's first write to a file overwrites a small part of it (at
 * most a quarter, by write(2) and its kin, whose event range covers every byte the call can
 * change), only the bytes of that range are kept, appended to the day's range log, and no
 * ignore mark is added: each later write of the group is kept the same way. When the group's
 * ranges reach half the file or RANGE_MAX writes, or it changes the file any other way
 * (truncate, mmap, fallocate, an O_TRUNC open), a whole pre-image is taken and the mark
 * added. A sparse overwrite (intermittent encryption) thus costs the bytes it overwrote, not
 * a copy of the file (ext4) or a clone's metadata per file (XFS, btrfs). Recovery takes the
 * file as it is now (or the whole pre-image that ended the run, or the inode's pin) and puts
 * the ranges back, earliest last.
 */
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <poll.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>

#include "../base/log.h"
#include "../base/queue.h"
#include "../base/util.h"
#include "../crypto/crypto.h"
#include "sentinel-internal.h"

/* Debian 12's uapi headers are 6.1's (fanotify-notes.md, "Headers"). */
#ifndef FAN_PRE_ACCESS
#define FAN_PRE_ACCESS 0x00100000
#endif
#ifndef FAN_MARK_IGNORE
#define FAN_MARK_IGNORE 0x00000400
#endif
#ifndef FAN_MARK_IGNORE_SURV
#define FAN_MARK_IGNORE_SURV (FAN_MARK_IGNORE | FAN_MARK_IGNORED_SURV_MODIFY)
#endif
#ifndef FAN_MARK_EVICTABLE
#define FAN_MARK_EVICTABLE 0x00000200
#endif
#ifndef FAN_EVENT_INFO_TYPE_RANGE
#define FAN_EVENT_INFO_TYPE_RANGE 6
#endif

#define MAX_FS 32
#define MAX_CONTAINED 4096
#define MAX_DECOYS 4096
#define RING_MAX 8192
#define INODES 65536 /* power of two */
#define WORKERS 2
#define PENDING 256
/* Tarpit: a group may have this many captured files that main has not judged yet; its next
 * first write waits (up to DEFER_MAX seconds) until main catches up. A fast encryptor is thus
 * slowed to the speed of the analysis instead of racing ahead of it. */
#define BUDGET 3
#define DEFER_MAX 1.0
#define DEFERRED_MAX 4096
#define RANGE_MAX 32 /* range pre-images of one inode per group and epoch */
#define RANGE_LOG "ranges"

typedef struct Fs {
        uint64_t dev;
        uint64_t mnt_id; /* statx's mount ID of root, 0 where the kernel gives none */
        char root[512];
        int store_fd;  /* root/.holdfast */
        int shadow_fd; /* root/.holdfast/shadow */
        int pins_fd;
        int day_fd;
        char day[16];
        int range_fd; /* the day's range log, appended at range_end */
        char range_day[16];
        uint64_t range_end;
        uint64_t tail_off, tail_left; /* the 4 KiB block that small ranges share */
        bool ranges;                  /* range pre-images here (not on btrfs) */
        bool clones;                  /* FICLONE works here (probed at start) */
        bool pre;
        pthread_mutex_t lock;
} Fs;

/*
 * Per inode and epoch. The ignore mark after a capture lets later writes through without an
 * event; it covers the changes of the group it was taken for (`owner`) and no one else's: a
 * write-open by any other group (trusted or not) removes it again (owner 0), so the next write
 * by an untrusted group gets a fresh pre-image. `pending` is the group a write-open re-armed
 * capture for while another writer may still hold the file open: a capture for anyone else
 * then adds no ignore mark, so the pending group's first write is still seen.
 */
typedef struct Inode {
        uint64_t key; /* inode_key(), 0: free */
        pid_t owner;
        pid_t pending;
        bool pinned;     /* a hard-link pin was taken this epoch */
        uint32_t nrange; /* the owner is covered by this many ranges (0: by a whole pre-image) */
        uint64_t rbytes; /* their bytes */
} Inode;

typedef struct Job {
        int fd;
        pid_t tid, tgid;
        Fs *fs;
        struct stat st;
        const char *reason;
        double time;
        pid_t group;
        double since;
        bool range;     /* keep [off, off + len) only */
        bool open;      /* a FAN_OPEN_PERM event (else PRE_ACCESS) */
        bool undecided; /* the system call (an open's flags) not known yet: the worker reads it */
        bool cont;      /* continues the group's run of ranges */
        uint64_t off, len;
} Job;

struct HfGuard {
        const HfSentinelConfig *c;
        HfProcs *procs;
        HfMode mode;
        int fan;
        uint64_t perm_mask;
        pthread_t reader, workers[WORKERS];
        bool started;
        atomic_bool stop;
        HfQueue *jobs;

        pthread_mutex_t lock; /* ring, contained, decoys, allowed, pins */
        pthread_cond_t space;
        HfGuardMsg **ring;
        size_t head, count;
        int wake_fd;
        pid_t contained[MAX_CONTAINED];
        size_t n_contained;
        uint64_t decoys[MAX_DECOYS][2];
        size_t n_decoys;
        pid_t allowed[16];
        size_t n_allowed;
        Inode *inodes; /* what this epoch knows of an inode (owner, pin); open addressing */

        struct {
                pid_t group;
                int count;
                double last;
        } pending[PENDING];
        Job *deferred[DEFERRED_MAX];
        size_t n_deferred;

        pid_t self;
        char self_exe[512]; /* this binary's path, read at start; "" when unknown */
        char *state_real;   /* the state folder's real path (events carry real paths) */
        Fs fs[MAX_FS];
        size_t n_fs;
        atomic_uint_fast64_t seq;
        double last_epoch;

        atomic_uint_fast64_t st_events, st_pre, st_open, st_capt, st_bytes, st_denied, st_self,
                st_readign, st_fail, st_deferred, st_ranges;
};

/* With g->lock held. */
static int *pending_slot(HfGuard *g, pid_t group, bool create)
{
        size_t oldest = 0;
        double now = hf_now_mono();

        for (size_t i = 0; i < PENDING; i++) {
                if (g->pending[i].group == group) {
                        /* Stale counts (a process died before main judged its files). */
                        if (now - g->pending[i].last > 2 * DEFER_MAX)
                                g->pending[i].count = 0;
                        return &g->pending[i].count;
                }
                if (g->pending[i].last < g->pending[oldest].last)
                        oldest = i;
        }
        if (!create)
                return NULL;
        g->pending[oldest].group = group;
        g->pending[oldest].count = 0;
        g->pending[oldest].last = now;
        return &g->pending[oldest].count;
}

void hf_guard_judged(HfGuard *g, pid_t group)
{
        if (!g)
                return;
        pthread_mutex_lock(&g->lock);
        int *c = pending_slot(g, group, false);
        if (c && *c > 0)
                (*c)--;
        pthread_mutex_unlock(&g->lock);
}

/* Charges one capture to the group unless it is over budget (then false: defer it). */
static bool charge(HfGuard *g, pid_t group, bool force)
{
        bool ok;
        pthread_mutex_lock(&g->lock);
        int *c = pending_slot(g, group, true);
        ok = force || *c < BUDGET;
        if (ok) {
                (*c)++;
                for (size_t i = 0; i < PENDING; i++)
                        if (g->pending[i].group == group)
                                g->pending[i].last = hf_now_mono();
        }
        pthread_mutex_unlock(&g->lock);
        return ok;
}

static void respond(HfGuard *g, int fd, bool allow)
{
        struct fanotify_response r = { .fd = fd, .response = allow ? FAN_ALLOW : FAN_DENY };

        while (write(g->fan, &r, sizeof(r)) < 0 && errno == EINTR)
                ;
}

static void answer(HfGuard *g, int fd, bool allow)
{
        respond(g, fd, allow);
        close(fd);
}

static bool is_self(HfGuard *g, pid_t tid, pid_t tgid)
{
        if (tid == g->self || tgid == g->self)
                return true;
        bool r = false;
        pthread_mutex_lock(&g->lock);
        for (size_t i = 0; i < g->n_allowed; i++)
                if (g->allowed[i] == tid || g->allowed[i] == tgid)
                        r = true;
        pthread_mutex_unlock(&g->lock);
        return r;
}

static bool is_contained(HfGuard *g, pid_t tgid)
{
        bool r = false;
        pthread_mutex_lock(&g->lock);
        for (size_t i = 0; i < g->n_contained && !r; i++)
                r = g->contained[i] == tgid;
        pthread_mutex_unlock(&g->lock);
        return r;
}

void hf_guard_contain(HfGuard *g, pid_t tgid)
{
        if (!g)
                return;
        pthread_mutex_lock(&g->lock);
        if (g->n_contained < MAX_CONTAINED)
                g->contained[g->n_contained++] = tgid;
        else {
                memmove(g->contained, g->contained + 1, (MAX_CONTAINED - 1) * sizeof(pid_t));
                g->contained[MAX_CONTAINED - 1] = tgid;
        }
        pthread_mutex_unlock(&g->lock);
}

void hf_guard_add_decoy(HfGuard *g, uint64_t dev, uint64_t ino)
{
        if (!g)
                return;
        pthread_mutex_lock(&g->lock);
        if (g->n_decoys < MAX_DECOYS) {
                g->decoys[g->n_decoys][0] = dev;
                g->decoys[g->n_decoys][1] = ino;
                g->n_decoys++;
        }
        pthread_mutex_unlock(&g->lock);
}

bool hf_guard_is_decoy(HfGuard *g, uint64_t dev, uint64_t ino)
{
        bool r = false;
        if (!g)
                return false;
        pthread_mutex_lock(&g->lock);
        for (size_t i = 0; i < g->n_decoys && !r; i++)
                r = g->decoys[i][0] == dev && g->decoys[i][1] == ino;
        pthread_mutex_unlock(&g->lock);
        return r;
}

void hf_guard_allow_pid(HfGuard *g, pid_t pid)
{
        if (!g)
                return;
        pthread_mutex_lock(&g->lock);
        if (g->n_allowed < ELEMENTSOF(g->allowed))
                g->allowed[g->n_allowed++] = pid;
        pthread_mutex_unlock(&g->lock);
}

/* Never 0 (an empty slot); distinct for every (dev, ino) of a filesystem, so neighbouring
 * inode numbers never share an owner. */
static uint64_t inode_key(uint64_t dev, uint64_t ino)
{
        uint64_t k = (dev * 0x9e3779b97f4a7c15ULL) ^ ino;
        return k ? k : 1;
}

/* The entry of key, created when missing (an unrelated entry is replaced when the probe run
 * is full: it loses its owner, which only costs a fresh pre-image). With g->lock held. */
static Inode *inode_get(HfGuard *g, uint64_t key, bool create)
{
        size_t h = (size_t)(key * 0xff51afd7ed558ccdULL >> 40) & (INODES - 1);

        for (int i = 0; i < 32; i++) {
                Inode *e = &g->inodes[(h + (size_t)i) & (INODES - 1)];
                if (e->key == key)
                        return e;
                if (e->key == 0) {
                        if (!create)
                                return NULL;
                        *e = (Inode){ .key = key };
                        return e;
                }
        }
        if (!create)
                return NULL;
        Inode *e = &g->inodes[h];
        *e = (Inode){ .key = key };
        return e;
}

/* True when (dev, ino) was pinned already this epoch; records it otherwise. */
static bool pinned_before(HfGuard *g, uint64_t dev, uint64_t ino)
{
        bool r;

        pthread_mutex_lock(&g->lock);
        Inode *e = inode_get(g, inode_key(dev, ino), true);
        r = e->pinned;
        e->pinned = true;
        pthread_mutex_unlock(&g->lock);
        return r;
}

/* A new or emptied file: what we knew of the inode number belongs to an earlier file. */
static void inode_forget(HfGuard *g, uint64_t key)
{
        pthread_mutex_lock(&g->lock);
        Inode *e = inode_get(g, key, false);
        if (e)
                *e = (Inode){ .key = key };
        pthread_mutex_unlock(&g->lock);
}

/*
 * group's changes from now on are covered (a pre-image was just taken for it, or the file is
 * empty): records it as the owner and says whether the ignore mark may be added (not while a
 * write-open re-armed capture for another group).
 */
static bool inode_own(HfGuard *g, uint64_t key, pid_t group)
{
        bool ignore;

        pthread_mutex_lock(&g->lock);
        Inode *e = inode_get(g, key, true);
        e->owner = group;
        e->nrange = 0;
        e->rbytes = 0;
        ignore = e->pending == 0 || e->pending == group;
        if (ignore)
                e->pending = 0;
        pthread_mutex_unlock(&g->lock);
        return ignore;
}

/* A write-open by group (trusted or not): when someone else owns the inode, its coverage ends
 * here. Returns true when capture must be re-armed (the ignore mark removed). */
static bool inode_rearm(HfGuard *g, uint64_t key, pid_t group, bool trusted)
{
        bool rearm;

        pthread_mutex_lock(&g->lock);
        Inode *e = inode_get(g, key, !trusted);
        rearm = trusted ? e && e->owner != 0 && e->owner != group : !e || e->owner != group;
        if (e && rearm) {
                e->owner = 0;
                e->nrange = 0;
                e->rbytes = 0;
                if (!trusted)
                        e->pending = group;
        }
        pthread_mutex_unlock(&g->lock);
        return rearm;
}

/* The owner of an inode and how it is covered (0 ranges: by a whole pre-image). */
static pid_t inode_cover(HfGuard *g, uint64_t key, uint32_t *nrange, uint64_t *rbytes)
{
        pthread_mutex_lock(&g->lock);
        Inode *e = inode_get(g, key, false);
        pid_t o = e ? e->owner : 0;
        *nrange = e ? e->nrange : 0;
        *rbytes = e ? e->rbytes : 0;
        pthread_mutex_unlock(&g->lock);
        return o;
}

/* A range of len bytes was kept for group: it owns the inode, with no ignore mark. */
static void inode_range(HfGuard *g, uint64_t key, pid_t group, uint64_t len)
{
        pthread_mutex_lock(&g->lock);
        Inode *e = inode_get(g, key, true);
        if (e->owner != group) {
                e->nrange = 0;
                e->rbytes = 0;
        }
        e->owner = group;
        e->nrange++;
        e->rbytes += len;
        if (e->pending == group)
                e->pending = 0;
        pthread_mutex_unlock(&g->lock);
}

static void push_msg(HfGuard *g, HfGuardMsg *m)
{
        struct timespec ts;
        uint64_t one = 1;

        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 2;
        pthread_mutex_lock(&g->lock);
        /* Back-pressure: the writer waits (it is blocked in its syscall) rather than a
         * record being lost, unless main is stuck for seconds. */
        while (g->count >= RING_MAX && !atomic_load(&g->stop))
                if (pthread_cond_timedwait(&g->space, &g->lock, &ts) != 0)
                        break;
        if (g->count < RING_MAX) {
                g->ring[(g->head + g->count) % RING_MAX] = m;
                g->count++;
                m = NULL;
        }
        pthread_mutex_unlock(&g->lock);
        if (m) {
                atomic_fetch_add(&g->st_fail, 1);
                free(m);
        }
        (void)!write(g->wake_fd, &one, sizeof(one));
}

HfGuardMsg *hf_guard_pop(HfGuard *g)
{
        HfGuardMsg *m = NULL;
        uint64_t v;

        pthread_mutex_lock(&g->lock);
        if (g->count) {
                m = g->ring[g->head];
                g->head = (g->head + 1) % RING_MAX;
                g->count--;
                pthread_cond_signal(&g->space);
        } else
                (void)!read(g->wake_fd, &v, sizeof(v));
        pthread_mutex_unlock(&g->lock);
        return m;
}

int hf_guard_wake_fd(HfGuard *g)
{
        return g->wake_fd;
}

void hf_guard_stats(HfGuard *g, HfGuardStats *ret)
{
        *ret = (HfGuardStats){
                .events = atomic_load(&g->st_events),
                .pre_access = atomic_load(&g->st_pre),
                .open_perm = atomic_load(&g->st_open),
                .captures = atomic_load(&g->st_capt),
                .capture_bytes = atomic_load(&g->st_bytes),
                .denied = atomic_load(&g->st_denied),
                .self_events = atomic_load(&g->st_self),
                .read_ignores = atomic_load(&g->st_readign),
                .failures = atomic_load(&g->st_fail),
                .deferred = atomic_load(&g->st_deferred),
                .ranges = atomic_load(&g->st_ranges),
        };
}

/* /proc/TID/syscall of the blocked caller: number and six arguments. */
static int read_syscall_for(pid_t tid, long *nr, unsigned long args[6], double patience)
{
        char path[64], buf[256];

        (void)snprintf(path, sizeof(path), "/proc/%d/syscall", (int)tid);
        double until = hf_now_mono() + patience;
        for (int attempt = 0; attempt < 2 || hf_now_mono() < until; attempt++) {
                _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        return -errno;
                ssize_t n = read(fd, buf, sizeof(buf) - 1);
                if (n <= 0)
                        return -EIO;
                buf[n] = 0;
                /* "running": the caller has not scheduled out yet (fanotify-notes F12). */
                if (strncmp(buf, "running", 7) == 0) {
                        /* A preempted caller is "running" too: after a few yields, sleep so
                         * that it gets a core on a loaded machine and the patience is spent
                         * waiting, not a count of tries used up in microseconds. */
                        if (attempt < 64) {
                                sched_yield();
                        } else {
                                struct timespec ts = { 0, 100 * 1000 };
                                (void)nanosleep(&ts, NULL);
                        }
                        continue;
                }
                if (sscanf(buf, "%ld %lx %lx %lx %lx %lx %lx", nr, &args[0], &args[1], &args[2],
                           &args[3], &args[4], &args[5]) < 1)
                        return -EPROTO;
                return 0;
        }
        return -EBUSY;
}

/* Tests only (HOLDFAST_GUARD_TEST_UNSEEN_OPENER=1, read when a guard is made): the reader's
 * short look always misses, as on a loaded machine. */
static bool test_unseen_opener;

/*
 * The blocked caller's system call. Not patient (the reader thread: every event waits behind
 * it): at most 2 ms; -EBUSY when the caller has not scheduled out yet. Patient (a capture
 * worker, or before a denial): up to 0.2 s.
 */
static int read_syscall(pid_t tid, long *nr, unsigned long args[6], bool patient)
{
        if (!patient && test_unseen_opener)
                return -EBUSY;
        return read_syscall_for(tid, nr, args, patient ? 0.2 : 0.002);
}

/* Does an open with these flags change the file? */
static bool open_writes(long fl)
{
        return (fl & O_ACCMODE) != O_RDONLY || (fl & O_TRUNC);
}

/* Open flags of the blocked opener, -1 when they cannot be known (io_uring, ...) or the
 * opener did not show its system call in time. */
static long open_flags(pid_t tid, bool patient)
{
        unsigned long a[6] = { 0 };
        long nr;

        if (read_syscall(tid, &nr, a, patient) < 0)
                return -1;
        switch (nr) {
        case SYS_open:
                return (long)a[1];
        case SYS_openat:
                return (long)a[2];
        case SYS_creat:
                return O_CREAT | O_WRONLY | O_TRUNC;
        case SYS_open_by_handle_at:
                return (long)a[2];
        case SYS_execve:
        case SYS_execveat:
                return O_RDONLY;
#ifdef SYS_openat2
        case SYS_openat2: {
                uint64_t flags = 0;
                struct iovec local = { &flags, sizeof(flags) }, remote = { (void *)a[2], 8 };
                if (process_vm_readv(tid, &local, 1, &remote, 1, 0) != 8)
                        return -1;
                return (long)flags;
        }
#endif
        default:
                return -1;
        }
}

static bool fd_is(pid_t tid, unsigned long fdnum, const struct stat *st)
{
        char path[64];
        struct stat s;

        (void)snprintf(path, sizeof(path), "/proc/%d/fd/%lu", (int)tid, fdnum);
        return stat(path, &s) == 0 && s.st_dev == st->st_dev && s.st_ino == st->st_ino;
}

/* The open flags of a caller's fd, -1 when unknown. */
static long fd_flags(pid_t tid, unsigned long fdnum)
{
        char path[64], line[128];
        (void)snprintf(path, sizeof(path), "/proc/%d/fdinfo/%lu", (int)tid, fdnum);
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f)) {
                unsigned long fl;
                if (sscanf(line, "flags: %lo", &fl) == 1)
                        return (long)fl;
        }
        return -1;
}

static bool fd_writable(pid_t tid, unsigned long fdnum)
{
        long fl = fd_flags(tid, fdnum);
        return fl < 0 || (fl & O_ACCMODE) != O_RDONLY;
}

/* Does system call nr (arguments a) of tid read (false) or change (true) the file? */
static bool syscall_writes(pid_t tid, const struct stat *st, long nr, const unsigned long a[6])
{
        switch (nr) {
        case SYS_read:
        case SYS_pread64:
        case SYS_readv:
        case SYS_preadv:
        case SYS_preadv2:
        case SYS_execve:
        case SYS_execveat:
                return false;
        case SYS_write:
        case SYS_pwrite64:
        case SYS_writev:
        case SYS_pwritev:
        case SYS_pwritev2:
        case SYS_fallocate:
        case SYS_ftruncate:
        case SYS_truncate:
                return true;
        case SYS_mmap:
                if (!(a[3] & MAP_SHARED))
                        return false;
                /* A shared read-only mapping of a writable fd can be mprotect()ed to write
                 * without another event (fanotify-notes F7). */
                return (a[2] & PROT_WRITE) || fd_writable(tid, a[4]);
        case SYS_copy_file_range:
        case SYS_splice:
                return fd_is(tid, a[2], st);
        case SYS_sendfile: /* out_fd is a0 */
        case SYS_ioctl:    /* FICLONE(RANGE): the destination is a0 */
                return fd_is(tid, a[0], st);
        default:
                return true;
        }
}

/* Does the blocked PRE_ACCESS caller read (false) or change (true) the file? Unknown: true.
 * *ret_nr and a: its system call (-1: unknown, -2: not scheduled out yet) and arguments. */
static bool pre_access_is_write(pid_t tid, const struct stat *st, long *ret_nr, unsigned long a[6],
                                bool patient)
{
        long nr;
        int r = read_syscall(tid, &nr, a, patient);

        *ret_nr = r == -EBUSY ? -2 : -1;
        if (r < 0)
                return true;
        *ret_nr = nr;
        return syscall_writes(tid, st, nr, a);
}

/* A write whose event range covers every byte it may change (fanotify-notes F11): 1; an
 * append, which changes no byte that was there (its range is the fd's position, not the
 * end): 2; anything else: 0. */
static int plain_write(pid_t tid, long nr, const unsigned long a[6])
{
        if (nr != SYS_write && nr != SYS_pwrite64 && nr != SYS_writev && nr != SYS_pwritev &&
            nr != SYS_pwritev2)
                return 0;
        if (nr == SYS_pwritev2 && (a[4] & RWF_APPEND))
                return 2;
        long fl = fd_flags(tid, a[0]);
        return fl < 0 ? 0 : (fl & O_APPEND) ? 2 : 1;
}

/* May a write of len bytes (clipped to the file of size bytes) be kept as a range: the first
 * of a run (cont false), or one more (nrange ranges of rbytes so far)? */
static bool range_ok(bool cont, uint32_t nrange, uint64_t rbytes, uint64_t len, uint64_t size)
{
        if (cont)
                return nrange < RANGE_MAX && rbytes + len <= size / 2;
        /* An append starts no run: appenders go on appending. */
        return len > 0 && len <= size / 4;
}

typedef enum Step {
        STEP_COVERED, /* the group's changes are covered by a whole pre-image: allow */
        STEP_ALLOW,   /* the group's run of ranges goes on, nothing here to keep: allow */
        STEP_RANGE,   /* keep the write's range */
        STEP_WHOLE,   /* keep the whole file (first capture, or the end of a run) */
} Step;

/*
 * What a change of group to inode key needs: kind is plain_write()'s answer (-1: the system
 * call is not known yet), len and size the write's clipped range and the file's size. The one
 * decision for the reader and for a worker that learnt the system call later. *ret_cont: the
 * group is in a run of ranges.
 */
static Step range_step(HfGuard *g, uint64_t key, pid_t group, int kind, uint64_t len, uint64_t size,
                       bool *ret_cont)
{
        uint64_t rbytes;
        uint32_t nrange;
        bool own = inode_cover(g, key, &nrange, &rbytes) == group;

        *ret_cont = own && nrange > 0;
        if (own && nrange == 0)
                return STEP_COVERED;
        if (own && (kind == 2 || (kind == 1 && len == 0)) && nrange < RANGE_MAX) {
                /* Counted all the same: events end, with a whole pre-image, after RANGE_MAX. */
                inode_range(g, key, group, 0);
                return STEP_ALLOW;
        }
        return kind == 1 && range_ok(own, nrange, rbytes, len, size) ? STEP_RANGE : STEP_WHOLE;
}

/* The range record of a PRE_ACCESS event (ev: the whole event, len bytes), clipped to the
 * file's size bytes. */
static bool event_range(const char *ev, size_t len, uint64_t size, uint64_t *off, uint64_t *count)
{
        struct fanotify_event_metadata m;
        size_t p;

        memcpy(&m, ev, sizeof(m));
        p = m.metadata_len;
        while (p + sizeof(struct fanotify_event_info_header) <= len) {
                struct fanotify_event_info_header h;
                memcpy(&h, ev + p, sizeof(h));
                if (h.len < sizeof(h) || h.len > len - p)
                        return false;
                if (h.info_type == FAN_EVENT_INFO_TYPE_RANGE && h.len >= 24) {
                        uint64_t o, c;
                        memcpy(&o, ev + p + 8, 8);
                        memcpy(&c, ev + p + 16, 8);
                        *off = MIN(o, size);
                        *count = MIN(c, size - *off);
                        return true;
                }
                p += h.len;
        }
        return false;
}

static int add_ignore(HfGuard *g, int fd, uint64_t mask)
{
        return fanotify_mark(g->fan, FAN_MARK_ADD | FAN_MARK_IGNORE_SURV | FAN_MARK_EVICTABLE, mask,
                             fd, NULL) < 0
                       ? -errno
                       : 0;
}

/* Filesystems may be added while the reader runs: an entry is complete before it counts. */
static size_t n_fs(HfGuard *g)
{
        return __atomic_load_n(&g->n_fs, __ATOMIC_ACQUIRE);
}

static Fs *find_fs(HfGuard *g, uint64_t dev)
{
        for (size_t i = 0, n = n_fs(g); i < n; i++)
                if (g->fs[i].dev == dev)
                        return &g->fs[i];
        return NULL;
}

/*
 * The filesystem of the file behind an event's fd: by its device, or else by its mount. A btrfs
 * subvolume that is not mounted on its own gives its files a device number of their own, which
 * no marked root has, but they are reached through the root's mount.
 */
static Fs *fs_of_file(HfGuard *g, int fd, uint64_t dev)
{
        Fs *fs = find_fs(g, dev);
        uint64_t id;

        if (fs)
                return fs;
        id = hf_mount_id(fd, NULL);
        for (size_t i = 0, n = n_fs(g); id && i < n; i++)
                if (g->fs[i].mnt_id == id)
                        return &g->fs[i];
        return NULL;
}

static void fd_path(int fd, char *out, size_t n)
{
        char p[64];
        (void)snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
        ssize_t k = readlink(p, out, n - 1);
        out[k > 0 ? k : 0] = 0;
}

static bool in_store(const Fs *fs, const char *path)
{
        size_t rl = strlen(fs->root);
        const char *rest;

        if (strcmp(fs->root, "/") == 0)
                rest = path;
        else if (strncmp(path, fs->root, rl) == 0)
                rest = path + rl;
        else
                return false;
        return strncmp(rest, "/" HF_STORE_DIR "/", strlen(HF_STORE_DIR) + 2) == 0 ||
               strcmp(rest, "/" HF_STORE_DIR) == 0;
}

static void report(HfGuard *g, HfGuardMsgType type, pid_t tgid, const struct stat *st,
                   const char *path)
{
        HfGuardMsg *m = calloc(1, sizeof(*m));
        if (!m)
                return;
        m->type = type;
        m->pi.time = hf_now_real();
        m->pi.pid = tgid;
        m->pi.dev = st->st_dev;
        m->pi.ino = st->st_ino;
        (void)snprintf(m->pi.path, sizeof(m->pi.path), "%s", path);
        push_msg(g, m);
}

/* The day folder of the shadow store, created (with its ignore mark) on first use. */
static int day_dir(HfGuard *g, Fs *fs)
{
        char day[16];
        time_t now = time(NULL);
        struct tm tm;

        gmtime_r(&now, &tm);
        (void)strftime(day, sizeof(day), "%Y%m%d", &tm);
        if (fs->day_fd >= 0 && strcmp(day, fs->day) == 0)
                return fs->day_fd;
        if (mkdirat(fs->shadow_fd, day, 0700) < 0 && errno != EEXIST)
                return -errno;
        int fd = openat(fs->shadow_fd, day, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (g->mode == HF_MODE_PRE_CONTENT && fs->pre)
                (void)fanotify_mark(g->fan, FAN_MARK_ADD | FAN_MARK_IGNORE_SURV,
                                    FAN_PRE_ACCESS | FAN_EVENT_ON_CHILD, fd, NULL);
        closep(&fs->day_fd);
        fs->day_fd = fd;
        memcpy(fs->day, day, sizeof(day));
        return fd;
}

/* The fields every capture of job j records. */
static void fill_pre(const Job *j, HfPreimage *p)
{
        p->time = j->time;
        p->pid = j->tgid;
        p->group = j->group;
        p->cont = j->cont;
        (void)snprintf(p->reason, sizeof(p->reason), "%s", j->reason);
        p->dev = j->st.st_dev;
        p->ino = j->st.st_ino;
        p->size = (uint64_t)j->st.st_size;
        p->mode = j->st.st_mode;
        p->uid = j->st.st_uid;
        p->gid = j->st.st_gid;
        p->mtime_ns = (int64_t)j->st.st_mtim.tv_sec * 1000000000 + j->st.st_mtim.tv_nsec;
        (void)snprintf(p->store_root, sizeof(p->store_root), "%s", j->fs->root);
        fd_path(j->fd, p->path, sizeof(p->path));
        (void)hf_fd_fid(j->fd, p->fid, sizeof(p->fid));
}

/*
 * The day's range log, opened (or reopened: a new day, or retention removed the log once all
 * its ranges were released) and len bytes reserved in it. A range of whole pages starts on a
 * 4 KiB boundary, so that retention can punch it out alone; ranges under 4 KiB (the end of a
 * file) share blocks, freed with the log. With fs->lock held. Returns the fd (owned by fs).
 */
static int range_log(HfGuard *g, Fs *fs, uint64_t len, uint64_t *ret_off, char day[16])
{
        struct stat st;
        int dfd = day_dir(g, fs);

        if (dfd < 0)
                return dfd;
        if (fs->range_fd >= 0 && (strcmp(fs->range_day, fs->day) != 0 ||
                                  fstat(fs->range_fd, &st) < 0 || st.st_nlink == 0))
                closep(&fs->range_fd);
        if (fs->range_fd < 0) {
                fs->range_fd = openat(dfd, RANGE_LOG, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
                                      0400);
                if (fs->range_fd < 0 || fstat(fs->range_fd, &st) < 0) {
                        int r = -errno;
                        closep(&fs->range_fd);
                        return r;
                }
                memcpy(fs->range_day, fs->day, sizeof(fs->range_day));
                fs->range_end = ((uint64_t)st.st_size + 4095) & ~(uint64_t)4095;
                fs->tail_left = 0;
        }
        if (len < 4096) {
                if (fs->tail_left < len) {
                        fs->tail_off = fs->range_end;
                        fs->tail_left = 4096;
                        fs->range_end += 4096;
                }
                *ret_off = fs->tail_off + 4096 - fs->tail_left;
                fs->tail_left -= len;
        } else {
                *ret_off = fs->range_end;
                fs->range_end += (len + 4095) & ~(uint64_t)4095;
        }
        memcpy(day, fs->day, 16);
        return fs->range_fd;
}

static void hash_block(void *userdata, const uint8_t *p, size_t n)
{
        hf_sha256_update(userdata, p, n);
}

/* Copies [off, off + len) of in to out at at, hashing it. */
static int copy_range(int in, uint64_t off, uint64_t len, int out, uint64_t at, char hex[65])
{
        _cleanup_(hf_sha256_freep) HfSha256 *h = NULL;
        uint64_t copied = 0;
        HfId id;
        int r = hf_sha256_new(&h);

        if (r >= 0)
                r = hf_copy_rw(in, off, len, out, at, hash_block, h, &copied);
        if (r < 0)
                return r;
        if (copied < len)
                return -EIO; /* the writer is blocked: the file cannot have shrunk */
        hf_sha256_final(h, &id);
        hf_hex_encode(id.b, sizeof(id.b), hex);
        return 0;
}

/* Keeps the bytes the blocked write may change; falls back to a whole pre-image. */
static bool capture_range(HfGuard *g, Job *j)
{
        _cleanup_free_ HfGuardMsg *m = calloc(1, sizeof(*m));
        Fs *fs = j->fs;
        char day[16];
        uint64_t at = 0;
        int r;

        if (!m)
                return false;
        HfPreimage *p = &m->pi;
        m->type = HF_GMSG_PREIMAGE;
        fill_pre(j, p);
        pthread_mutex_lock(&fs->lock);
        int out = range_log(g, fs, j->len, &at, day);
        pthread_mutex_unlock(&fs->lock);
        r = out < 0 ? out : copy_range(j->fd, j->off, j->len, out, at, p->sha);
        if (r < 0) {
                log_warning_errno(r, "shadow store %s: cannot keep a range of %s: %m", fs->root,
                                  p->path);
                return false;
        }
        (void)snprintf(p->method, sizeof(p->method), "range");
        (void)snprintf(p->store_path, sizeof(p->store_path), "shadow/%s/" RANGE_LOG, day);
        p->range_off = j->off;
        p->range_len = j->len;
        p->log_off = at;
        atomic_fetch_add(&g->st_bytes, j->len);
        atomic_fetch_add(&g->st_ranges, 1);
        if (!j->cont)
                atomic_fetch_add(&g->st_capt, 1);
        inode_range(g, inode_key(p->dev, p->ino), j->group, j->len);
        push_msg(g, TAKE_PTR(m));
        respond(g, j->fd, true);
        return true;
}

static void pin(HfGuard *g, Fs *fs, int fd, const struct stat *st, pid_t pid)
{
        char name[96];

        if (fs->pins_fd < 0 || pinned_before(g, st->st_dev, st->st_ino))
                return;
        (void)snprintf(name, sizeof(name), "%llu-%lld-%llu", (unsigned long long)st->st_ino,
                       (long long)(hf_now_real() * 1e9),
                       (unsigned long long)atomic_fetch_add(&g->seq, 1));
        /* Linking an open file by its fd needs CAP_DAC_READ_SEARCH, which we have. */
        if (linkat(fd, "", fs->pins_fd, name, AT_EMPTY_PATH) < 0) {
                log_debug_errno(errno, "pin of inode %llu failed: %m",
                                (unsigned long long)st->st_ino);
                return;
        }
        /* Recorded like a pre-image (method "link"): it shares the inode, so it holds the
         * content as of the unlink or rename-over, and the writes before them are covered by
         * the pre-images of the same inode. */
        HfGuardMsg *m = calloc(1, sizeof(*m));
        if (!m)
                return;
        HfPreimage *p = &m->pi;
        m->type = HF_GMSG_PREIMAGE;
        p->time = hf_now_real();
        p->pid = pid;
        p->group = 0;
        (void)snprintf(p->reason, sizeof(p->reason), "pin");
        (void)snprintf(p->method, sizeof(p->method), "link");
        p->dev = st->st_dev;
        p->ino = st->st_ino;
        p->size = (uint64_t)st->st_size;
        p->mode = st->st_mode;
        p->uid = st->st_uid;
        p->gid = st->st_gid;
        p->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
        (void)snprintf(p->store_root, sizeof(p->store_root), "%s", fs->root);
        (void)snprintf(p->store_path, sizeof(p->store_path), "pins/%s", name);
        fd_path(fd, p->path, sizeof(p->path));
        (void)hf_fd_fid(fd, p->fid, sizeof(p->fid));
        push_msg(g, m);
}

/*
 * A write-open (no O_TRUNC) on 6.14+: the write itself will raise PRE_ACCESS. When another
 * group (or nobody) owns the inode, removes the ignore mark (a read-ignore, or the previous
 * writer's capture ignore) so this group's first write is pre-imaged; and pins the inode
 * against unlink/rename-over. The caller answers the event.
 */
static void open_for_write(HfGuard *g, Fs *fs, int fd, const struct stat *st, pid_t group,
                           pid_t tgid)
{
        if (inode_rearm(g, inode_key(st->st_dev, st->st_ino), group, false))
                (void)fanotify_mark(g->fan, FAN_MARK_REMOVE | FAN_MARK_IGNORE, FAN_PRE_ACCESS, fd,
                                    NULL);
        if (g->c->pins)
                pin(g, fs, fd, st, tgid);
}

/*
 * A job whose caller had not scheduled out when the reader looked: its system call (or, for an
 * open, its flags), read with the patience a worker can afford. A read, or a write-open without
 * O_TRUNC, is allowed with nothing kept (false); a write is kept as the reader would have
 * decided, an O_TRUNC open (or one still unknown) by a whole pre-image (true: go on with j).
 */
static bool decide(HfGuard *g, Job *j)
{
        unsigned long a[6] = { 0 };
        long nr = -1, fl = -1;
        bool cont;
        Step step;

        if (j->open ? (fl = open_flags(j->tid, true)) < 0
                    : read_syscall(j->tid, &nr, a, true) < 0) {
                /* still unknown: a whole pre-image (the tests look for this line) */
                log_notice("guard: the %s of pid %d did not show in time; a whole pre-image of "
                           "inode %llu is kept",
                           j->open ? "open flags" : "system call", (int)j->tid,
                           (unsigned long long)j->st.st_ino);
                return true;
        }
        if (j->open) {
                /* O_TRUNC: a whole pre-image. Without it nothing is kept here: the writes
                 * raise PRE_ACCESS. */
                if (fl & O_TRUNC)
                        return true;
                if (open_writes(fl))
                        open_for_write(g, j->fs, j->fd, &j->st, j->group, j->tgid);
                step = STEP_ALLOW;
        } else
                step = syscall_writes(j->tid, &j->st, nr, a)
                               ? range_step(g, inode_key(j->st.st_dev, j->st.st_ino), j->group,
                                            plain_write(j->tid, nr, a), j->len,
                                            (uint64_t)j->st.st_size, &cont)
                               : STEP_ALLOW; /* a read */
        if (step == STEP_COVERED || step == STEP_ALLOW) {
                if (!j->cont)
                        hf_guard_judged(g, j->group); /* charged for nothing to judge */
                respond(g, j->fd, true);
                return false;
        }
        j->range = step == STEP_RANGE;
        return true;
}

static void capture(HfGuard *g, Job *j)
{
        HfGuardMsg *m;
        Fs *fs = j->fs;
        char name[96];
        int r;

        if (j->undecided && !decide(g, j))
                return;
        if (j->range) {
                if (capture_range(g, j))
                        return;
                j->range = false; /* a whole pre-image instead */
        }
        m = calloc(1, sizeof(*m));
        if (!m) {
                respond(g, j->fd, true);
                return;
        }
        HfPreimage *p = &m->pi;
        m->type = HF_GMSG_PREIMAGE;
        fill_pre(j, p);

        pthread_mutex_lock(&fs->lock);
        int dfd = day_dir(g, fs);
        char day[16];
        memcpy(day, fs->day, sizeof(day));
        pthread_mutex_unlock(&fs->lock);
        (void)snprintf(name, sizeof(name), "%llu-%lld-%llu", (unsigned long long)p->ino,
                       (long long)(p->time * 1e9),
                       (unsigned long long)atomic_fetch_add(&g->seq, 1));
        (void)snprintf(p->store_path, sizeof(p->store_path), "shadow/%s/%s", day, name);
        _cleanup_close_ int out = dfd < 0 ? -1
                                          : openat(dfd, name,
                                                   O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0400);
        if (out < 0) {
                r = dfd < 0 ? dfd : -errno;
                log_warning_errno(r, "shadow store %s: cannot create a pre-image of %s: %m",
                                  fs->root, p->path);
                (void)snprintf(p->method, sizeof(p->method), "failed");
                p->store_path[0] = 0;
        } else if (fs->clones && ioctl(out, FICLONE, j->fd) == 0) {
                (void)snprintf(p->method, sizeof(p->method), "reflink");
        } else if ((uint64_t)j->st.st_size > g->c->copy_limit) {
                (void)snprintf(p->method, sizeof(p->method), "skipped-size");
                (void)unlinkat(dfd, name, 0);
                p->store_path[0] = 0;
        } else {
                uint64_t copied = 0;
                r = hf_copy_span(j->fd, 0, (uint64_t)j->st.st_size, out, 0, &copied);
                if (r < 0) {
                        log_warning_errno(r, "shadow store: copying %s failed: %m", p->path);
                        (void)snprintf(p->method, sizeof(p->method), "failed");
                        (void)unlinkat(dfd, name, 0);
                        p->store_path[0] = 0;
                } else {
                        (void)snprintf(p->method, sizeof(p->method), "copy");
                        atomic_fetch_add(&g->st_bytes, copied);
                }
        }
        if (strcmp(p->method, "failed") == 0)
                atomic_fetch_add(&g->st_fail, 1);
        else
                atomic_fetch_add(&g->st_capt, 1);
        /*
         * The group's later writes need no event until the next epoch, or until another
         * group opens the file for write (which removes the mark again): PRE_ACCESS only, so
         * OPEN_PERM keeps coming. Open-perm mode adds no mark at all: the owner is checked
         * at every write-open.
         */
        if (inode_own(g, inode_key(p->dev, p->ino), j->group) && g->mode == HF_MODE_PRE_CONTENT &&
            fs->pre)
                (void)add_ignore(g, j->fd, FAN_PRE_ACCESS);
        /* Recorded before the writer goes on, so main sees the pre-image before the change. */
        push_msg(g, TAKE_PTR(m));
        respond(g, j->fd, true);
}

static void *worker_main(void *arg)
{
        HfGuard *g = arg;
        Job *j;

        hf_guard_allow_pid(g, (pid_t)syscall(SYS_gettid));
        while ((j = hf_queue_pop(g->jobs))) {
                capture(g, j);
                close(j->fd);
                free(j);
        }
        return NULL;
}

/* The sentinel's state folder, should it lie on a protected filesystem. */
static bool in_state(HfGuard *g, const char *path)
{
        const char *st = g->state_real ? g->state_real : g->c->state_dir;
        size_t n = st ? strlen(st) : 0;

        return n && strncmp(path, st, n) == 0 && (path[n] == '/' || path[n] == 0);
}

/*
 * Runs the sentinel's own binary: holdfast recover marking incidents recovered, holdfast
 * incidents reading the database through SQLite's shared memory. The state folder takes their
 * writes; the shadow store takes nobody's.
 */
static bool own_binary(HfGuard *g, pid_t tgid)
{
        HfProcInfo info;

        if (!g->self_exe[0] || hf_procs_get(g->procs, tgid, &info) < 0)
                return false;
        return hf_exe_is(info.exe, g->self_exe);
}

static bool in_protected(HfGuard *g, const char *path)
{
        for (size_t i = 0; i < g->c->n_paths; i++) {
                const char *r = g->c->paths[i];
                size_t n = strlen(r);
                if (strcmp(r, "/") == 0 ||
                    (strncmp(path, r, n) == 0 && (path[n] == '/' || path[n] == 0)))
                        return true;
        }
        return false;
}

static void release_deferred(HfGuard *g)
{
        double now = hf_now_mono();

        for (size_t i = 0; i < g->n_deferred;) {
                Job *j = g->deferred[i];
                bool contained = is_contained(g, j->tgid);
                if (!contained && !charge(g, j->group, now - j->since > DEFER_MAX)) {
                        i++;
                        continue;
                }
                g->deferred[i] = g->deferred[--g->n_deferred];
                if (contained) {
                        /* Stopped while it waited in the tarpit: its write never happens. */
                        atomic_fetch_add(&g->st_denied, 1);
                        answer(g, j->fd, false);
                        free(j);
                        continue;
                }
                j->time = hf_now_real();
                if (hf_queue_push(g->jobs, j) < 0) {
                        answer(g, j->fd, true);
                        free(j);
                }
        }
}

static void handle(HfGuard *g, const struct fanotify_event_metadata *m, const char *ev)
{
        pid_t tid = m->pid, tgid;
        bool write = false, trunc = false;
        long nr = -1;
        unsigned long args[6] = { 0 };
        const char *reason = "write";
        struct stat st;
        char path[HF_PATH_MAX];

        atomic_fetch_add(&g->st_events, 1);
        if (m->mask & FAN_PRE_ACCESS)
                atomic_fetch_add(&g->st_pre, 1);
        if (m->mask & FAN_OPEN_PERM)
                atomic_fetch_add(&g->st_open, 1);
        if (is_self(g, tid, 0)) {
                atomic_fetch_add(&g->st_self, 1);
                return answer(g, m->fd, true);
        }
        tgid = hf_procs_tgid(g->procs, tid);
        if (!tgid)
                tgid = tid;
        if (tgid != tid && is_self(g, tid, tgid))
                return answer(g, m->fd, true);
        if (is_contained(g, tgid)) {
                atomic_fetch_add(&g->st_denied, 1);
                return answer(g, m->fd, false);
        }
        if (fstat(m->fd, &st) < 0 || !S_ISREG(st.st_mode))
                return answer(g, m->fd, true);
        Fs *fs = fs_of_file(g, m->fd, st.st_dev);
        if (!fs)
                return answer(g, m->fd, true);
        bool pre = g->mode == HF_MODE_PRE_CONTENT && fs->pre, unseen = false;
        uint64_t key = inode_key(st.st_dev, st.st_ino);
        if (st.st_size == 0 && !hf_guard_is_decoy(g, st.st_dev, st.st_ino)) {
                /*
                 * Empty: nothing to keep, whoever reads or writes it. An open of an empty file
                 * is a new (or emptied) file, maybe on a reused inode number: forget the
                 * number's past. Its first write makes the writer's group the owner, whose
                 * later writes then cost no event; the ignore mark is PRE_ACCESS only, so a
                 * write-open by any other group still raises OPEN_PERM and re-arms capture
                 * (a file created while the sentinel runs is pre-imaged before the first
                 * change by someone else, not only in the next epoch).
                 */
                if (m->mask & FAN_OPEN_PERM)
                        inode_forget(g, key);
                else if (pre) {
                        HfProcInfo info;
                        bool known = hf_procs_get(g->procs, tgid, &info) == 0;
                        pid_t group = known && info.sid > 1 ? info.sid : tgid;
                        if (inode_own(g, key, group))
                                (void)add_ignore(g, m->fd, FAN_PRE_ACCESS);
                }
                return answer(g, m->fd, true);
        }
        /*
         * The read-lease probe first (fanotify-notes F27): it fails iff anyone holds the
         * inode open for write — the opener included, since write access is taken before the
         * hook. No writer means a read, decided without touching /proc (and without waiting
         * for the caller to be scheduled out, which on a loaded machine costs milliseconds).
         */
        bool writer = fcntl(m->fd, F_SETLEASE, F_RDLCK) < 0;
        if (!writer)
                (void)fcntl(m->fd, F_SETLEASE, F_UNLCK);
        if (!writer) {
                write = false;
        } else if (m->mask & FAN_OPEN_PERM) {
                /* Flags matter only for O_TRUNC of a non-empty file, or when another
                 * process is the writer and this open may be a read. */
                long fl = open_flags(tid, false);
                if (fl < 0) {
                        /* Unknown opener (io_uring, or not scheduled out yet): assume the
                         * worst; in pre-content mode a worker asks again, with patience. */
                        unseen = true;
                        write = true;
                        trunc = true;
                } else {
                        write = open_writes(fl);
                        trunc = (fl & O_TRUNC) != 0;
                }
                reason = trunc ? "open-trunc" : "open-write";
        } else if (m->mask & FAN_PRE_ACCESS) {
                write = pre_access_is_write(tid, &st, &nr, args, false);
                unseen = nr < 0;
        }

        if (!write) {
                if ((m->mask & FAN_PRE_ACCESS) && !writer) {
                        /* Nobody writes it: later reads need no event. A write-open removes
                         * this ignore again (below). */
                        if (add_ignore(g, m->fd, FAN_PRE_ACCESS) == 0)
                                atomic_fetch_add(&g->st_readign, 1);
                }
                return answer(g, m->fd, true);
        }

        fd_path(m->fd, path, sizeof(path));
        const char *base = strrchr(path, '/');
        /* The name too: a deleted decoy's inode number may be reused by another file. */
        bool decoy = hf_guard_is_decoy(g, st.st_dev, st.st_ino) && base && hf_decoy_name(base + 1);
        bool state = !decoy && in_state(g, path);
        bool config = !decoy && g->c->config_path && strcmp(path, g->c->config_path) == 0;
        bool ours = !decoy && (in_store(fs, path) || config || (state && !own_binary(g, tgid)));
        if ((decoy || ours) && unseen) {
                /*
                 * A denial kills the caller, so it must not rest on a guess: a reader (recover
                 * reading the shadow store while the sentinel appends to its range log) whose
                 * system call did not show in the reader's short wait is asked again, with a
                 * worker's patience. Only accesses to such files pay for it.
                 */
                bool w;
                if (m->mask & FAN_OPEN_PERM) {
                        long fl = open_flags(tid, true);
                        w = fl < 0 || open_writes(fl);
                } else
                        w = pre_access_is_write(tid, &st, &nr, args, true);
                if (!w)
                        return answer(g, m->fd, true);
        }
        if (decoy) {
                atomic_fetch_add(&g->st_denied, 1);
                respond(g, m->fd, false);
                report(g, HF_GMSG_DECOY, tgid, &st, path);
                close(m->fd);
                return;
        }
        if (ours) {
                atomic_fetch_add(&g->st_denied, 1);
                respond(g, m->fd, false);
                report(g, HF_GMSG_SELF, tgid, &st, path);
                close(m->fd);
                return;
        }
        if (state) /* holdfast's own binary: allowed, and asked again next time */
                return answer(g, m->fd, true);
        if (!in_protected(g, path)) {
                /* Same filesystem, outside the protected trees: never again this epoch. */
                (void)add_ignore(g, m->fd, g->perm_mask);
                return answer(g, m->fd, true);
        }
        HfProcInfo info;
        bool known = hf_procs_get(g->procs, tgid, &info) == 0;
        pid_t group = known && info.sid > 1 ? info.sid : tgid;
        bool open_write = (m->mask & FAN_OPEN_PERM) && !trunc;
        if (known && info.trusted) {
                /* Nothing kept for a trusted writer, but its change ends the coverage of the
                 * group that owned the inode: that group's next write is captured again. */
                if ((m->mask & FAN_OPEN_PERM) && inode_rearm(g, key, group, true) && pre)
                        (void)fanotify_mark(g->fan, FAN_MARK_REMOVE | FAN_MARK_IGNORE,
                                            FAN_PRE_ACCESS, m->fd, NULL);
                return answer(g, m->fd, true);
        }
        if (open_write && pre) {
                open_for_write(g, fs, m->fd, &st, group, tgid);
                return answer(g, m->fd, true);
        }
        /*
         * A first write (PRE_ACCESS), an O_TRUNC open, or any write-open on the open-perm
         * fallback. The owner's own changes are covered by its earlier pre-image, or by its
         * ranges so far: then this change is kept as one more range when it is a write of
         * a small part, else by a whole pre-image that ends the run.
         */
        uint64_t r_off = 0, r_len = 0, size = (uint64_t)st.st_size;
        bool has_range = pre && (m->mask & FAN_PRE_ACCESS) && fs->ranges &&
                         event_range(ev, m->event_len, size, &r_off, &r_len);
        /* The caller was not yet in its system call (or, opening, not seen at all): in
         * pre-content mode a worker asks again, with patience. */
        bool undecided = (has_range && nr == -2) || ((m->mask & FAN_OPEN_PERM) && pre && unseen);
        int kind = !has_range ? 0 : undecided ? -1 : plain_write(tid, nr, args);
        bool cont;
        Step step = range_step(g, key, group, kind, r_len, size, &cont);
        if (step == STEP_COVERED) {
                if ((m->mask & FAN_PRE_ACCESS) && inode_own(g, key, group))
                        (void)add_ignore(g, m->fd, FAN_PRE_ACCESS);
                return answer(g, m->fd, true);
        }
        if (step == STEP_ALLOW)
                return answer(g, m->fd, true);
        if ((m->mask & FAN_OPEN_PERM) && !pre && g->c->pins)
                pin(g, fs, m->fd, &st, tgid);
        Job *j = calloc(1, sizeof(*j));
        if (!j)
                return answer(g, m->fd, true);
        *j = (Job){ .fd = m->fd,
                    .tid = tid,
                    .tgid = tgid,
                    .fs = fs,
                    .st = st,
                    .reason = (m->mask & FAN_OPEN_PERM) ? reason : "write",
                    .time = hf_now_real(),
                    .group = group,
                    .since = hf_now_mono(),
                    .range = step == STEP_RANGE,
                    .open = (m->mask & FAN_OPEN_PERM) != 0,
                    .undecided = undecided,
                    .cont = cont,
                    .off = r_off,
                    .len = r_len };
        /* A run's later captures are of a file already charged. */
        if (!cont && !charge(g, group, false)) {
                if (g->n_deferred < DEFERRED_MAX) {
                        atomic_fetch_add(&g->st_deferred, 1);
                        g->deferred[g->n_deferred++] = j;
                        return;
                }
                (void)charge(g, group, true);
        }
        if (hf_queue_push(g->jobs, j) < 0) {
                answer(g, m->fd, true);
                free(j);
        }
}

static void readd_dir_ignores(HfGuard *g)
{
        for (size_t i = 0, n = n_fs(g); i < n; i++) {
                Fs *fs = &g->fs[i];
                pthread_mutex_lock(&fs->lock);
                if (fs->day_fd >= 0 && g->mode == HF_MODE_PRE_CONTENT && fs->pre)
                        (void)fanotify_mark(g->fan, FAN_MARK_ADD | FAN_MARK_IGNORE_SURV,
                                            FAN_PRE_ACCESS | FAN_EVENT_ON_CHILD, fs->day_fd, NULL);
                pthread_mutex_unlock(&fs->lock);
        }
}

static void *reader_main(void *arg)
{
        HfGuard *g = arg;
        _Alignas(struct fanotify_event_metadata) char buf[65536];

        hf_guard_allow_pid(g, (pid_t)syscall(SYS_gettid));
        g->last_epoch = hf_now_mono();
        while (!atomic_load(&g->stop)) {
                struct pollfd pfd = { .fd = g->fan, .events = POLLIN };
                int k = poll(&pfd, 1, g->n_deferred ? 2 : 200);
                if (g->n_deferred)
                        release_deferred(g);
                if (g->c->epoch && hf_now_mono() - g->last_epoch > g->c->epoch) {
                        /* A new epoch: every file gets a fresh pre-image on its next change. */
                        (void)fanotify_mark(g->fan, FAN_MARK_FLUSH | FAN_MARK_INODE, 0, AT_FDCWD,
                                            NULL);
                        readd_dir_ignores(g);
                        pthread_mutex_lock(&g->lock);
                        memset(g->inodes, 0, INODES * sizeof(Inode));
                        pthread_mutex_unlock(&g->lock);
                        g->last_epoch = hf_now_mono();
                }
                if (k <= 0)
                        continue;
                ssize_t n = read(g->fan, buf, sizeof(buf));
                if (n <= 0)
                        continue;
                /* Headers are copied out: FAN_EVENT_NEXT() would read them in place, and
                 * records need not be aligned for struct fanotify_event_metadata. */
                size_t off = 0;
                while ((size_t)n - off >= sizeof(struct fanotify_event_metadata)) {
                        struct fanotify_event_metadata m;
                        memcpy(&m, buf + off, sizeof(m));
                        if (m.event_len < sizeof(m) || m.event_len > (size_t)n - off)
                                break;
                        off += m.event_len;
                        if (m.vers != FANOTIFY_METADATA_VERSION || m.fd < 0)
                                continue;
                        handle(g, &m, buf + off - m.event_len);
                }
        }
        return NULL;
}

int hf_guard_new(const HfSentinelConfig *c, HfMode want, HfProcs *procs, HfGuard **ret,
                 HfMode *ret_mode, char *why, size_t whyn)
{
        _cleanup_(hf_guard_freep) HfGuard *g = calloc(1, sizeof(*g));
        int r;

        if (!g)
                return -ENOMEM;
        g->fan = g->wake_fd = -1;
        g->c = c;
        g->procs = procs;
        g->self = getpid();
        {
                ssize_t k = readlink("/proc/self/exe", g->self_exe, sizeof(g->self_exe) - 1);
                g->self_exe[k > 0 ? k : 0] = 0;
        }
        g->state_real = c->state_dir ? realpath(c->state_dir, NULL) : NULL;
        test_unseen_opener = getenv("HOLDFAST_GUARD_TEST_UNSEEN_OPENER") != NULL;
        pthread_mutex_init(&g->lock, NULL);
        pthread_cond_init(&g->space, NULL);
        g->ring = calloc(RING_MAX, sizeof(HfGuardMsg *));
        g->inodes = calloc(INODES, sizeof(Inode));
        if (!g->ring || !g->inodes)
                return -ENOMEM;
        g->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (g->wake_fd < 0)
                return -errno;
        r = hf_queue_new(4096, &g->jobs);
        if (r < 0)
                return r;

        unsigned flags = FAN_CLOEXEC | FAN_REPORT_TID | FAN_UNLIMITED_QUEUE | FAN_UNLIMITED_MARKS;
        if (want == HF_MODE_AUTO || want == HF_MODE_PRE_CONTENT) {
                g->fan = fanotify_init(flags | FAN_CLASS_PRE_CONTENT,
                                       O_RDONLY | O_LARGEFILE | O_CLOEXEC);
                if (g->fan >= 0) {
                        /* Does this kernel know FAN_PRE_ACCESS? Mark a known-good fs. */
                        int t = fanotify_mark(g->fan, FAN_MARK_ADD | FAN_MARK_FILESYSTEM,
                                              FAN_PRE_ACCESS, AT_FDCWD,
                                              c->n_paths ? c->paths[0] : "/");
                        if (t == 0 || errno == EOPNOTSUPP || errno == EXDEV) {
                                if (t == 0)
                                        (void)fanotify_mark(g->fan,
                                                            FAN_MARK_REMOVE | FAN_MARK_FILESYSTEM,
                                                            FAN_PRE_ACCESS, AT_FDCWD, c->paths[0]);
                                g->mode = HF_MODE_PRE_CONTENT;
                                g->perm_mask = FAN_PRE_ACCESS | FAN_OPEN_PERM;
                        } else {
                                closep(&g->fan);
                                g->fan = -1;
                        }
                }
        }
        if (g->fan < 0 && want != HF_MODE_NOTIFY) {
                g->fan = fanotify_init(flags | FAN_CLASS_CONTENT,
                                       O_RDONLY | O_LARGEFILE | O_CLOEXEC);
                if (g->fan >= 0) {
                        g->mode = HF_MODE_OPEN_PERM;
                        g->perm_mask = FAN_OPEN_PERM;
                }
        }
        if (g->fan < 0) {
                *ret_mode = HF_MODE_NOTIFY;
                (void)snprintf(why, whyn, "%s",
                               want == HF_MODE_NOTIFY ? "notify mode requested"
                                                      : "no fanotify permission events");
                return -EOPNOTSUPP;
        }
        *ret_mode = g->mode;
        *ret = TAKE_PTR(g);
        return 0;
}

/*
 * Whether files in dfd's folder can be cloned (xfs made with reflink=1, and others that share
 * extents) or must be copied (ext4, xfs made with reflink=0): one file of a block cloned into
 * another. The answer decides the method named in the mode line and spares a
 * failing ioctl per pre-image where cloning cannot work.
 */
static bool probe_clones(int dfd)
{
        static const char *const names[2] = { "probe-src", "probe-dst" };
        char block[4096] = { 0 };
        int fd[2] = { -1, -1 };
        bool ok = false;

        for (int i = 0; i < 2; i++) {
                fd[i] = openat(dfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
                if (fd[i] < 0) {
                        /* A filesystem without O_TMPFILE: named, and gone at once. */
                        (void)unlinkat(dfd, names[i], 0);
                        fd[i] = openat(dfd, names[i],
                                       O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0600);
                        (void)unlinkat(dfd, names[i], 0);
                }
                if (fd[i] < 0)
                        goto out;
        }
        ok = hf_write_all(fd[0], block, sizeof(block)) >= 0 && ioctl(fd[1], FICLONE, fd[0]) == 0;
out:
        for (int i = 0; i < 2; i++)
                if (fd[i] >= 0)
                        close(fd[i]);
        return ok;
}

int hf_guard_add_fs(HfGuard *g, const char *root, bool *ret_pre, bool *ret_clones)
{
        struct stat st;
        Fs *fs;
        int r;

        if (stat(root, &st) < 0)
                return -errno;
        fs = find_fs(g, st.st_dev);
        if (fs) {
                *ret_pre = fs->pre;
                *ret_clones = fs->clones;
                return 0;
        }
        if (g->n_fs >= MAX_FS)
                return -E2BIG;
        fs = &g->fs[g->n_fs];
        *fs = (Fs){ .dev = st.st_dev,
                    .mnt_id = hf_mount_id(AT_FDCWD, root),
                    .store_fd = -1,
                    .shadow_fd = -1,
                    .pins_fd = -1,
                    .day_fd = -1,
                    .range_fd = -1 };
        pthread_mutex_init(&fs->lock, NULL);
        (void)snprintf(fs->root, sizeof(fs->root), "%s", root);

        char p[640];
        (void)snprintf(p, sizeof(p), "%s/" HF_STORE_DIR, strcmp(root, "/") ? root : "");
        if (mkdir(p, 0700) < 0 && errno != EEXIST) {
                r = log_error_errno(errno, "%s: cannot create: %m", p);
                goto fail;
        }
        fs->store_fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fs->store_fd < 0) {
                r = log_error_errno(errno, "%s: cannot open: %m", p);
                goto fail;
        }
        (void)fchmod(fs->store_fd, 0700);
        (void)mkdirat(fs->store_fd, "shadow", 0700);
        (void)mkdirat(fs->store_fd, "pins", 0700);
        fs->shadow_fd = openat(fs->store_fd, "shadow",
                               O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        /* btrfs never frees part of an extent: a file's overwritten blocks stay allocated in
         * its old extent, which a whole clone shares for the cost of its metadata. A range
         * copy would keep them twice. */
        struct statfs sfs;
        bool btrfs = fstatfs(fs->store_fd, &sfs) == 0 && sfs.f_type == BTRFS_SUPER_MAGIC;
        fs->ranges = !btrfs;
        fs->pins_fd = openat(fs->store_fd, "pins", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fs->shadow_fd < 0) {
                r = log_error_errno(errno, "%s/shadow: cannot open: %m", p);
                goto fail;
        }
        /*
         * btrfs always clones, and only there can this filesystem be marked already: its
         * subvolumes have device numbers of their own, so a second one is a new Fs while
         * the first one's marks hold the probe's open until the guard starts.
         */
        fs->clones = btrfs || probe_clones(fs->shadow_fd);

        fs->pre = false;
        if (g->mode == HF_MODE_PRE_CONTENT) {
                r = fanotify_mark(g->fan, FAN_MARK_ADD | FAN_MARK_FILESYSTEM,
                                  FAN_PRE_ACCESS | FAN_OPEN_PERM, AT_FDCWD, root);
                if (r == 0)
                        fs->pre = true;
        }
        if (!fs->pre) {
                r = fanotify_mark(g->fan, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_OPEN_PERM,
                                  AT_FDCWD, root);
                if (r < 0) {
                        r = log_error_errno(errno, "%s: fanotify filesystem mark: %m", root);
                        goto fail;
                }
        }
        __atomic_store_n(&g->n_fs, g->n_fs + 1, __ATOMIC_RELEASE);
        *ret_pre = fs->pre;
        *ret_clones = fs->clones;
        return 0;
fail:
        closep(&fs->store_fd);
        closep(&fs->shadow_fd);
        closep(&fs->pins_fd);
        pthread_mutex_destroy(&fs->lock);
        return r;
}

int hf_guard_start(HfGuard *g)
{
        int r = pthread_create(&g->reader, NULL, reader_main, g);
        if (r)
                return -r;
        for (int i = 0; i < WORKERS; i++) {
                r = pthread_create(&g->workers[i], NULL, worker_main, g);
                if (r)
                        return -r;
        }
        g->started = true;
        return 0;
}

HfGuard *hf_guard_free(HfGuard *g)
{
        if (!g)
                return NULL;
        if (g->started) {
                atomic_store(&g->stop, true);
                pthread_cond_broadcast(&g->space);
                hf_queue_close(g->jobs);
                for (int i = 0; i < WORKERS; i++)
                        pthread_join(g->workers[i], NULL);
                pthread_join(g->reader, NULL);
        }
        for (size_t i = 0; i < g->n_deferred; i++) {
                respond(g, g->deferred[i]->fd, true);
                close(g->deferred[i]->fd);
                free(g->deferred[i]);
        }
        /* Closing the group allows every pending event (the kernel answers them). */
        closep(&g->fan);
        closep(&g->wake_fd);
        for (size_t i = 0; i < g->n_fs; i++) {
                closep(&g->fs[i].store_fd);
                closep(&g->fs[i].shadow_fd);
                closep(&g->fs[i].pins_fd);
                closep(&g->fs[i].day_fd);
                closep(&g->fs[i].range_fd);
        }
        if (g->ring) {
                for (size_t i = 0; i < g->count; i++)
                        free(g->ring[(g->head + i) % RING_MAX]);
                free(g->ring);
        }
        free(g->inodes);
        free(g->state_real);
        hf_queue_free(g->jobs);
        free(g);
        return NULL;
}
