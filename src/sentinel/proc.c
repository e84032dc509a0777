/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Process tracker: who a pid is (exe, cmdline, user, session, cgroup) and whether it is
 * trusted. Filled on first sight — for most processes that is a permission event, while the
 * process is blocked and so certainly alive — and kept after the process exits, so events
 * read later can still be attributed. Bounded: a fixed open-addressing table; the oldest
 * entry is replaced when a probe sequence is full.
 */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../base/log.h"
#include "../base/util.h"
#include "../crypto/crypto.h"
#include "sentinel-internal.h"

#define PROCS_SIZE 16384 /* power of two */
#define PROBES 16
#define TID_SIZE 4096
#define EXE_CACHE 256

typedef struct Entry {
        HfProcInfo info;
        double seen;
        bool used;
        bool tree;   /* trusted, and descendants inherit it */
        uint8_t cfg; /* trust by the config: 0 no, 1 yes, 2 with descendants */
} Entry;

typedef struct ExeHash {
        uint64_t dev, ino;
        int64_t mtime;
        uint8_t sha[32];
        bool ok;
} ExeHash;

struct HfProcs {
        pthread_mutex_t lock;
        const HfSentinelConfig *config;
        Entry *tab;
        struct {
                pid_t tid, tgid;
        } tids[TID_SIZE];
        ExeHash exe[EXE_CACHE];
        pid_t self;
};

