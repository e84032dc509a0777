/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * holdfast drill: the whole story on a scratch tree. A loop-mounted filesystem image of its
 * own (so pre-content events work even where the scratch folder is on tmpfs, and the
 * sentinel's filesystem marks see nothing of the rest of the machine), a sample tree of a
 * public service, a local vault and a first snapshot, the sentinel as a child process, then
 * for each attack: run the simulator as an untrusted program in its own session, wait for
 * containment, recover, verify every file against the pre-attack hashes. A trusted "service"
 * keeps writing during the attacks; its changes must survive the recovery. At the end the
 * vault round trip (check --read-data, restore, compare). Exit 0 only when nothing was lost.
 */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>

#include "../base/gojson.h"
#include "../base/log.h"
#include "../base/util.h"
#include "../repo/snapshot.h"
#include "../sentinel/sentinel.h"
#include "recover-internal.h"

#define IMAGE_SIZE (640ULL << 20)

typedef struct Entry {
        char *rel;
        char sha[65];
        uint64_t size;
        uint32_t mode, uid, gid;
        int64_t mtime_ns;
} Entry;

typedef struct Manifest {
        Entry *v;
        size_t n;
} Manifest;

typedef struct AttackReport {
        const char *kind;
        bool detected;
        int64_t incident;
        char state[32];
        double t_detect, t_contain, t_recover;
        int64_t touched;
        HfRecoverResult rec;
        int rec_r;
        HfSimResult sim;
        uint64_t lost_files, lost_bytes, meta_diff, leftovers;
} AttackReport;

typedef struct Drill {
        const HfDrillOptions *o;
        char scratch[HF_RECOVER_PATH_MAX];
        char mnt[HF_RECOVER_PATH_MAX + 8];
        char srv[HF_RECOVER_PATH_MAX + 16];
        char state[HF_RECOVER_PATH_MAX + 8];
        char db[HF_DB_PATH_MAX]; /* state/sentinel.db */
        char vault[HF_RECOVER_PATH_MAX + 8];
        char attacker[HF_RECOVER_PATH_MAX + 32];
        char self[HF_RECOVER_PATH_MAX];
        const char *fs;
        bool mounted, disk, keep;
        char disk_box[HF_RECOVER_PATH_MAX + 64];
        pid_t sentinel;
        HfRepo *repo;
        Manifest m0, m1;
        char snap_id[9];
        /* the service writer */
        pthread_t service;
        bool service_running;
        volatile bool service_stop;
        uint64_t service_lines;
        double t0;
} Drill;

/* ---- manifests ---- */

static void manifest_done(Manifest *m)
{
        for (size_t i = 0; i < m->n; i++)
                free(m->v[i].rel);
        free(m->v);
        *m = (Manifest){ 0 };
}

static int walk(int dfd, const char *prefix, bool top, Manifest *m)
{
        DIR *d = fdopendir(dfd);
        struct dirent *de;
        int r = 0;

        if (!d) {
                close(dfd);
                return -errno;
        }
        while ((de = readdir(d)) && r == 0) {
                char rel[HF_RECOVER_PATH_MAX];
                struct stat st;
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                if (!strcmp(de->d_name, ".holdfast") || (top && !strcmp(de->d_name, "live")))
                        continue;
                (void)snprintf(rel, sizeof(rel), "%s%s%s", prefix, prefix[0] ? "/" : "",
                               de->d_name);
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                if (S_ISDIR(st.st_mode)) {
                        int sub = openat(dirfd(d), de->d_name,
                                         O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
                        if (sub >= 0)
                                r = walk(sub, rel, false, m);
                        continue;
                }
                if (m->n % 256 == 0) {
                        Entry *nv = realloc(m->v, (m->n + 256) * sizeof(Entry));
                        if (!nv) {
                                r = -ENOMEM;
                                break;
                        }
                        m->v = nv;
                }
                Entry *e = &m->v[m->n];
                *e = (Entry){ .size = (uint64_t)st.st_size,
                              .mode = st.st_mode,
                              .uid = st.st_uid,
                              .gid = st.st_gid,
                              .mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 +
                                          st.st_mtim.tv_nsec };
                e->rel = strdup(rel);
                if (!e->rel) {
                        r = -ENOMEM;
                        break;
                }
                if (S_ISREG(st.st_mode)) {
                        _cleanup_close_ int fd = openat(dirfd(d), de->d_name,
                                                        O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                        if (fd >= 0)
                                (void)hf_recover_sha_fd(fd, e->sha, NULL);
                }
                m->n++;
        }
        closedir(d);
        return r;
}

static int entry_cmp(const void *a, const void *b)
{
        return strcmp(((const Entry *)a)->rel, ((const Entry *)b)->rel);
}

/* Every entry below dir, named prefix/REL (the service's live/ folder left out at the top). */
static int manifest_of(const char *dir, const char *prefix, Manifest *m)
{
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        *m = (Manifest){ 0 };
        int r = walk(fd, prefix, !prefix[0], m);
        if (r == 0 && m->n)
                qsort(m->v, m->n, sizeof(Entry), entry_cmp);
        return r;
}

static const Entry *manifest_find(const Manifest *m, const char *rel)
{
        Entry key = { .rel = (char *)rel };
        return m->n ? bsearch(&key, m->v, m->n, sizeof(Entry), entry_cmp) : NULL;
}

static bool has_prefix(const char *rel, const char *prefix)
{
        size_t l = strlen(prefix);
        return !l || (strncmp(rel, prefix, l) == 0 && rel[l] == '/');
}

/* Compares the tree now with the pre-attack manifest (the entries below prefix). */
static void verify(const Manifest *want, const Manifest *now, const char *prefix, AttackReport *ar,
                   FILE *log)
{
        for (size_t i = 0; i < want->n; i++) {
                if (!has_prefix(want->v[i].rel, prefix))
                        continue;
                const Entry *w = &want->v[i], *n = manifest_find(now, w->rel);
                if (!n || strcmp(w->sha, n->sha) != 0 || w->size != n->size) {
                        ar->lost_files++;
                        ar->lost_bytes += w->size;
                        if (log)
                                fprintf(log, "LOST %s (%s)\n", w->rel,
                                        !n ? "missing" : "content differs");
                        continue;
                }
                if (w->mode != n->mode || w->uid != n->uid || w->gid != n->gid ||
                    w->mtime_ns != n->mtime_ns) {
                        ar->meta_diff++;
                        if (log)
                                fprintf(log, "METADATA %s (mode %o/%o, mtime %lld/%lld)\n", w->rel,
                                        w->mode, n->mode, (long long)w->mtime_ns,
                                        (long long)n->mtime_ns);
                }
        }
        for (size_t i = 0; i < now->n; i++)
                if (has_prefix(now->v[i].rel, prefix) && !manifest_find(want, now->v[i].rel)) {
                        ar->leftovers++;
                        if (log)
                                fprintf(log, "LEFTOVER %s\n", now->v[i].rel);
                }
}

/* ---- children ---- */

static pid_t spawn(char *const argv[], const char *log, bool new_session)
{
        pid_t pid = fork();
        if (pid != 0)
                return pid;
        if (new_session)
                (void)setsid();
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
                (void)dup2(fd, 1);
                (void)dup2(fd, 2);
        }
        if (nul >= 0)
                (void)dup2(nul, 0);
        execv(argv[0], argv);
        _exit(127);
}

static int run_quiet(char *const argv[], const char *log)
{
        int st;
        pid_t pid = spawn(argv, log, false);
        if (pid < 0)
                return -errno;
        if (waitpid(pid, &st, 0) < 0)
                return -errno;
        return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

static bool find_prog(const char *name, char *out, size_t n)
{
        static const char *const dirs[] = { "/usr/sbin", "/sbin", "/usr/bin", "/bin" };
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
                (void)snprintf(out, n, "%s/%s", dirs[i], name);
                if (access(out, X_OK) == 0)
                        return true;
        }
        return false;
}

static double now(void)
{
        return hf_recover_now();
}

static void sleep_ms(unsigned ms)
{
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };
        (void)nanosleep(&ts, NULL);
}

static bool file_has(const char *path, const char *needle, char *line, size_t n)
{
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        char buf[8192];
        if (!f)
                return false;
        while (fgets(buf, sizeof(buf), f))
                if (strstr(buf, needle)) {
                        if (line) {
                                buf[strcspn(buf, "\n")] = 0;
                                (void)hf_copy_str(line, n, buf);
                        }
                        return true;
                }
        return false;
}

/* ---- the scratch filesystem ---- */

static int make_fs(Drill *d)
{
        char img[HF_RECOVER_PATH_MAX + 16], mkfs[256], mountp[256], log[HF_RECOVER_PATH_MAX + 16];
        const char *fs = d->o->fs ? d->o->fs : "xfs";
        int r;

        (void)snprintf(img, sizeof(img), "%s/fs.img", d->scratch);
        (void)snprintf(log, sizeof(log), "%s/setup.log", d->scratch);
        (void)snprintf(d->mnt, sizeof(d->mnt), "%s/mnt", d->scratch);
        char want[32];
        (void)snprintf(want, sizeof(want), "mkfs.%s", fs);
        if (!find_prog(want, mkfs, sizeof(mkfs))) {
                if (d->o->fs)
                        return log_error_errno(ENOENT, "%s is not installed", want);
                fs = "ext4";
                if (!find_prog("mkfs.ext4", mkfs, sizeof(mkfs)))
                        return log_error_errno(ENOENT, "neither mkfs.xfs nor mkfs.ext4 is "
                                                       "installed");
        }
        d->fs = fs;
        {
                _cleanup_close_ int fd = open(img, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
                if (fd < 0 || ftruncate(fd, (off_t)IMAGE_SIZE) < 0)
                        return log_error_errno(errno, "%s: %m", img);
        }
        char *mk_xfs[] = { mkfs, "-q", "-f", img, NULL };
        char *mk_ext4[] = { mkfs, "-q", "-F", img, NULL };
        char *mk_btrfs[] = { mkfs, "-q", "-f", img, NULL };
        r = run_quiet(strcmp(fs, "xfs") == 0     ? mk_xfs
                      : strcmp(fs, "btrfs") == 0 ? mk_btrfs
                                                 : mk_ext4,
                      log);
        if (r < 0)
                return log_error_errno(r, "%s failed (see %s)", want, log);
        if (mkdir(d->mnt, 0755) < 0)
                return log_error_errno(errno, "%s: %m", d->mnt);
        if (!find_prog("mount", mountp, sizeof(mountp)))
                return log_error_errno(ENOENT, "mount(8) is not installed");
        char *mo[] = { mountp, "-o", "loop", img, d->mnt, NULL };
        r = run_quiet(mo, log);
        if (r < 0)
                return log_error_errno(r, "mounting %s failed (see %s)", img, log);
        d->mounted = true;
        return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)ftw;
        if (flag == FTW_DP)
                (void)rmdir(path);
        else
                (void)unlink(path);
        return 0;
}

static void teardown(Drill *d)
{
        if (d->service_running) {
                d->service_stop = true;
                pthread_join(d->service, NULL);
                d->service_running = false;
        }
        if (d->sentinel > 0) {
                int st;
                (void)kill(d->sentinel, SIGTERM);
                for (int i = 0; i < 150 && waitpid(d->sentinel, &st, WNOHANG) == 0; i++)
                        sleep_ms(100);
                if (kill(d->sentinel, 0) == 0) {
                        (void)kill(d->sentinel, SIGKILL);
                        (void)waitpid(d->sentinel, &st, 0);
                }
                d->sentinel = 0;
        }
        if (d->disk)
                (void)hf_sim_cleanup(d->disk_box);
        d->repo = hf_repo_free(d->repo);
        if (d->mounted) {
                if (umount2(d->mnt, 0) < 0)
                        (void)umount2(d->mnt, MNT_DETACH);
                d->mounted = false;
        }
        if (!d->keep && d->scratch[0])
                (void)nftw(d->scratch, rm_one, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

/* ---- the vault ---- */

static int make_vault(Drill *d)
{
        char pw[65], pwfile[HF_RECOVER_PATH_MAX + 16];
        uint8_t raw[32];
        HfBackend *b = NULL;
        HfKdfParams kdf = { .N = 1 << 14, .r = 8, .p = 1 };
        HfRepoOptions ro = { .version = 2, .kdf = &kdf };
        HfBackupOptions bo = { 0 };
        HfBackupResult res;
        char *paths[] = { d->srv };
        int r;

        (void)hf_random_bytes(raw, sizeof(raw));
        hf_hex_encode(raw, sizeof(raw), pw);
        pw[64] = 0;
        (void)snprintf(d->vault, sizeof(d->vault), "%s/vault", d->scratch);
        (void)snprintf(pwfile, sizeof(pwfile), "%s/vault.password", d->scratch);
        {
                _cleanup_close_ int fd = open(pwfile, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                                              0600);
                if (fd < 0 || hf_write_all(fd, pw, 64) < 0 || hf_write_all(fd, "\n", 1) < 0)
                        return log_error_errno(errno, "%s: %m", pwfile);
        }
        r = hf_backend_open(d->vault, true, &b);
        if (r < 0)
                return log_error_errno(r, "%s: cannot create the vault: %m", d->vault);
        r = hf_repo_init(b, pw, &ro, &d->repo);
        if (r < 0)
                return r;
        bo.paths = paths;
        bo.n_paths = 1;
        bo.out.quiet = true;
        bo.workers = 0;
        r = hf_backup(d->repo, &bo, &res);
        if (r < 0)
                return log_error_errno(r, "the first backup failed: %m");
        char hex[HF_ID_HEX_LEN + 1];
        hf_id_hex(&res.snapshot_id, hex);
        memcpy(d->snap_id, hex, 8);
        d->snap_id[8] = 0;
        return 0;
}

/* ---- the sentinel ---- */

static int start_sentinel(Drill *d, bool raw_disk, char *mode, size_t moden)
{
        char conf[HF_RECOVER_PATH_MAX + 32], log[HF_RECOVER_PATH_MAX + 32];
        _cleanup_fclose_ FILE *f = NULL;

        (void)snprintf(conf, sizeof(conf), "%s/sentinel.conf", d->scratch);
        (void)snprintf(log, sizeof(log), "%s/sentinel.log", d->scratch);
        f = fopen(conf, "we");
        if (!f)
                return log_error_errno(errno, "%s: %m", conf);
        fprintf(f,
                "# written by holdfast drill\n[sentinel]\naction = kill\ndecoys = %s\n"
                "raw-disk-guard = %s\n[protect]\npath = %s\n[trust]\n"
                "# the drill itself (its service writer and its recovery); the attacker is a\n"
                "# copy of the same binary under another path, so it is not trusted\n"
                "program = %s\n[alerts]\nsyslog = no\nfile = alerts.jsonl\n",
                d->o->decoys ? "yes" : "no", raw_disk ? "yes" : "no", d->srv, d->self);
        fclose(TAKE_PTR(f));
        char *argv[] = { d->self, "sentinel", "--config", conf, "--state", d->state, NULL };
        d->sentinel = spawn(argv, log, true);
        if (d->sentinel < 0)
                return log_error_errno(errno, "cannot start the sentinel: %m");
        for (int i = 0; i < 600; i++) {
                int st;
                if (waitpid(d->sentinel, &st, WNOHANG) == d->sentinel) {
                        d->sentinel = 0;
                        return log_error_errno(EIO, "the sentinel exited at start (see %s)", log);
                }
                if (file_has(log, "holdfast sentinel: ready", NULL, 0)) {
                        if (!file_has(log, "holdfast sentinel: mode ", mode, moden))
                                (void)snprintf(mode, moden, "mode unknown");
                        return 0;
                }
                sleep_ms(50);
        }
        return log_error_errno(ETIMEDOUT, "the sentinel did not get ready in 30 s (see %s)", log);
}

/* ---- the service writer: a legitimate process writing during the attacks ---- */

static void *service_main(void *arg)
{
        Drill *d = arg;
        char dir[HF_RECOVER_PATH_MAX + 32], logp[HF_RECOVER_PATH_MAX + 48];

        (void)snprintf(dir, sizeof(dir), "%s/live", d->srv);
        (void)snprintf(logp, sizeof(logp), "%s/service.log", dir);
        while (!d->service_stop) {
                int fd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
                if (fd >= 0) {
                        char line[96];
                        int n = snprintf(line, sizeof(line), "request %llu served at %.3f\n",
                                         (unsigned long long)d->service_lines, now());
                        if (hf_write_all(fd, line, (size_t)n) == 0)
                                d->service_lines++;
                        close(fd);
                }
                sleep_ms(100);
        }
        return NULL;
}

static bool service_check(Drill *d, char *why, size_t n)
{
        char logp[HF_RECOVER_PATH_MAX + 48];
        _cleanup_fclose_ FILE *f = NULL;
        char line[128];
        uint64_t k = 0;

        (void)snprintf(logp, sizeof(logp), "%s/live/service.log", d->srv);
        f = fopen(logp, "re");
        if (!f) {
                (void)snprintf(why, n, "service.log is gone");
                return false;
        }
        while (fgets(line, sizeof(line), f)) {
                unsigned long long v;
                if (sscanf(line, "request %llu ", &v) != 1 || v != k) {
                        (void)snprintf(why, n, "service.log line %llu is wrong",
                                       (unsigned long long)k);
                        return false;
                }
                k++;
        }
        if (k != d->service_lines) {
                (void)snprintf(why, n, "service.log has %llu of %llu lines", (unsigned long long)k,
                               (unsigned long long)d->service_lines);
                return false;
        }
        return true;
}

/* ---- one attack ---- */

static int64_t last_incident(const char *dbpath)
{
        sqlite3 *db = NULL;
        sqlite3_stmt *s = NULL;
        int64_t id = 0;

        if (sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
            sqlite3_prepare_v2(db, "SELECT COALESCE(MAX(id), 0) FROM incidents", -1, &s, NULL) ==
                    SQLITE_OK &&
            sqlite3_step(s) == SQLITE_ROW)
                id = sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
        sqlite3_close(db);
        return id;
}

/* The first incident after `after` (0: none yet). */
static int64_t new_incident(const char *dbpath, int64_t after, AttackReport *ar)
{
        sqlite3 *db = NULL;
        sqlite3_stmt *s = NULL;
        int64_t id = 0;

        if (sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
                sqlite3_close(db);
                return 0;
        }
        sqlite3_busy_timeout(db, 2000);
        if (sqlite3_prepare_v2(db,
                               "SELECT id, state, first_event, detected, contained, files_touched"
                               " FROM incidents WHERE id > ? AND kind NOT IN ('allow-disk')"
                               " ORDER BY id LIMIT 1",
                               -1, &s, NULL) == SQLITE_OK) {
                sqlite3_bind_int64(s, 1, after);
                if (sqlite3_step(s) == SQLITE_ROW) {
                        id = sqlite3_column_int64(s, 0);
                        const unsigned char *st = sqlite3_column_text(s, 1);
                        (void)snprintf(ar->state, sizeof(ar->state), "%s",
                                       st ? (const char *)st : "");
                        double fe = sqlite3_column_double(s, 2), de = sqlite3_column_double(s, 3);
                        ar->t_detect = de - fe;
                        ar->t_contain = sqlite3_column_type(s, 4) == SQLITE_NULL
                                                ? -1
                                                : sqlite3_column_double(s, 4) - fe;
                        ar->touched = sqlite3_column_int64(s, 5);
                }
        }
        sqlite3_finalize(s);
        sqlite3_close(db);
        return id;
}

static int run_attack(Drill *d, const char *kind, AttackReport *ar, FILE *vlog)
{
        char log[HF_RECOVER_PATH_MAX + 64], reclog[HF_RECOVER_PATH_MAX + 64];
        int64_t before = last_incident(d->db);
        double start = now(), timeout = strcmp(kind, "slow") == 0 ? 120 : 40;
        int st, r;
        bool exited = false;

        ar->kind = kind;
        (void)snprintf(log, sizeof(log), "%s/attack-%s.log", d->scratch, kind);
        char box[HF_RECOVER_PATH_MAX + 64];
        (void)snprintf(box, sizeof(box), "%s/%s", d->srv, kind);
        char *argv[] = { d->attacker, "simulate", "attack", (char *)kind, box, NULL };
        pid_t pid = spawn(argv, log, true);
        if (pid < 0)
                return log_error_errno(errno, "cannot start the attacker: %m");
        double exited_at = 0;
        while (now() - start < timeout) {
                if (!exited && waitpid(pid, &st, WNOHANG) == pid) {
                        exited = true;
                        exited_at = now();
                }
                ar->incident = new_incident(d->db, before, ar);
                if (ar->incident && (exited || strcmp(ar->state, "contained") == 0 ||
                                     strcmp(ar->state, "denied") == 0))
                        break;
                if (exited && now() - exited_at > 3)
                        break;
                sleep_ms(50);
        }
        /* Whatever the sentinel did, no attacker survives the step. */
        if (!exited) {
                for (int i = 0; i < 60 && waitpid(pid, &st, WNOHANG) == 0; i++)
                        sleep_ms(50);
                (void)kill(-pid, SIGKILL);
                (void)kill(pid, SIGKILL);
                (void)waitpid(pid, &st, 0);
        }
        {
                /* The attacker's own account, when it lived to print it. */
                _cleanup_fclose_ FILE *f = fopen(log, "re");
                char line[512];
                while (f && fgets(line, sizeof(line), f)) {
                        unsigned long long a, b, c, e;
                        const char *p = strstr(line, "\"files\":");
                        if (p && sscanf(p,
                                        "\"files\":%llu,\"bytes\":%llu,\"created\":%llu,"
                                        "\"denied\":%llu",
                                        &a, &b, &c, &e) == 4) {
                                ar->sim.files = a;
                                ar->sim.bytes = b;
                                ar->sim.created = c;
                                ar->sim.denied = e;
                        }
                }
        }
        ar->detected = ar->incident > 0;
        /* The sentinel commits its rows in batches: let the incident be complete before the
         * clock for the recovery starts (recover would wait the same moment itself). */
        sleep_ms(600);

        /* Recover: the incident, or (undetected) everything the attacker's process did. */
        (void)snprintf(reclog, sizeof(reclog), "%s/recover-%s.log", d->scratch, kind);
        HfRecoverOptions ro = { .state_dir = d->state,
                                .repo = d->repo,
                                .out = { .verbose = true } };
        if (ar->detected) {
                ro.scope = HF_RECOVER_INCIDENT;
                ro.incident = ar->incident;
        } else {
                ro.scope = HF_RECOVER_PROCESS;
                ro.pid = pid;
                ro.since = start - 1;
        }
        fflush(stdout);
        int saved = dup(1);
        _cleanup_close_ int lfd = open(reclog, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (lfd >= 0)
                (void)dup2(lfd, 1);
        r = hf_recover(&ro, &ar->rec);
        if (strcmp(kind, "raw-disk") == 0 && ar->sim.bytes > 0) {
                /* Writes through a loop device raise no file event and leave no pre-image
                 * (fanotify-notes F24): put the disk image back from the snapshot. */
                char img[HF_RECOVER_PATH_MAX + 80];
                char *paths[] = { img };
                HfRecoverResult more;
                (void)snprintf(img, sizeof(img), "%s/disk.img", box);
                HfRecoverOptions bo = { .state_dir = d->state,
                                        .repo = d->repo,
                                        .scope = HF_RECOVER_BEFORE,
                                        .before = start - 1,
                                        .paths = paths,
                                        .n_paths = 1,
                                        .out = { .verbose = true } };
                int r2 = hf_recover(&bo, &more);
                if (r2 < 0 && r >= 0)
                        r = r2;
                ar->rec.from_vault += more.from_vault;
                ar->rec.from_preimage += more.from_preimage;
                ar->rec.lost += more.lost;
                ar->rec.unproven += more.unproven;
                ar->rec.seconds += more.seconds;
        }
        fflush(stdout);
        if (saved >= 0) {
                (void)dup2(saved, 1);
                close(saved);
        }
        ar->rec_r = r;
        ar->t_recover = ar->rec.seconds;

        /* Verify its sandbox (the whole tree is verified at the end). */
        Manifest now_m;
        r = manifest_of(box, kind, &now_m);
        if (r < 0)
                return log_error_errno(r, "%s: cannot read the tree back: %m", box);
        if (vlog)
                fprintf(vlog, "== %s (incident %lld)\n", kind, (long long)ar->incident);
        verify(&d->m1, &now_m, kind, ar, vlog);
        manifest_done(&now_m);
        return 0;
}

/* ---- the vault round trip ---- */

static int vault_round_trip(Drill *d, char *msg, size_t n)
{
        HfCheckOptions co = { .read_data = true, .out = { .quiet = true } };
        HfCheckResult cr;
        HfRestoreOptions ro = { .out = { .quiet = true } };
        HfRestoreResult rr;
        HfSnapshot snap = { 0 };
        HfSnapshotFilter f = { 0 };
        char target[HF_RECOVER_PATH_MAX + 16], restored[2 * HF_RECOVER_PATH_MAX + 32];
        Manifest m;
        int r;

        r = hf_check(d->repo, &co, &cr);
        if (r < 0 || cr.errors) {
                (void)snprintf(msg, n, "check --read-data found %llu error(s)",
                               (unsigned long long)cr.errors);
                return -EBADMSG;
        }
        r = hf_snapshot_find(d->repo, "latest", &f, &snap);
        if (r < 0)
                return r;
        (void)snprintf(target, sizeof(target), "%s/restore", d->scratch);
        ro.target = target;
        r = hf_repo_load_index(d->repo, NULL);
        if (r >= 0)
                r = hf_restore(d->repo, &snap, &ro, &rr);
        hf_snapshot_done(&snap);
        if (r < 0)
                return r;
        (void)snprintf(restored, sizeof(restored), "%s%s", target, d->srv);
        r = manifest_of(restored, "", &m);
        if (r < 0)
                return r;
        AttackReport ar = { 0 };
        verify(&d->m0, &m, "", &ar, NULL);
        manifest_done(&m);
        (void)snprintf(msg, n,
                       "check --read-data: %llu blobs, 0 errors; restore of snapshot %s: %llu "
                       "files, %s",
                       (unsigned long long)cr.blobs, d->snap_id, (unsigned long long)rr.files,
                       ar.lost_files || ar.meta_diff ? "DIFFERS from the tree it was taken of"
                                                     : "identical to the tree it was taken of");
        return ar.lost_files || ar.meta_diff ? -EBADMSG : 0;
}

/* ---- the drill ---- */

static void fmt_s(double v, char *buf, size_t n)
{
        if (v < 0)
                (void)snprintf(buf, n, "-");
        else
                (void)snprintf(buf, n, "%.2fs", v);
}

static int copy_self(const char *from, const char *to)
{
        _cleanup_close_ int in = open(from, O_RDONLY | O_CLOEXEC);
        _cleanup_close_ int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
        uint8_t buf[65536];
        ssize_t k;

        if (in < 0 || out < 0)
                return -errno;
        while ((k = read(in, buf, sizeof(buf))) > 0)
                if (hf_write_all(out, buf, (size_t)k) < 0)
                        return -EIO;
        return k < 0 ? -errno : 0;
}

int hf_drill(const HfDrillOptions *o)
{
        static const char *const default_set[] = {
                "encrypt", "encrypt-new", "encrypt-rename", "intermittent", "intermittent-4k",
                "shred",   "truncate",    "bibi",           "split",        "slow",
                "base64",  "mmap",        "rename-folder",  "raw-disk"
        };
        Drill d = { .o = o, .keep = o->keep };
        FILE *vlog = NULL;
        const char *const *kinds = default_set;
        size_t n_kinds = ELEMENTSOF(default_set);
        AttackReport *ar = NULL;
        char mode[4096] = "", line[1024], buf1[32], buf2[32];
        struct statfs sf;
        bool json = o->out.json;
        int r;

        d.t0 = now();
        if (o->n_attacks) {
                kinds = (const char *const *)o->attacks;
                n_kinds = o->n_attacks;
        }
        bool raw = false;
        for (size_t i = 0; i < n_kinds; i++)
                raw |= strcmp(kinds[i], "raw-disk") == 0;
        if (geteuid() != 0)
                return log_error_errno(EPERM, "holdfast drill needs root: the sentinel uses "
                                              "fanotify permission events, and the drill mounts "
                                              "a filesystem image of its own");
        if (!realpath(o->self, d.self))
                return log_error_errno(errno, "%s: %m", o->self);
        ar = calloc(n_kinds, sizeof(*ar));
        if (!ar)
                return -ENOMEM;

        const char *parent = o->scratch ? o->scratch : getenv("TMPDIR");
        if (!parent || !*parent)
                parent = "/var/tmp";
        (void)snprintf(d.scratch, sizeof(d.scratch), "%s/holdfast-drill.XXXXXX", parent);
        if (!mkdtemp(d.scratch)) {
                r = log_error_errno(errno, "%s: cannot create the scratch folder: %m", d.scratch);
                d.scratch[0] = 0;
                goto out;
        }
        /* The sentinel's database goes under it: a path SQLite cannot open is said now, not
         * after the image, the vault and the first backup are made. */
        (void)snprintf(d.state, sizeof(d.state), "%s/state", d.scratch);
        r = hf_db_path(d.state, d.db, sizeof(d.db));
        if (r < 0)
                goto out;
        const char *where = "?";
        if (statfs(d.scratch, &sf) == 0)
                where = hf_fs_type_name((unsigned long)sf.f_type) ?: "another filesystem";
        if (!json)
                printf("holdfast drill in %s (%s)\n", d.scratch, where);
        r = make_fs(&d);
        if (r < 0)
                goto out;
        if (!json)
                printf("  filesystem  %s on a loop image of its own (%s%s), mounted at %s\n", d.fs,
                       hf_format_bytes(buf1, sizeof(buf1), IMAGE_SIZE),
                       strcmp(where, "tmpfs") == 0 ? "; the scratch folder is on tmpfs, which "
                                                     "has no pre-content events"
                                                   : "",
                       d.mnt);

        /* The sample tree, the attacker's binary, the vault. */
        /* One sandbox per attack, all made before the sentinel starts: every attack meets
         * files as a service's long-lived data, and no attack inherits another's damage. */
        (void)snprintf(d.srv, sizeof(d.srv), "%s/srv", d.mnt);
        if (mkdir(d.srv, 0755) < 0) {
                r = log_error_errno(errno, "%s: %m", d.srv);
                goto out;
        }
        for (size_t i = 0; i < n_kinds; i++) {
                char box[HF_RECOVER_PATH_MAX + 64];
                bool disk = strcmp(kinds[i], "raw-disk") == 0;
                if (!hf_sim_kind_valid(kinds[i])) {
                        r = log_error_errno(EINVAL, "unknown attack \"%s\"", kinds[i]);
                        goto out;
                }
                (void)snprintf(box, sizeof(box), "%s/%s", d.srv, kinds[i]);
                HfSimPrepareOptions po = { .scale = 1, .disk = disk };
                r = hf_sim_prepare(box, &po);
                if (r < 0)
                        goto out;
                if (disk) {
                        d.disk = true;
                        (void)snprintf(d.disk_box, sizeof(d.disk_box), "%s", box);
                }
        }
        r = manifest_of(d.srv, "", &d.m0);
        if (r < 0)
                goto out;
        uint64_t total = 0;
        for (size_t i = 0; i < d.m0.n; i++)
                total += d.m0.v[i].size;
        if (!json)
                printf("  sample tree %zu files, %s in %zu sandbox(es), one per attack: "
                       "documents, images, a SQLite database, logs, a web root%s\n",
                       d.m0.n, hf_format_bytes(buf1, sizeof(buf1), total), n_kinds,
                       raw ? ", a disk image on a loop device" : "");
        char bindir[HF_RECOVER_PATH_MAX + 8];
        (void)snprintf(bindir, sizeof(bindir), "%s/bin", d.scratch);
        (void)mkdir(bindir, 0755);
        (void)snprintf(d.attacker, sizeof(d.attacker), "%s/hf-attacker", bindir);
        r = copy_self(d.self, d.attacker);
        if (r < 0) {
                log_error_errno(r, "%s: cannot copy the attacker binary: %m", d.attacker);
                goto out;
        }
        double tv = now();
        r = make_vault(&d);
        if (r < 0)
                goto out;
        if (!json)
                printf("  vault       snapshot %s of the tree in %s (%s)\n", d.snap_id,
                       hf_format_duration(buf1, sizeof(buf1), now() - tv), d.vault);

        r = start_sentinel(&d, raw, mode, sizeof(mode));
        if (r < 0)
                goto out;
        if (!json)
                printf("  sentinel    pid %d, %s\n", (int)d.sentinel,
                       strncmp(mode, "holdfast sentinel: ", 19) == 0 ? mode + 19 : mode);
        /* The pre-attack state (decoys included, when planted). */
        r = manifest_of(d.srv, "", &d.m1);
        if (r < 0)
                goto out;
        char live[HF_RECOVER_PATH_MAX + 32];
        (void)snprintf(live, sizeof(live), "%s/live", d.srv);
        (void)mkdir(live, 0755);
        if (pthread_create(&d.service, NULL, service_main, &d) == 0)
                d.service_running = true;

        char vpath[HF_RECOVER_PATH_MAX + 32];
        (void)snprintf(vpath, sizeof(vpath), "%s/verify.log", d.scratch);
        vlog = fopen(vpath, "we");
        if (!json)
                printf("\n  %-16s %8s %8s %8s %8s %9s %8s  %s\n", "attack", "detect", "contain",
                       "recover", "touched", "restored", "removed", "lost");
        uint64_t lost_files = 0, lost_bytes = 0, undetected = 0;
        for (size_t i = 0; i < n_kinds; i++) {
                if (d.sentinel > 0 && kill(d.sentinel, 0) < 0) {
                        r = log_error_errno(EIO, "the sentinel died (see %s/sentinel.log)",
                                            d.scratch);
                        goto out;
                }
                r = run_attack(&d, kinds[i], &ar[i], vlog);
                if (r < 0)
                        goto out;
                AttackReport *a = &ar[i];
                lost_files += a->lost_files + a->leftovers;
                lost_bytes += a->lost_bytes;
                undetected += !a->detected;
                uint64_t restored = a->rec.from_preimage + a->rec.from_pin + a->rec.renamed_back +
                                    a->rec.from_vault;
                if (!json) {
                        char t1[16], t2[16], t3[16];
                        fmt_s(a->detected ? a->t_detect : -1, t1, sizeof(t1));
                        fmt_s(a->detected ? a->t_contain : -1, t2, sizeof(t2));
                        fmt_s(a->t_recover, t3, sizeof(t3));
                        (void)snprintf(line, sizeof(line), "%llu files, %s",
                                       (unsigned long long)(a->lost_files + a->leftovers),
                                       hf_format_bytes(buf2, sizeof(buf2), a->lost_bytes));
                        printf("  %-16s %8s %8s %8s %8lld %9llu %8llu  %s%s%s\n", a->kind, t1, t2,
                               t3, (long long)a->touched, (unsigned long long)restored,
                               (unsigned long long)a->rec.removed, line,
                               a->detected ? "" : "  NOT DETECTED",
                               strcmp(a->kind, "raw-disk") == 0
                                       ? (a->sim.bytes ? "  (raw write got through)"
                                                       : "  (write-open denied, 0 bytes written)")
                                       : "");
                        if (a->rec.from_vault)
                                printf("  %-16s %llu file(s) from the vault snapshot (no "
                                       "pre-image)\n",
                                       "", (unsigned long long)a->rec.from_vault);
                }
        }
        if (d.service_running) {
                d.service_stop = true;
                pthread_join(d.service, NULL);
                d.service_running = false;
        }
        /* The whole tree, once more: no attack's recovery disturbed another sandbox. */
        AttackReport whole = { 0 };
        {
                Manifest all;
                r = manifest_of(d.srv, "", &all);
                if (r < 0)
                        goto out;
                if (vlog)
                        fprintf(vlog, "== the whole tree\n");
                verify(&d.m1, &all, "", &whole, vlog);
                manifest_done(&all);
                lost_files = MAX(lost_files, whole.lost_files + whole.leftovers);
                lost_bytes = MAX(lost_bytes, whole.lost_bytes);
        }
        char why[128] = "";
        bool service_ok = service_check(&d, why, sizeof(why));
        char vmsg[512] = "";
        int vr = vault_round_trip(&d, vmsg, sizeof(vmsg));
        double total_s = now() - d.t0;
        bool pass = lost_files == 0 && lost_bytes == 0 && whole.meta_diff == 0 && service_ok &&
                    vr == 0;
        if (json) {
                _cleanup_buf_ HfBuf sj = HF_BUF_INIT(1 << 16);
                (void)hf_json_put_string(&sj, d.scratch, strlen(d.scratch));
                printf("{\"scratch\":%s,\"filesystem\":\"%s\",\"scratch_fs\":\"%s\","
                       "\"files\":%zu,\"snapshot\":\"%s\",\"attacks\":[",
                       sj.data ? (const char *)sj.data : "\"\"", d.fs, where, d.m0.n, d.snap_id);
                for (size_t i = 0; i < n_kinds; i++) {
                        AttackReport *a = &ar[i];
                        printf("%s{\"attack\":\"%s\",\"detected\":%s,\"incident\":%lld,"
                               "\"time_to_detect\":%.3f,\"time_to_contain\":%.3f,"
                               "\"time_to_recover\":%.3f,\"files_touched\":%lld,"
                               "\"from_preimage\":%llu,\"from_pin\":%llu,\"renamed_back\":%llu,"
                               "\"from_vault\":%llu,\"removed\":%llu,\"kept\":%llu,"
                               "\"recover_lost\":%llu,\"unproven\":%llu,"
                               "\"attacker_files\":%llu,\"attacker_bytes\":%llu,"
                               "\"attacker_denied\":%llu,"
                               "\"files_lost\":%llu,\"bytes_lost\":%llu,\"leftovers\":%llu,"
                               "\"metadata_differs\":%llu}",
                               i ? "," : "", a->kind, a->detected ? "true" : "false",
                               (long long)a->incident, a->t_detect, a->t_contain, a->t_recover,
                               (long long)a->touched, (unsigned long long)a->rec.from_preimage,
                               (unsigned long long)a->rec.from_pin,
                               (unsigned long long)a->rec.renamed_back,
                               (unsigned long long)a->rec.from_vault,
                               (unsigned long long)a->rec.removed, (unsigned long long)a->rec.kept,
                               (unsigned long long)a->rec.lost, (unsigned long long)a->rec.unproven,
                               (unsigned long long)a->sim.files, (unsigned long long)a->sim.bytes,
                               (unsigned long long)a->sim.denied, (unsigned long long)a->lost_files,
                               (unsigned long long)a->lost_bytes, (unsigned long long)a->leftovers,
                               (unsigned long long)a->meta_diff);
                }
                printf("],\"mode\":");
                {
                        _cleanup_buf_ HfBuf b = HF_BUF_INIT(1 << 16);
                        (void)hf_json_put_string(&b, mode, strlen(mode));
                        fwrite(b.data, 1, b.len, stdout);
                }
                printf(",\"service_lines\":%llu,\"service_ok\":%s,\"vault_ok\":%s,"
                       "\"undetected\":%llu,\"files_lost\":%llu,\"bytes_lost\":%llu,"
                       "\"seconds\":%.1f,\"pass\":%s}\n",
                       (unsigned long long)d.service_lines, service_ok ? "true" : "false",
                       vr == 0 ? "true" : "false", (unsigned long long)undetected,
                       (unsigned long long)lost_files, (unsigned long long)lost_bytes, total_s,
                       pass ? "true" : "false");
        } else {
                printf("\n  service     %llu requests written by a trusted process during the "
                       "attacks: %s\n",
                       (unsigned long long)d.service_lines, service_ok ? "all kept" : why);
                printf("  vault       %s\n", vmsg);
                if (undetected)
                        printf("  WARNING     %llu attack(s) were not detected by the sentinel\n",
                               (unsigned long long)undetected);
                if (whole.meta_diff)
                        printf("  metadata    %llu file(s) came back with another owner, mode or "
                               "mtime\n",
                               (unsigned long long)whole.meta_diff);
                printf("holdfast drill: %s: %zu attack(s), %llu file(s) and %s lost, in %s%s\n",
                       pass ? "PASS" : "FAIL", n_kinds, (unsigned long long)lost_files,
                       hf_format_bytes(buf1, sizeof(buf1), lost_bytes),
                       hf_format_duration(buf2, sizeof(buf2), total_s),
                       pass && !o->keep ? " (scratch folder removed; --keep keeps it)" : "");
                if (!pass || o->keep)
                        printf("  details: %s/verify.log, recover-*.log, sentinel.log\n",
                               d.scratch);
        }
        r = pass ? 0 : HF_INCOMPLETE;
        if (!pass)
                d.keep = true; /* the evidence of a failure */
out:
        if (vlog)
                fclose(vlog);
        if (r < 0 && d.scratch[0] && d.mounted) {
                d.keep = true;
                log_error("holdfast drill failed; the scratch folder is kept: %s", d.scratch);
        }
        teardown(&d);
        manifest_done(&d.m0);
        manifest_done(&d.m1);
        free(ar);
        return r;
}
