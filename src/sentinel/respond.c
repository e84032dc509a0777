/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Containment: stop the whole group at once, keep each binary as evidence, then kill. On
 * cgroup v2 (found at run time: /sys/fs/cgroup, or /sys/fs/cgroup/unified in the hybrid
 * layout) the members are moved into a cgroup of our own that is frozen before the first one
 * enters, so a member that forks while the others are being moved cannot escape; without it,
 * SIGSTOP sweeps repeat until every member is seen stopped. Never pid 1, never the sentinel
 * or its ancestors, never kernel threads.
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../base/log.h"
#include "../base/util.h"
#include "sentinel-internal.h"

typedef struct P {
        pid_t pid, ppid, sid;
        char state;
} P;

enum {
        MAXP = 65536
};

static size_t scan(P *out, size_t max)
{
        _cleanup_(closedirp_) DIR *d = NULL;
        size_t n = 0;

        d = opendir("/proc");
        if (!d)
                return 0;
        struct dirent *de;
        while ((de = readdir(d)) && n < max) {
                char *end;
                long pid = strtol(de->d_name, &end, 10);
                if (*end || pid <= 0)
                        continue;
                P p = { .pid = (pid_t)pid };
                if (hf_proc_stat_state(p.pid, &p.ppid, &p.sid, &p.state) < 0)
                        continue;
                if (p.ppid == 2 || p.pid == 2) /* kthreadd's children */
                        continue;
                out[n++] = p;
        }
        return n;
}

static bool has(const pid_t *v, size_t n, pid_t x)
{
        for (size_t i = 0; i < n; i++)
                if (v[i] == x)
                        return true;
        return false;
}

static bool protected_pid(const HfContainment *c, pid_t pid)
{
        return pid <= 1 || pid == getpid() || has(c->anc, c->n_anc, pid);
}