double hf_now_real(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int hf_procs_new(const HfSentinelConfig *c, HfProcs **ret)
{
        HfProcs *p = calloc(1, sizeof(*p));

        if (!p)
                return -ENOMEM;
        p->tab = calloc(PROCS_SIZE, sizeof(Entry));
        if (!p->tab) {
                free(p);
                return -ENOMEM;
        }
        pthread_mutex_init(&p->lock, NULL);
        p->config = c;
        p->self = getpid();
        *ret = p;
        return 0;
}

HfProcs *hf_procs_free(HfProcs *p)
{
        if (!p)
                return NULL;
        pthread_mutex_destroy(&p->lock);
        free(p->tab);
        free(p);
        return NULL;
}

int hf_sha256_fd(int fd, uint64_t max, uint8_t out[32])
{
        _cleanup_(hf_sha256_freep) HfSha256 *s = NULL;
        uint8_t buf[65536];
        uint64_t total = 0;
        off_t off = 0;
        HfId id;
        int r = hf_sha256_new(&s);

        if (r < 0)
                return r;
        for (;;) {
                ssize_t n = pread(fd, buf, sizeof(buf), off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                total += (uint64_t)n;
                if (total > max)
                        return -E2BIG;
                hf_sha256_update(s, buf, (size_t)n);
                off += n;
        }
        hf_sha256_final(s, &id);
        memcpy(out, id.b, 32);
        return 0;
}

static int proc_stat(pid_t pid, pid_t *ppid, pid_t *sid, uint64_t *start, char *ret_state);

int hf_proc_stat(pid_t pid, pid_t *ppid, pid_t *sid, uint64_t *start)
{
        return proc_stat(pid, ppid, sid, start, NULL);
}

int hf_proc_stat_state(pid_t pid, pid_t *ppid, pid_t *sid, char *state)
{
        return proc_stat(pid, ppid, sid, NULL, state);
}

static int proc_stat(pid_t pid, pid_t *ppid, pid_t *sid, uint64_t *start, char *ret_state)
{
        char path[64], buf[1024];
        _cleanup_close_ int fd = -1;
        ssize_t n;

        (void)snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        n = read(fd, buf, sizeof(buf) - 1);
        if (n <= 0)
                return n < 0 ? -errno : -EIO;
        buf[n] = 0;
        /* comm may hold spaces and parentheses: parse after the last ')'. */
        char *q = strrchr(buf, ')');
        if (!q)
                return -EPROTO;
        char state;
        int pp, pg, se;
        unsigned long long st = 0;
        /* fields 3.. : state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
         * utime stime cutime cstime priority nice threads itrealvalue starttime */
        if (sscanf(q + 1,
                   " %c %d %d %d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
                   &state, &pp, &pg, &se, &st) != 5)
                return -EPROTO;
        if (ppid)
                *ppid = pp;
        if (sid)
                *sid = se;
        if (start)
                *start = st;
        if (ret_state)
                *ret_state = state;
        return 0;
}

static void read_small(const char *path, char *out, size_t n, bool nul_to_space)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t k;

        out[0] = 0;
        if (fd < 0)
                return;
        k = read(fd, out, n - 1);
        if (k <= 0)
                return;
        out[k] = 0;
        if (nul_to_space) {
                for (ssize_t i = 0; i < k; i++)
                        if (out[i] == 0)
                                out[i] = ' ';
                while (k > 0 && out[k - 1] == ' ')
                        out[--k] = 0;
        }
        if (k > 0 && out[k - 1] == '\n')
                out[k - 1] = 0;
}

static int load(pid_t pid, HfProcInfo *info)
{
        char path[64], buf[512];
        int r;

        memset(info, 0, sizeof(*info));
        info->pid = pid;
        r = hf_proc_stat(pid, &info->ppid, &info->sid, &info->start);
        if (r < 0)
                return r;
        (void)snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
        ssize_t n = readlink(path, info->exe, sizeof(info->exe) - 1);
        info->exe[n > 0 ? n : 0] = 0;
        (void)snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
        read_small(path, info->comm, sizeof(info->comm), false);
        (void)snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
        read_small(path, info->cmdline, sizeof(info->cmdline), true);
        (void)snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
        read_small(path, buf, sizeof(buf), false);
        /* The v2 line is "0::/path". */
        char *l = strstr(buf, "0::");
        if (l && (l == buf || l[-1] == '\n')) {
                char *e = strchr(l + 3, '\n');
                if (e)
                        *e = 0;
                (void)snprintf(info->cgroup, sizeof(info->cgroup), "%s", l + 3);
        }
        (void)snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (f) {
                char line[256];
                while (fgets(line, sizeof(line), f)) {
                        unsigned u;
                        if (sscanf(line, "Uid: %u", &u) == 1)
                                info->uid = u;
                        else if (sscanf(line, "Gid: %u", &u) == 1) {
                                info->gid = u;
                                break;
                        }
                }
        }
        return 0;
}

static Entry *find(HfProcs *p, pid_t pid)
{
        size_t h = ((size_t)pid * 2654435761u) & (PROCS_SIZE - 1);

        for (int i = 0; i < PROBES; i++) {
                Entry *e = &p->tab[(h + (size_t)i) & (PROCS_SIZE - 1)];
                if (e->used && e->info.pid == pid)
                        return e;
        }
        return NULL;
}

static Entry *slot(HfProcs *p, pid_t pid)
{
        size_t h = ((size_t)pid * 2654435761u) & (PROCS_SIZE - 1);
        Entry *oldest = NULL;

        for (int i = 0; i < PROBES; i++) {
                Entry *e = &p->tab[(h + (size_t)i) & (PROCS_SIZE - 1)];
                if (!e->used)
                        return e;
                if (!oldest || e->seen < oldest->seen)
                        oldest = e;
        }
        return oldest;
}

static bool exe_sha_matches(HfProcs *p, pid_t pid, const uint8_t want[32])
{
        char path[64];
        struct stat st;

        (void)snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0)
                return false;
        ExeHash *h = &p->exe[(st.st_ino ^ st.st_dev) % EXE_CACHE];
        if (!(h->ok && h->dev == st.st_dev && h->ino == st.st_ino &&
              h->mtime == (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec)) {
                if (hf_sha256_fd(fd, 1ULL << 30, h->sha) < 0)
                        return false;
                h->dev = st.st_dev;
                h->ino = st.st_ino;
                h->mtime = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
                h->ok = true;
        }
        return memcmp(h->sha, want, 32) == 0;
}

/* Called with the lock held; info is filled except trusted. */
static Entry *get_locked(HfProcs *p, pid_t pid, int depth);

bool hf_exe_is(const char *exe, const char *path)
{
        static const char deleted[] = " (deleted)";
        size_t n = strlen(path);

        return strncmp(exe, path, n) == 0 && (exe[n] == 0 || strcmp(exe + n, deleted) == 0);
}

/* By the config: 0 not trusted, 1 trusted, 2 trusted and its descendants too. */
static int trusted_locked(HfProcs *p, const HfProcInfo *info, int depth)
{
        const HfSentinelConfig *c = p->config;

        if (depth < 12 && info->ppid > 1) {
                Entry *pe = get_locked(p, info->ppid, depth + 1);
                if (pe && pe->cfg == 2)
                        return 2;
        }
        for (size_t i = 0; i < c->n_trusted; i++) {
                const HfTrusted *t = &c->trusted[i];
                if (!hf_exe_is(info->exe, t->path))
                        continue;
                if (t->parent) {
                        Entry *pe = info->ppid > 0 ? get_locked(p, info->ppid, depth + 1) : NULL;
                        if (!pe || !hf_exe_is(pe->info.exe, t->parent))
                                continue;
                }
                if (t->has_sha256 && !exe_sha_matches(p, info->pid, t->sha256))
                        continue;
                return t->tree ? 2 : 1;
        }
        return 0;
}

static void settle(Entry *e)
{
        e->info.trusted = e->cfg > 0;
        e->tree = e->cfg == 2;
}

static Entry *get_locked(HfProcs *p, pid_t pid, int depth)
{
        double now = hf_now_mono();
        Entry *e = find(p, pid);

        if (e) {
                /* Revalidate old entries: the pid may have been reused. */
                if (!e->info.gone && now - e->seen > 30) {
                        uint64_t st = 0;
                        if (hf_proc_stat(pid, NULL, NULL, &st) < 0)
                                e->info.gone = true;
                        else if (st != e->info.start)
                                e = NULL;
                        else
                                e->seen = now;
                }
                if (e)
                        return e;
        }
        HfProcInfo info;
        if (load(pid, &info) < 0)
                return NULL;
        e = find(p, pid);
        if (!e)
                e = slot(p, pid);
        e->used = true;
        e->info = info;
        e->seen = now;
        e->cfg = 0;
        if (depth < 16) {
                int t = trusted_locked(p, &info, depth);
                /* The recursion may have moved entries: find ours again. */
                e = find(p, pid);
                if (!e)
                        return NULL;
                e->cfg = (uint8_t)t;
        }
        settle(e);
        return e;
}

int hf_procs_get(HfProcs *p, pid_t pid, HfProcInfo *ret)
{
        int r = 0;

        pthread_mutex_lock(&p->lock);
        Entry *e = get_locked(p, pid, 0);
        if (e)
                *ret = e->info;
        else
                r = -ESRCH;
        pthread_mutex_unlock(&p->lock);
        return r;
}

pid_t hf_procs_tgid(HfProcs *p, pid_t tid)
{
        char path[64], line[128];
        size_t h = (size_t)tid % TID_SIZE;
        pid_t tgid = 0;

        pthread_mutex_lock(&p->lock);
        if (p->tids[h].tid == tid)
                tgid = p->tids[h].tgid;
        pthread_mutex_unlock(&p->lock);
        if (tgid)
                return tgid;
        /* /proc/TID/task/TID exists under the leader only when tid is the leader. */
        (void)snprintf(path, sizeof(path), "/proc/%d/status", (int)tid);
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f)) {
                int v;
                if (sscanf(line, "Tgid: %d", &v) == 1) {
                        tgid = v;
                        break;
                }
        }
        pthread_mutex_lock(&p->lock);
        p->tids[h].tid = tid;
        p->tids[h].tgid = tgid;
        pthread_mutex_unlock(&p->lock);
        return tgid;
}