static int write_str(const char *dir, const char *file, const char *v)
{
        char p[HF_PATH_MAX];
        (void)snprintf(p, sizeof(p), "%s/%s", dir, file);
        _cleanup_close_ int fd = open(p, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return write(fd, v, strlen(v)) < 0 ? -errno : 0;
}

/* "frozen 1" in cgroup.events: every task of the cgroup is frozen (or stopped). */
static bool cgroup_frozen(const char *dir)
{
        char p[HF_PATH_MAX], line[64];
        bool r = false;

        (void)snprintf(p, sizeof(p), "%s/cgroup.events", dir);
        _cleanup_fclose_ FILE *f = fopen(p, "re");
        while (f && fgets(line, sizeof(line), f))
                if (strncmp(line, "frozen ", 7) == 0)
                        r = line[7] == '1';
        return r;
}

static int add_member(HfContainment *c, pid_t pid)
{
        if (has(c->pids, c->n_pids, pid))
                return 0;
        if (c->n_pids == c->cap) {
                size_t cap = c->cap ? c->cap * 2 : 64;
                if (cap > MAXP)
                        return -E2BIG;
                pid_t *nv = realloc(c->pids, cap * sizeof(pid_t));
                if (!nv)
                        return -ENOMEM;
                c->pids = nv;
                c->cap = cap;
        }
        c->pids[c->n_pids++] = pid;
        /* SIGSTOP as well: immediate for the fallback, and "stopped" stays true should the
         * process leave the frozen cgroup. A pending stop also makes a fork fail and restart
         * (copy_process checks for pending signals), so the member cannot grow new ones. */
        (void)kill(pid, SIGSTOP);
        if (c->cgroup[0]) {
                char v[32];
                (void)snprintf(v, sizeof(v), "%d\n", (int)pid);
                (void)write_str(c->cgroup, "cgroup.procs", v);
        }
        if (c->on_member)
                c->on_member(c->userdata, pid);
        return 1;
}

/* Makes <cg_root>/holdfast-contain/<name>, frozen before anything enters it. */
static int make_cgroup(HfContainment *c, const char *cg_root, const char *name)
{
        char parent[320];
        int r;

        if (strlen(cg_root) + strlen(name) + 20 > sizeof(parent))
                return -ENAMETOOLONG;
        (void)snprintf(parent, sizeof(parent), "%s/holdfast-contain", cg_root);
        if (mkdir(parent, 0755) < 0 && errno != EEXIST)
                return -errno;
        (void)snprintf(c->cgroup, sizeof(c->cgroup), "%s/%.150s", parent, name);
        if (mkdir(c->cgroup, 0755) < 0 && errno != EEXIST) {
                r = -errno;
                c->cgroup[0] = 0;
                return r;
        }
        r = write_str(c->cgroup, "cgroup.freeze", "1");
        if (r < 0) {
                /* No freezer (Linux < 5.2): signals alone. */
                (void)rmdir(c->cgroup);
                c->cgroup[0] = 0;
                return r;
        }
        return 0;
}

/* Members the kernel put into the cgroup for us (children forked while their parent was
 * being moved). */
static int adopt_cgroup_procs(HfContainment *c)
{
        char p[HF_PATH_MAX];
        int n = 0, v;

        (void)snprintf(p, sizeof(p), "%s/cgroup.procs", c->cgroup);
        _cleanup_fclose_ FILE *f = fopen(p, "re");
        while (f && fscanf(f, "%d", &v) == 1)
                if (v > 0 && !has(c->pids, c->n_pids, v) && add_member(c, v) > 0)
                        n++;
        return n;
}

static bool all_stopped(const HfContainment *c)
{
        for (size_t i = 0; i < c->n_pids; i++) {
                char st = 0;
                if (hf_proc_stat_state(c->pids[i], NULL, NULL, &st) < 0)
                        continue; /* gone */
                if (st != 'T' && st != 't' && st != 'Z' && st != 'X')
                        return false;
        }
        return true;
}

int hf_respond_stop(HfContainment *c, const char *cg_root, const char *name, pid_t sid,
                    const pid_t *seed, size_t n_seed)
{
        _cleanup_free_ P *ps = calloc(MAXP, sizeof(P));
        size_t before = c->n_pids;
        int r;

        if (!ps)
                return -ENOMEM;
        if (!c->started) {
                /* Our own ancestors (a shell that started us may share the attacker's
                 * session). */
                c->n_anc = 0;
                for (pid_t p = getppid(); p > 1 && c->n_anc < ELEMENTSOF(c->anc);) {
                        c->anc[c->n_anc++] = p;
                        pid_t pp;
                        if (hf_proc_stat(p, &pp, NULL, NULL) < 0)
                                break;
                        p = pp;
                }
                c->sid = sid;
                c->started = true;
                if (cg_root && cg_root[0] && make_cgroup(c, cg_root, name) < 0)
                        log_debug("containment: no cgroup v2 freezer, signals only");
        }
        for (size_t i = 0; i < n_seed; i++)
                if (!protected_pid(c, seed[i])) {
                        r = add_member(c, seed[i]);
                        if (r < 0)
                                return r;
                }
        /*
         * Sweep until a full pass finds nobody new and every member is confirmed frozen (the
         * cgroup says so) or stopped (/proc says T). A frozen or stopped process cannot fork,
         * so a pass after that point that finds no new member is conclusive; a child forked
         * while its parent was being moved is in the cgroup already (fork and migration are
         * serialised) and is picked up from cgroup.procs.
         */
        double deadline = hf_now_mono() + 2.0;
        for (unsigned round = 0;; round++) {
                size_t np = scan(ps, MAXP), grown = 0;
                bool grew = true;
                while (grew) {
                        grew = false;
                        for (size_t i = 0; i < np; i++) {
                                if (has(c->pids, c->n_pids, ps[i].pid) ||
                                    protected_pid(c, ps[i].pid))
                                        continue;
                                if ((c->sid > 1 && ps[i].sid == c->sid) ||
                                    has(c->pids, c->n_pids, ps[i].ppid)) {
                                        r = add_member(c, ps[i].pid);
                                        if (r < 0)
                                                return r;
                                        grew = true;
                                        grown++;
                                }
                        }
                }
                if (c->cgroup[0])
                        grown += (size_t)adopt_cgroup_procs(c);
                bool still = c->cgroup[0] ? cgroup_frozen(c->cgroup) : all_stopped(c);
                if (grown == 0 && still)
                        break;
                if (hf_now_mono() > deadline) {
                        log_warning("containment: %zu process(es) not confirmed %s after 2 s "
                                    "(blocked in the kernel?)",
                                    c->n_pids, c->cgroup[0] ? "frozen" : "stopped");
                        break;
                }
                if (grown == 0) {
                        struct timespec ts = { 0, round < 20 ? 200000 : 2000000 };
                        (void)nanosleep(&ts, NULL);
                }
        }
        return (int)(c->n_pids - before);
}

void hf_respond_kill(HfContainment *c, size_t from)
{
        /* cgroup.kill (5.14+) kills the whole cgroup at once, frozen members included; each
         * member is signalled too, in case one could not be moved. */
        if (c->cgroup[0])
                (void)write_str(c->cgroup, "cgroup.kill", "1");
        for (size_t i = from; i < c->n_pids; i++)
                (void)kill(c->pids[i], SIGKILL);
}

int hf_respond_release(HfContainment *c)
{
        if (c->cgroup[0]) {
                if (rmdir(c->cgroup) < 0)
                        return -errno; /* members left (action stop) or not yet reaped */
                c->cgroup[0] = 0;
        }
        return 0;
}

void hf_containment_done(HfContainment *c)
{
        free(c->pids);
        *c = (HfContainment){ 0 };
}

int hf_respond_evidence(const char *state_dir, pid_t pid, char sha_hex[65], char *path,
                        size_t pathn)
{
        char p[64], dir[HF_PATH_MAX];
        uint8_t sha[32];
        int r;

        sha_hex[0] = 0;
        path[0] = 0;
        (void)snprintf(p, sizeof(p), "/proc/%d/exe", (int)pid);
        _cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        r = hf_sha256_fd(fd, 1ULL << 30, sha);
        if (r < 0)
                return r;
        hf_hex_encode(sha, 32, sha_hex);
        (void)snprintf(dir, sizeof(dir), "%s/evidence", state_dir);
        (void)mkdir(dir, 0700);
        (void)snprintf(path, pathn, "%s/%s", dir, sha_hex);
        if (access(path, F_OK) == 0)
                return 0;
        char tmp[HF_PATH_MAX + 8];
        (void)snprintf(tmp, sizeof(tmp), "%s.tmp", path);
        _cleanup_close_ int out = open(tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0400);
        if (out < 0)
                return -errno;
        uint8_t buf[65536];
        off_t off = 0;
        for (;;) {
                ssize_t k = pread(fd, buf, sizeof(buf), off);
                if (k < 0)
                        return -errno;
                if (k == 0)
                        break;
                r = hf_write_all(out, buf, (size_t)k);
                if (r < 0)
                        return r;
                off += k;
        }
        if (rename(tmp, path) < 0)
                return -errno;
        return 0;
}
