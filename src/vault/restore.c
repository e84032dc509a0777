/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Restore: plan, then execute.
 *
 * The walker loads the snapshot's trees, applies --include/--exclude, creates the folders (mode
 * 0700 while we work in them) and the small items (symlinks, fifos, devices), and collects the
 * files to write. Workers then write files in parallel, each into a temporary name in its
 * folder that is renamed into place only when complete, so a file is never half-written under
 * its real name. Hard links are made after their first name is written. Folder metadata
 * (owner, mode, xattrs, times) is applied last, deepest first, because creating entries
 * changes a folder's mtime.
 *
 * A large file is split into ranges of blobs, each written at its offset (known from the index)
 * with pwrite. The worker that takes the file writes its ranges in order; a worker with nothing
 * else left to do writes ranges of such a file at the same time, and the last range to finish
 * completes the file as a single worker would have. A restore of a few large files thus keeps
 * every core busy to the end, while workers with files of their own never share one (writes
 * to one file take its inode lock in turn).
 *
 * Damaged or missing blobs do not stop the run: the file is reported, what could be read is
 * kept next to it as NAME.holdfast-partial, and the run ends as incomplete (exit 3).
 */
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include "../base/log.h"
#include "../base/queue.h"
#include "../crypto/crypto.h"
#include "progress.h"
#include "vault.h"

#define PARTIAL_SUFFIX ".holdfast-partial"

/*
 * Splitting. A range is about RANGE_BYTES of content to load: the chunker's largest blob, so a
 * range is never much smaller than the coarsest unit of work there is, and one range takes a
 * core some milliseconds, which is the most the other cores can be left waiting at the end of a
 * file. A file is split when it has more than SPLIT_MIN to load (two ranges or more; ranges are
 * then 4 to 8 MiB); below that the per-file work (create, metadata, rename) would weigh more
 * and the other cores usually have other files to write.
 */
#define RANGE_BYTES (8u << 20)
#define SPLIT_MIN RANGE_BYTES

/* Files and split files planned ahead of the writers. */
#define WORK_QUEUE 1024

/*
 * Small files (one blob) are taken from the queue in batches, so that their blobs' SHA-256 can
 * be checked together (hf_sha256_many()): up to BATCH_FILES of them, or BATCH_BYTES of content.
 */
#define BATCH_FILES 64
#define BATCH_BYTES (4u << 20)
#define BATCH_FILE_MAX (1u << 20)

/* What the work queue carries: a file to write whole or a split one (the first member of
 * both, so a worker can tell them apart). */
typedef enum RWorkKind {
        RWORK_FILE = 0, /* calloc'd RFile */
        RWORK_SPLIT,
} RWorkKind;

typedef struct RDir {
        size_t parent; /* index in dirs, SIZE_MAX for the target itself */
        char *relpath; /* relative to the target, "" for the target */
        HfNode node;   /* metadata to apply (type DIR); unset for the target root */
        bool has_node;
        bool created; /* made (or found) on disk: only then is its metadata applied */
} RDir;

typedef struct RFile {
        RWorkKind kind; /* first: see RWorkKind */
        size_t dir;
        const char *dirpath; /* the folder's relpath (stable while the restore runs) */
        HfNode node;
        ssize_t group;           /* hard link group, -1 for none */
        bool link_only;          /* a later name of a hard link group */
        char *snap_path;         /* path inside the snapshot, for messages */
        struct RFile *next_done; /* on Restore.done, waiting for the planner to free it */
} RFile;

static void rfile_free(RFile *f)
{
        hf_node_done(&f->node);
        free(f->snap_path);
        free(f);
}

typedef struct RRange {
        size_t begin, end; /* blobs [begin, end) of the file's content */
        uint64_t off;      /* where blob begin goes */
} RRange;

/*
 * A file written in ranges. The planner fills in the blob sizes and the ranges, lists it in
 * Restore.splits and queues it. Ranges are claimed in order (next); whichever runs first
 * creates the file. References: one per range, held until the range is written, and one for
 * the queue and the list, dropped by the worker that took it from the queue once every range
 * is claimed and it has unlisted it. The last reference completes the file and frees this
 * (and the RFile unless hard-linked, as a worker does with a whole file).
 */
typedef struct RSplit {
        RWorkKind kind; /* RWORK_SPLIT, first: see RWorkKind */
        RFile *f;
        struct RSplit *prev, *next_split; /* in Restore.splits, under split_lock */
        bool listed;
        uint32_t *sizes;      /* of every blob, from the index; they add up to the node's size */
        pthread_mutex_t lock; /* guards the creation: opened, dfd, fd, tmp, open_err */
        bool opened;
        int dfd, fd;
        char *tmp; /* the temporary name written, NULL when written under the real name */
        int open_err;
        atomic_size_t next;   /* first range not claimed yet (may run past n_ranges) */
        atomic_size_t refs;   /* see above */
        atomic_int first_err; /* first damaged or missing blob: the result is a partial file */
        atomic_int fatal;     /* a write failed: the file is abandoned, later ranges stop */
        atomic_bool holes;    /* something was not written (zeros, failed blobs): set the size */
        size_t n_ranges;
        RRange ranges[];
} RSplit;

typedef struct RWorker RWorker;

typedef struct RGroup {
        uint64_t device_id, inode;
        size_t primary; /* file index written with content */
} RGroup;

/* A stretch [start, end) of one pack to hint for reading ahead; pack UINT32_MAX: none. */
typedef struct PfSpan {
        uint32_t pack;
        uint64_t start, end;
} PfSpan;

typedef struct Restore {
        HfRepo *repo;
        const HfRestoreOptions *opts;
        int targetfd;
        HfCodec *codec; /* walker's */
        HfProgress *progress;

        RDir *dirs;
        size_t n_dirs, cap_dirs;
        RFile **files; /* each allocated alone: workers hold pointers while planning grows this */
        size_t n_files, cap_files;
        HfQueue *work; /* files to write, fed by the planner while it walks */
        /* Files written, for the planner to free: the planner allocated them, and glibc frees
         * into the allocating thread's arena under its lock, which the planner holds for its
         * own allocations most of the time. */
        _Atomic(RFile *) done;
        pthread_mutex_t split_lock;
        RSplit *splits; /* queued split files until their ranges are all claimed */
        RGroup *groups;
        size_t n_groups, cap_groups;
        size_t *group_slots; /* open addressing over groups: index + 1, 0 = empty */
        size_t group_mask;

        uid_t euid;
        gid_t egid;
        unsigned n_workers;

        PfSpan pf; /* the planner's stretch of a pack not yet hinted (prefetch_file) */

        atomic_uint_fast64_t bytes, files_done, files_failed, verified, verify_failed;
        uint64_t others, failed_other;
        bool is_root;
} Restore;

static char *join(const char *a, const char *b)
{
        char *p = NULL;
        if (!*a)
                return strdup(b);
        if (asprintf(&p, "%s/%s", a, b) < 0)
                return NULL;
        return p;
}

/* Opens a folder below the target without following symlinks anywhere on the way. */
static int open_dir(Restore *rs, const char *relpath)
{
        static atomic_bool no_openat2;
        int fd, dfd;
        _cleanup_free_ char *copy = NULL;
        char *s, *save = NULL;

        if (!*relpath)
                return fcntl(rs->targetfd, F_DUPFD_CLOEXEC, 3);
        if (!atomic_load(&no_openat2)) {
                /* One call instead of one per component (Linux 5.6+). */
                struct open_how how = {
                        .flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
                        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
                };
                fd = (int)syscall(SYS_openat2, rs->targetfd, relpath, &how, sizeof(how));
                if (fd >= 0)
                        return fd;
                if (errno != ENOSYS)
                        return -errno;
                atomic_store(&no_openat2, true);
        }
        copy = strdup(relpath);
        if (!copy)
                return -ENOMEM;
        dfd = fcntl(rs->targetfd, F_DUPFD_CLOEXEC, 3);
        if (dfd < 0)
                return -errno;
        for (s = strtok_r(copy, "/", &save); s; s = strtok_r(NULL, "/", &save)) {
                fd = openat(dfd, s, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                close(dfd);
                if (fd < 0)
                        return -errno;
                dfd = fd;
        }
        return dfd;
}

/* ---- metadata --------------------------------------------------------------------------- */

static struct timespec to_ts(const HfTime *t)
{
        return (struct timespec){ .tv_sec = (time_t)t->sec, .tv_nsec = t->nsec };
}

/*
 * Owner, mode and xattrs on an open fd (files and folders). created_perm is what the item was
 * created with (with umask 0), so chmod is skipped when that is already right. Returns the
 * first error.
 */
static int apply_meta_fd(Restore *rs, int fd, const HfNode *n, mode_t created_perm)
{
        mode_t want = hf_mode_from_go(n->mode);
        bool chowned = false;
        int r = 0;

        if (rs->is_root && (n->uid != rs->euid || n->gid != rs->egid)) {
                if (fchown(fd, n->uid, n->gid) < 0)
                        r = -errno;
                chowned = true;
        }
        /* After chown, which clears setuid/setgid. */
        if ((want != created_perm || chowned) && fchmod(fd, want) < 0 && r == 0)
                r = -errno;
        for (size_t i = 0; i < n->n_xattrs; i++)
                if (fsetxattr(fd, n->xattrs[i].name, n->xattrs[i].value, n->xattrs[i].len, 0) < 0 &&
                    r == 0)
                        r = -errno;
        return r;
}

static int apply_times_fd(int fd, const HfNode *n)
{
        struct timespec ts[2] = { to_ts(&n->atime), to_ts(&n->mtime) };
        return futimens(fd, ts) < 0 ? -errno : 0;
}

/* For items that cannot be opened (symlinks, fifos, devices): by name, not following. */
static int apply_meta_at(Restore *rs, int dfd, const char *name, const HfNode *n)
{
        struct timespec ts[2] = { to_ts(&n->atime), to_ts(&n->mtime) };
        _cleanup_free_ char *proc = NULL;
        int r = 0;

        if (rs->is_root && fchownat(dfd, name, n->uid, n->gid, AT_SYMLINK_NOFOLLOW) < 0)
                r = -errno;
        if (n->type != HF_NODE_SYMLINK && fchmodat(dfd, name, hf_mode_from_go(n->mode), 0) < 0 &&
            r == 0)
                r = -errno;
        if (n->n_xattrs && asprintf(&proc, "/proc/self/fd/%d/%s", dfd, name) >= 0)
                for (size_t i = 0; i < n->n_xattrs; i++)
                        if (lsetxattr(proc, n->xattrs[i].name, n->xattrs[i].value, n->xattrs[i].len,
                                      0) < 0 &&
                            r == 0 && errno != EPERM)
                                r = -errno;
        if (utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0 && r == 0)
                r = -errno;
        return r;
}

/* ---- planning --------------------------------------------------------------------------- */

/* Include/exclude decision for a snapshot path: 0 skip, 1 restore (all below), 2 only pass
 * through (a folder some include may match below). */
static int decide(const HfRestoreOptions *o, const char *path, const char *name, bool is_dir)
{
        if (hf_exclude_match(o->excludes, o->n_excludes, path, name))
                return 0;
        if (o->n_includes == 0)
                return 1;
        if (hf_exclude_match(o->includes, o->n_includes, path, name))
                return 1;
        return is_dir ? 2 : 0;
}

/* Removes whatever is at dfd/name unless it is a folder (which is kept: never rm -r). */
static int make_room(int dfd, const char *name, bool want_dir)
{
        struct stat st;

        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (S_ISDIR(st.st_mode))
                return want_dir ? 1 : -EISDIR;
        return unlinkat(dfd, name, 0) < 0 ? -errno : 0;
}

/* Makes the symlink, fifo or device node n at dfd/name (target: the symlink's). */
static int make_other(int dfd, const HfNode *n, const char *target)
{
        int r;

        if (n->type == HF_NODE_SYMLINK)
                r = symlinkat(target, dfd, n->name);
        else if (n->type == HF_NODE_FIFO)
                r = mknodat(dfd, n->name, S_IFIFO | 0600, 0);
        else
                r = mknodat(dfd, n->name, (n->type == HF_NODE_DEV ? S_IFBLK : S_IFCHR) | 0600,
                            (dev_t)n->device);
        return r < 0 ? -errno : 0;
}

static int create_other(Restore *rs, int dfd, const HfNode *n, const char *snap_path)
{
        _cleanup_free_ char *t = NULL;
        int r;

        if (n->type != HF_NODE_SYMLINK && n->type != HF_NODE_FIFO && n->type != HF_NODE_DEV &&
            n->type != HF_NODE_CHARDEV)
                return 0; /* sockets and irregular files: restic does not restore these either */
        if (n->type == HF_NODE_SYMLINK) {
                t = strndup(n->linktarget ? n->linktarget : "", n->linktarget_len);
                if (!t)
                        return -ENOMEM;
        }
        /* Made first, and only when the name is taken is what holds it looked at (a fresh
         * restore pays no stat per item). */
        r = make_other(dfd, n, t);
        if (r == -EEXIST) {
                r = make_room(dfd, n->name, false);
                if (r >= 0)
                        r = make_other(dfd, n, t);
        }
        if (r < 0)
                goto fail;
        r = apply_meta_at(rs, dfd, n->name, n);
        if (r < 0 && r != -EPERM && r != -ENOTSUP)
                hf_report_error(&rs->opts->out, "restore", snap_path, r,
                                "restored, but its metadata could not be set: %m");
        rs->others++;
        return 0;
fail:
        hf_report_error(&rs->opts->out, "restore", snap_path, r, "cannot create: %m");
        rs->failed_other++;
        return 0;
}

static int add_dir(Restore *rs, size_t parent, const char *relpath, const HfNode *n, size_t *ret)
{
        RDir *d;
        int r = hf_reserve((void **)&rs->dirs, &rs->cap_dirs, rs->n_dirs, sizeof(RDir));

        if (r < 0)
                return r;
        d = &rs->dirs[rs->n_dirs];
        memset(d, 0, sizeof(*d));
        d->parent = parent;
        d->relpath = strdup(relpath);
        if (!d->relpath)
                return -ENOMEM;
        if (n) {
                r = hf_node_copy(n, &d->node);
                if (r < 0) {
                        free(d->relpath);
                        return r;
                }
                d->has_node = true;
        }
        *ret = rs->n_dirs++;
        return 0;
}

static ssize_t find_group(Restore *rs, const HfNode *n)
{
        size_t h;

        if (!rs->group_slots)
                return -1;
        for (h = (n->inode * 0x9e3779b97f4a7c15ULL ^ n->device_id) & rs->group_mask;
             rs->group_slots[h]; h = (h + 1) & rs->group_mask) {
                RGroup *g = &rs->groups[rs->group_slots[h] - 1];
                if (g->inode == n->inode && g->device_id == n->device_id)
                        return (ssize_t)(rs->group_slots[h] - 1);
        }
        return -1;
}

static int add_group(Restore *rs, const HfNode *n, size_t primary, ssize_t *ret)
{
        size_t h;
        int r;

        if ((rs->n_groups + 1) * 2 > rs->group_mask + 1) {
                size_t nmask = rs->group_mask ? rs->group_mask * 2 + 1 : 255;
                size_t *nv = calloc(nmask + 1, sizeof(size_t));
                if (!nv)
                        return -ENOMEM;
                for (size_t i = 0; i < rs->n_groups; i++) {
                        RGroup *g = &rs->groups[i];
                        for (h = (g->inode * 0x9e3779b97f4a7c15ULL ^ g->device_id) & nmask; nv[h];
                             h = (h + 1) & nmask)
                                ;
                        nv[h] = i + 1;
                }
                free(rs->group_slots);
                rs->group_slots = nv;
                rs->group_mask = nmask;
        }
        r = hf_reserve((void **)&rs->groups, &rs->cap_groups, rs->n_groups, sizeof(RGroup));
        if (r < 0)
                return r;
        rs->groups[rs->n_groups] = (RGroup){ .device_id = n->device_id,
                                             .inode = n->inode,
                                             .primary = primary };
        for (h = (n->inode * 0x9e3779b97f4a7c15ULL ^ n->device_id) & rs->group_mask;
             rs->group_slots[h]; h = (h + 1) & rs->group_mask)
                ;
        rs->group_slots[h] = ++rs->n_groups;
        *ret = (ssize_t)(rs->n_groups - 1);
        return 0;
}

/*
 * A folder during planning. Folders are created only when something in them is restored, so
 * --include does not leave empty folders where nothing matched.
 */
typedef struct PlanDir {
        struct PlanDir *parent;
        size_t idx;       /* in rs->dirs */
        const char *name; /* in the parent (NULL for the target) */
        const char *snap_path;
        int fd; /* -1 until created */
        bool failed;
} PlanDir;

static int ensure_dir(Restore *rs, PlanDir *d)
{
        int r;

        if (d->fd >= 0)
                return 0;
        if (d->failed || !d->parent)
                return -ENOENT;
        r = ensure_dir(rs, d->parent);
        if (r < 0) {
                d->failed = true;
                return r;
        }
        /* Made first; only an existing name is looked at (kept when a folder). */
        r = mkdirat(d->parent->fd, d->name, 0700) < 0 ? -errno : 0;
        if (r == -EEXIST) {
                r = make_room(d->parent->fd, d->name, true);
                if (r == 0 && mkdirat(d->parent->fd, d->name, 0700) < 0)
                        r = -errno;
        }
        if (r >= 0) {
                d->fd = openat(d->parent->fd, d->name,
                               O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                r = d->fd < 0 ? -errno : 0;
        }
        if (r < 0) {
                d->failed = true;
                hf_report_error(&rs->opts->out, "restore", d->snap_path, r,
                                "cannot create folder (its content is skipped): %m");
                rs->failed_other++;
                return r;
        }
        rs->dirs[d->idx].created = true;
        return 0;
}

static int plan_tree(Restore *rs, const HfId *tree, PlanDir *dir, bool all);

static RSplit *split_free(RSplit *s)
{
        if (!s)
                return NULL;
        pthread_mutex_destroy(&s->lock);
        if (s->fd >= 0)
                close(s->fd);
        if (s->dfd >= 0)
                close(s->dfd);
        free(s->tmp);
        free(s->sizes);
        free(s);
        return NULL;
}

/*
 * The plan of a split: blob sizes from the index, then ranges of about the same load each. A
 * run of identical blobs (zeros in a sparse file) is loaded once, so only the first blob of a
 * run counts, and a run is never cut. NULL (not an error) when the file is better written
 * whole: too little to load, a blob the index does not know (the whole-file path reports it
 * and keeps later content where it can), sizes that disagree with the node, a single range.
 */
static int split_plan(Restore *rs, const HfNode *n, RSplit **ret)
{
        const HfIndex *idx = hf_repo_index(rs->repo);
        _cleanup_free_ uint32_t *sizes = NULL;
        uint64_t total = 0, load = 0, target, acc = 0, off = 0;
        size_t max_ranges, begin = 0;
        RSplit *s;

        *ret = NULL;
        if (rs->n_workers < 2 || n->size <= SPLIT_MIN || n->n_content < 2)
                return 0;
        sizes = malloc(n->n_content * sizeof(uint32_t));
        if (!sizes)
                return -ENOMEM;
        for (size_t i = 0; i < n->n_content; i++) {
                const HfIndexEntry *e = hf_index_lookup(idx, HF_BLOB_DATA, &n->content[i]);
                if (!e || e->pack == HF_INDEX_PACK_PENDING || e->length < HF_CRYPTO_OVERHEAD)
                        return 0;
                sizes[i] = (uint32_t)hf_index_entry_plain_len(e);
                total += sizes[i];
                if (i == 0 || !hf_id_eq(&n->content[i], &n->content[i - 1]))
                        load += sizes[i];
        }
        if (total != n->size || load <= SPLIT_MIN)
                return 0;
        max_ranges = (size_t)((load + RANGE_BYTES - 1) / RANGE_BYTES);
        target = (load + max_ranges - 1) / max_ranges;
        /* Each range but the last loads at least target, so there are at most max_ranges. */
        s = calloc(1, sizeof(*s) + max_ranges * sizeof(RRange));
        if (!s)
                return -ENOMEM;
        for (size_t i = 0; i < n->n_content; i++) {
                if (i == 0 || !hf_id_eq(&n->content[i], &n->content[i - 1]))
                        acc += sizes[i];
                if (i + 1 == n->n_content ||
                    (acc >= target && !hf_id_eq(&n->content[i + 1], &n->content[i]))) {
                        s->ranges[s->n_ranges++] = (RRange){ .begin = begin,
                                                             .end = i + 1,
                                                             .off = off };
                        for (; begin <= i; begin++)
                                off += sizes[begin];
                        acc = 0;
                }
        }
        if (s->n_ranges < 2) {
                free(s);
                return 0;
        }
        pthread_mutex_init(&s->lock, NULL);
        s->kind = RWORK_SPLIT;
        s->dfd = s->fd = -1;
        s->sizes = TAKE_PTR(sizes);
        atomic_init(&s->next, 0);
        atomic_init(&s->refs, s->n_ranges + 1);
        atomic_init(&s->first_err, 0);
        atomic_init(&s->fatal, 0);
        atomic_init(&s->holes, false);
        *ret = s;
        return 0;
}

static void split_list(Restore *rs, RSplit *s)
{
        pthread_mutex_lock(&rs->split_lock);
        s->prev = NULL;
        s->next_split = rs->splits;
        if (rs->splits)
                rs->splits->prev = s;
        rs->splits = s;
        s->listed = true;
        pthread_mutex_unlock(&rs->split_lock);
}

static void split_unlist(Restore *rs, RSplit *s)
{
        pthread_mutex_lock(&rs->split_lock);
        if (s->listed) {
                if (s->prev)
                        s->prev->next_split = s->next_split;
                else
                        rs->splits = s->next_split;
                if (s->next_split)
                        s->next_split->prev = s->prev;
                s->listed = false;
        }
        pthread_mutex_unlock(&rs->split_lock);
}

/* Frees the files the writers are done with; only the thread that allocated them calls this. */
static void reap_files(Restore *rs)
{
        RFile *f = atomic_exchange(&rs->done, NULL);

        while (f) {
                RFile *next = f->next_done;
                rfile_free(f);
                f = next;
        }
}

#define PREFETCH_GAP (256u * 1024)
#define PREFETCH_SPAN (4u << 20)
#define PREFETCH_RANGES 2

static void pf_flush(Restore *rs, PfSpan *sp)
{
        if (sp->pack != UINT32_MAX)
                hf_repo_prefetch(rs->repo, sp->pack, sp->start, (size_t)(sp->end - sp->start));
        sp->pack = UINT32_MAX;
}

/* Adds a blob to the stretch, hinting the stretch first when the blob does not extend it
 * (another pack, before it, too far after it, or past PREFETCH_SPAN). */
static void pf_add(Restore *rs, PfSpan *sp, const HfIndexEntry *e)
{
        uint64_t end = (uint64_t)e->offset + e->length;

        if (e->pack == sp->pack && e->offset >= sp->start && e->offset <= sp->end + PREFETCH_GAP &&
            end - sp->start <= PREFETCH_SPAN) {
                sp->end = MAX(sp->end, end);
                return;
        }
        pf_flush(rs, sp);
        *sp = (PfSpan){ .pack = e->pack, .start = e->offset, .end = end };
}

/* Adds the n blobs ids to the stretch sp, in their order. */
static void pf_add_blobs(Restore *rs, PfSpan *sp, const HfId *ids, size_t n)
{
        const HfIndex *idx = hf_repo_index(rs->repo);

        for (size_t i = 0; i < n; i++) {
                const HfIndexEntry *e = hf_index_lookup(idx, HF_BLOB_DATA, &ids[i]);
                if (e)
                        pf_add(rs, sp, e);
        }
}

/*
 * The planner queues files well ahead of the writers: it hints their blobs' bytes to be read
 * ahead, in stretches of a pack (consecutive files' blobs are usually neighbours), so a cold
 * restore reads the disk while the writers decode.
 */
static void prefetch_file(Restore *rs, const HfNode *n)
{
        pf_add_blobs(rs, &rs->pf, n->content, n->n_content);
}

/* Hints range ri of a split file (when there is one) to be read ahead, in file order: its
 * blobs are usually in pack order too. */
static void prefetch_range(Restore *rs, RSplit *s, size_t ri)
{
        PfSpan sp = { .pack = UINT32_MAX };

        if (ri >= s->n_ranges)
                return;
        pf_add_blobs(rs, &sp, s->f->node.content + s->ranges[ri].begin,
                     s->ranges[ri].end - s->ranges[ri].begin);
        pf_flush(rs, &sp);
}

/* Queues a file to write, whole or split when large. Takes f: on failure it is freed unless
 * hard-linked (rs->files keeps those). */
static int queue_file(Restore *rs, RFile *f)
{
        RSplit *s;
        int r;

        reap_files(rs);
        r = split_plan(rs, &f->node, &s);
        if (r >= 0 && !s) {
                prefetch_file(rs, &f->node);
                r = hf_queue_push(rs->work, f);
        } else if (r >= 0) {
                s->f = f;
                /* The first ranges now; a writer starting range ri hints ri + PREFETCH_RANGES. */
                for (size_t k = 0; k <= PREFETCH_RANGES; k++)
                        prefetch_range(rs, s, k);
                /* Listed before it is queued: a worker may take it and be done at once. */
                split_list(rs, s);
                r = hf_queue_push(rs->work, s);
                if (r < 0) {
                        split_unlist(rs, s);
                        split_free(s);
                }
        }
        if (r < 0 && f->group < 0)
                rfile_free(f);
        return r;
}

static int plan_node(Restore *rs, const HfNode *n, PlanDir *dir, bool all)
{
        _cleanup_free_ char *snap_path = NULL;
        int sel, r;

        /* Snapshot paths are absolute: "" + "/" + name at the top. */
        if (asprintf(&snap_path, "%s/%s", dir->snap_path, n->name) < 0)
                snap_path = NULL;
        if (!snap_path)
                return -ENOMEM;
        sel = all ? (hf_exclude_match(rs->opts->excludes, rs->opts->n_excludes, snap_path, n->name)
                             ? 0
                             : 1)
                  : decide(rs->opts, snap_path, n->name, n->type == HF_NODE_DIR);
        if (sel == 0)
                return 0;

        if (n->type == HF_NODE_DIR) {
                _cleanup_free_ char *rel = join(rs->dirs[dir->idx].relpath, n->name);
                PlanDir sub = { .parent = dir, .name = n->name, .snap_path = snap_path, .fd = -1 };

                if (!rel)
                        return -ENOMEM;
                r = add_dir(rs, dir->idx, rel, n, &sub.idx);
                if (r < 0)
                        return r;
                /* A folder restored as a whole exists even when empty; a pass-through folder
                 * only once something below it is restored. */
                if (sel == 1 && ensure_dir(rs, &sub) < 0)
                        return 0;
                if (n->has_subtree)
                        r = plan_tree(rs, &n->subtree, &sub, sel == 1);
                if (sub.fd >= 0)
                        close(sub.fd);
                return r;
        }
        if (ensure_dir(rs, dir) < 0)
                return 0; /* reported when the folder failed */
        if (n->type == HF_NODE_FILE) {
                RFile *f;
                ssize_t g = -1;
                bool link_only = false;

                bool linked = n->links > 1 && n->inode;

                if (linked) {
                        g = find_group(rs, n);
                        if (g >= 0)
                                link_only = true;
                        r = hf_reserve((void **)&rs->files, &rs->cap_files, rs->n_files,
                                       sizeof(RFile *));
                        if (r < 0)
                                return r;
                        if (g < 0) {
                                r = add_group(rs, n, rs->n_files, &g);
                                if (r < 0)
                                        return r;
                        }
                }
                f = calloc(1, sizeof(*f));
                if (!f)
                        return -ENOMEM;
                r = hf_node_copy(n, &f->node);
                if (r < 0) {
                        free(f);
                        return r;
                }
                f->dir = dir->idx;
                f->dirpath = rs->dirs[dir->idx].relpath;
                f->group = g;
                f->link_only = link_only;
                f->snap_path = TAKE_PTR(snap_path);
                /* Only hard-linked names stay listed (make_links needs them); a writer frees
                 * every other file once it is written, so memory follows the queue, not the
                 * snapshot. */
                if (linked)
                        rs->files[rs->n_files++] = f;
                if (!link_only) {
                        hf_progress_add_total(rs->progress, 1, n->size);
                        /* Writers start while the walk goes on. */
                        return queue_file(rs, f);
                }
                return 0;
        }
        return create_other(rs, dir->fd, n, snap_path);
}

static int plan_tree(Restore *rs, const HfId *tree, PlanDir *dir, bool all)
{
        HfTree t = { 0 };
        int r;

        r = hf_load_tree(rs->repo, rs->codec, tree, &t);
        if (r < 0) {
                hf_report_error(&rs->opts->out, "restore", *dir->snap_path ? dir->snap_path : "/",
                                r, "folder content cannot be read from the vault (skipped)");
                rs->failed_other++;
                return 0;
        }
        for (size_t i = 0; i < t.n && r >= 0; i++)
                r = plan_node(rs, &t.nodes[i], dir, all);
        hf_tree_done(&t);
        return r;
}

/* ---- writing files ---------------------------------------------------------------------- */

typedef struct RRead RRead;

/* A small file's blob, loaded and hashed with its batch (RWorker.batch). */
typedef struct RPreloaded {
        const RFile *f;
        size_t off, len;
        int r; /* as hf_repo_load_blob() returns it */
} RPreloaded;

struct RWorker {
        Restore *rs;
        HfCodec *codec;
        HfBuf blob;
        HfBuf batch;             /* the batch's blobs, one after the other */
        const RPreloaded *ready; /* the blob of the file being written, if preloaded */
        HfBuf check;
        RRead *reads; /* a range's blobs in pack order; grows to the largest range */
        size_t cap_reads;
        size_t cached_dir;
        int cached_fd;
        pthread_t thread;
};

static bool all_zero(const uint8_t *p, size_t n)
{
        static const uint8_t zero[4096];

        while (n >= sizeof(zero)) {
                if (memcmp(p, zero, sizeof(zero)) != 0)
                        return false;
                p += sizeof(zero);
                n -= sizeof(zero);
        }
        return memcmp(p, zero, n) == 0;
}

static int worker_dirfd(RWorker *w, const RFile *f)
{
        if (w->cached_fd >= 0 && w->cached_dir == f->dir)
                return w->cached_fd;
        if (w->cached_fd >= 0)
                close(w->cached_fd);
        w->cached_fd = open_dir(w->rs, f->dirpath);
        w->cached_dir = f->dir;
        return w->cached_fd;
}

/* Re-reads what was written and hashes it chunk by chunk against the content IDs. */
static int verify_file(RWorker *w, int fd, const HfNode *n, const uint32_t *sizes)
{
        uint64_t off = 0;
        int r;

        (void)fdatasync(fd);
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        for (size_t i = 0; i < n->n_content; i++) {
                HfId got;
                hf_buf_reset(&w->check);
                r = hf_buf_reserve(&w->check, sizes[i]);
                if (r < 0)
                        return r;
                r = hf_pread_all(fd, w->check.data, sizes[i], off);
                if (r < 0)
                        return r;
                hf_sha256(w->check.data, sizes[i], &got);
                if (!hf_id_eq(&got, &n->content[i]))
                        return -EBADMSG;
                off += sizes[i];
        }
        return 0;
}

/*
 * Creates the file to write: straight under its name when nothing is there (a fresh restore),
 * else under a temporary name renamed over the old file only once complete, so an existing
 * file is never replaced by a partial one. Permission bits are given at creation (the umask
 * is 0 during a restore), which saves a chmod for most files.
 */
static int create_target(int dfd, const char *name, mode_t perm, char **ret_tmp)
{
        char rnd[9];
        uint8_t rb[4];
        int fd;

        *ret_tmp = NULL;
        fd = openat(dfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, perm);
        if (fd >= 0 || errno != EEXIST)
                return fd < 0 ? -errno : fd;
        if (hf_random_bytes(rb, sizeof(rb)) < 0)
                memset(rb, 0x5a, sizeof(rb));
        hf_hex_encode(rb, sizeof(rb), rnd);
        if (asprintf(ret_tmp, ".%.200s.holdfast-%s", name, rnd) < 0) {
                *ret_tmp = NULL;
                return -ENOMEM;
        }
        fd = openat(dfd, *ret_tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, perm);
        if (fd < 0) {
                int r = -errno;
                free(*ret_tmp);
                *ret_tmp = NULL;
                return r;
        }
        return fd;
}

static void report_blob_error(Restore *rs, const RFile *f, const HfId *id, uint64_t off, int r)
{
        char hex[HF_ID_HEX_LEN + 1];

        hf_id_hex(id, hex);
        hf_report_error(&rs->opts->out, "restore", f->snap_path, r, "blob %.16s at offset %llu %s",
                        hex, (unsigned long long)off,
                        r == -ENOENT    ? "is missing from the vault"
                        : r == -EBADMSG ? "is damaged (MAC or hash mismatch)"
                                        : "cannot be read");
}

/* A write failed: the file is reported and removed. Takes fd. */
static int abandon_file(Restore *rs, const RFile *f, int dfd, int fd, const char *written_name,
                        int r)
{
        hf_report_error(&rs->opts->out, "restore", f->snap_path, r, "cannot restore: %m");
        if (fd >= 0)
                close(fd);
        (void)unlinkat(dfd, written_name, 0);
        return r;
}

/*
 * Once the content is in (off bytes of it, holes included): size check, --verify, metadata,
 * then the rename into place, or to NAME.holdfast-partial when a blob failed (first_err).
 * Takes fd. Returns 0 or the file's error, reported.
 */
static int finish_file(RWorker *w, const RFile *f, int dfd, int fd, const char *tmp,
                       const uint32_t *sizes, uint64_t off, int first_err)
{
        Restore *rs = w->rs;
        const HfNode *n = &f->node;
        const char *written_name = tmp ? tmp : n->name;
        int r;

        if (!first_err && off != n->size)
                hf_report_error(&rs->opts->out, "restore", f->snap_path, 0,
                                "content is %llu bytes but the snapshot says %llu",
                                (unsigned long long)off, (unsigned long long)n->size);
        if (!first_err && rs->opts->verify) {
                r = verify_file(w, fd, n, sizes);
                if (r < 0) {
                        atomic_fetch_add(&rs->verify_failed, 1);
                        hf_report_error(&rs->opts->out, "restore", f->snap_path, r,
                                        "verification failed: what was written does not hash "
                                        "to the snapshot's content (%m)");
                        first_err = r;
                } else
                        atomic_fetch_add(&rs->verified, 1);
        }
        /* Created with the final permission bits. */
        r = apply_meta_fd(rs, fd, n, hf_mode_from_go(n->mode) & 0777);
        if (r < 0 && r != -ENOTSUP)
                hf_report_error(&rs->opts->out, "restore", f->snap_path, r,
                                "restored, but its owner, mode or xattrs could not be set: %m");
        if (apply_times_fd(fd, n) < 0)
                hf_report_error(&rs->opts->out, "restore", f->snap_path, -errno,
                                "restored, but its times could not be set: %m");
        if (close(fd) < 0)
                return abandon_file(rs, f, dfd, -1, written_name, -errno);
        if (first_err) {
                _cleanup_free_ char *partial = NULL;
                if (asprintf(&partial, "%s" PARTIAL_SUFFIX, n->name) >= 0 &&
                    renameat(dfd, written_name, dfd, partial) == 0)
                        hf_report_error(&rs->opts->out, "restore", f->snap_path, 0,
                                        "not restored; what could be read is in %s", partial);
                else
                        (void)unlinkat(dfd, written_name, 0);
                return first_err;
        }
        if (tmp && renameat(dfd, tmp, dfd, n->name) < 0)
                return abandon_file(rs, f, dfd, -1, written_name, -errno);
        return 0;
}

/* Counts a file as written or failed (r < 0, reported) and hands it back to the planner to be
 * freed, unless hard-linked. */
static void file_done(Restore *rs, RFile *f, int r)
{
        bool linked = f->group >= 0;

        if (r < 0) {
                atomic_fetch_add(&rs->files_failed, 1);
                if (linked)
                        f->group = -2; /* tells its hard links the first name is missing */
        } else
                atomic_fetch_add(&rs->files_done, 1);
        hf_progress_add_files(rs->progress, 1);
        if (linked)
                return;
        f->next_done = atomic_load(&rs->done);
        while (!atomic_compare_exchange_weak(&rs->done, &f->next_done, f))
                ;
}

/*
 * Puts a blob's n bytes at off and counts them: written, or left as a hole when they are all
 * zeros. Returns 1 for a hole, 0 when written, < 0 when the write failed.
 */
static int put_blob(RWorker *w, int fd, const uint8_t *data, size_t n, uint64_t off)
{
        Restore *rs = w->rs;
        int r = 1;

        if (!all_zero(data, n)) {
                r = hf_write_all_at(fd, data, n, off);
                if (r < 0)
                        return r;
        }
        hf_progress_add_bytes(rs->progress, n);
        atomic_fetch_add(&rs->bytes, n);
        return r;
}

static int restore_file(RWorker *w, RFile *f)
{
        Restore *rs = w->rs;
        const HfNode *n = &f->node;
        _cleanup_free_ uint32_t *sizes = NULL;
        _cleanup_free_ char *tmp = NULL;
        /* Write permission for ourselves until the data is in (a 0444 file stays writable
         * through this fd anyway, but verify reads it back). */
        mode_t perm = hf_mode_from_go(n->mode) & 0777;
        int dfd, fd, r, first_err = 0;
        uint64_t off = 0;
        ssize_t last = -1;
        bool hole_at_end = false;
        const uint8_t *data = NULL;
        size_t len = 0;

        dfd = worker_dirfd(w, f);
        if (dfd < 0) {
                hf_report_error(&rs->opts->out, "restore", f->snap_path, dfd,
                                "cannot open its folder: %m");
                return dfd;
        }
        fd = create_target(dfd, n->name, perm, &tmp);
        if (fd < 0) {
                r = fd;
                hf_report_error(&rs->opts->out, "restore", f->snap_path, r,
                                "cannot create a file in its folder: %m");
                return r;
        }
        sizes = calloc(MAX(n->n_content, (size_t)1), sizeof(uint32_t));
        if (!sizes) {
                r = -ENOMEM;
                goto fail;
        }
        for (size_t i = 0; i < n->n_content; i++) {
                /* A run of identical blobs (zeros in sparse files) is loaded once. */
                if (last < 0 || !hf_id_eq(&n->content[i], &n->content[last])) {
                        if (i == 0 && w->ready && w->ready->f == f) {
                                r = w->ready->r;
                                data = w->batch.data + w->ready->off;
                                len = w->ready->len;
                        } else {
                                hf_buf_reset(&w->blob);
                                r = hf_repo_load_blob(rs->repo, w->codec, HF_BLOB_DATA,
                                                      &n->content[i], &w->blob);
                                data = w->blob.data;
                                len = w->blob.len;
                        }
                        if (r < 0) {
                                report_blob_error(rs, f, &n->content[i], off, r);
                                if (first_err == 0)
                                        first_err = r;
                                /* Leave a hole of the blob's size (when the index knows it),
                                 * so everything after it stays at its offset. */
                                const HfIndexEntry *e = hf_index_lookup(
                                        hf_repo_index(rs->repo), HF_BLOB_DATA, &n->content[i]);
                                sizes[i] = e ? (uint32_t)hf_index_entry_plain_len(e) : 0;
                                off += sizes[i];
                                hole_at_end = true;
                                last = -1;
                                continue;
                        }
                        last = (ssize_t)i;
                }
                sizes[i] = (uint32_t)len;
                r = put_blob(w, fd, data, len, off);
                if (r < 0)
                        goto fail;
                hole_at_end = r > 0;
                off += len;
        }
        /* Zero blobs were skipped (holes); a trailing one needs the size set. */
        if (hole_at_end || (first_err && off < n->size)) {
                if (ftruncate(fd, (off_t)(first_err ? MAX(off, n->size) : off)) < 0) {
                        r = -errno;
                        goto fail;
                }
        }
        return finish_file(w, f, dfd, fd, tmp, sizes, off, first_err);
fail:
        return abandon_file(rs, f, dfd, fd, tmp ? tmp : n->name, r);
}

/* ---- writing a file in ranges ----------------------------------------------------------- */

/* Creates the file of a split once, whichever range comes first. -1 when that failed
 * (reported then). */
static int split_open(Restore *rs, RSplit *s)
{
        const RFile *f = s->f;
        int fd;

        pthread_mutex_lock(&s->lock);
        if (!s->opened) {
                s->opened = true;
                /* Its own folder fd: any worker may finish the file. */
                s->dfd = open_dir(rs, f->dirpath);
                if (s->dfd < 0) {
                        s->open_err = s->dfd;
                        hf_report_error(&rs->opts->out, "restore", f->snap_path, s->open_err,
                                        "cannot open its folder: %m");
                } else {
                        s->fd = create_target(s->dfd, f->node.name,
                                              hf_mode_from_go(f->node.mode) & 0777, &s->tmp);
                        if (s->fd < 0) {
                                s->open_err = s->fd;
                                hf_report_error(&rs->opts->out, "restore", f->snap_path,
                                                s->open_err,
                                                "cannot create a file in its folder: %m");
                        }
                }
        }
        fd = s->fd;
        pthread_mutex_unlock(&s->lock);
        return fd;
}

/* What the last reference does: the file as restore_file finishes it, then the accounting. */
static void split_finish(Restore *rs, RWorker *w, RSplit *s)
{
        RFile *f = s->f;
        const char *written_name = s->tmp ? s->tmp : f->node.name;
        int r = atomic_load(&s->fatal);
        int fd = s->fd;

        s->fd = -1; /* finish_file and abandon_file take it */
        if (fd < 0)
                r = s->open_err ? s->open_err : r; /* reported by split_open */
        else if (r < 0)
                abandon_file(rs, f, s->dfd, fd, written_name, r);
        else if (atomic_load(&s->holes) && ftruncate(fd, (off_t)f->node.size) < 0)
                /* Zeros and failed blobs were skipped; the ranges wrote everything else. */
                r = abandon_file(rs, f, s->dfd, fd, written_name, -errno);
        else
                r = finish_file(w, f, s->dfd, fd, s->tmp, s->sizes, f->node.size,
                                atomic_load(&s->first_err));
        file_done(rs, f, r);
        split_free(s);
}

/* Drops a reference to a split; the last one finishes the file. */
static void split_put(RWorker *w, RSplit *s)
{
        if (atomic_fetch_sub(&s->refs, 1) == 1)
                split_finish(w->rs, w, s);
}

struct RRead {
        uint32_t pack, pack_off; /* where the blob is in the vault */
        size_t blob;             /* its index in the file's content */
        uint64_t off;            /* where it goes in the file */
};

static int rread_cmp(const void *a, const void *b)
{
        const RRead *x = a, *y = b;

        if (x->pack != y->pack)
                return x->pack < y->pack ? -1 : 1;
        if (x->pack_off != y->pack_off)
                return x->pack_off < y->pack_off ? -1 : 1;
        return (x->blob > y->blob) - (x->blob < y->blob);
}

/*
 * Writes range ri, claimed by this worker, and drops its reference. Its blobs are read in pack
 * order: sequential reads within each pack, and copies of one blob (a run of zeros) next to
 * each other, so each is loaded once. A damaged blob is reported and left as a hole like in
 * restore_file; a failed write stops the file.
 */
static void restore_range(RWorker *w, RSplit *s, size_t ri)
{
        Restore *rs = w->rs;
        const RRange *rg = &s->ranges[ri];
        const RFile *f = s->f;
        const HfNode *n = &f->node;
        const HfIndex *idx = hf_repo_index(rs->repo);
        size_t nr = rg->end - rg->begin, last = SIZE_MAX;
        uint64_t off = rg->off;
        int fd, r;

        fd = split_open(rs, s);
        if (fd < 0 || atomic_load(&s->fatal) < 0)
                goto out;
        if (nr > 0 && hf_reserve((void **)&w->reads, &w->cap_reads, nr - 1, sizeof(RRead)) < 0) {
                atomic_store(&s->fatal, -ENOMEM);
                goto out;
        }
        for (size_t i = 0; i < nr; i++) {
                const HfIndexEntry *e = hf_index_lookup(idx, HF_BLOB_DATA,
                                                        &n->content[rg->begin + i]);
                /* The planner found every blob; a later miss is reported by the load. */
                w->reads[i] = (RRead){ .pack = e ? e->pack : UINT32_MAX,
                                       .pack_off = e ? e->offset : 0,
                                       .blob = rg->begin + i,
                                       .off = off };
                off += s->sizes[rg->begin + i];
        }
        qsort(w->reads, nr, sizeof(RRead), rread_cmp);
        /* Ranges up to ri + PREFETCH_RANGES are being read ahead while this one is decoded
         * (the planner hinted the first ones). */
        if (ri > 0)
                prefetch_range(rs, s, ri + PREFETCH_RANGES);
        for (size_t i = 0; i < nr && atomic_load_explicit(&s->fatal, memory_order_relaxed) == 0;
             i++) {
                const RRead *rd = &w->reads[i];
                const HfId *id = &n->content[rd->blob];
                if (last == SIZE_MAX || !hf_id_eq(id, &n->content[last])) {
                        hf_buf_reset(&w->blob);
                        r = hf_repo_load_blob(rs->repo, w->codec, HF_BLOB_DATA, id, &w->blob);
                        /* Its place in the file is fixed by the index; a blob that does not
                         * fill it exactly would shift nothing but overlap its neighbours. */
                        if (r >= 0 && w->blob.len != s->sizes[rd->blob])
                                r = -EPROTO;
                        if (r < 0) {
                                report_blob_error(rs, f, id, rd->off, r);
                                int zero = 0;
                                (void)atomic_compare_exchange_strong(&s->first_err, &zero, r);
                                atomic_store(&s->holes, true);
                                last = SIZE_MAX;
                                continue;
                        }
                        last = rd->blob;
                }
                r = put_blob(w, fd, w->blob.data, w->blob.len, rd->off);
                if (r < 0) {
                        int zero = 0;
                        (void)atomic_compare_exchange_strong(&s->fatal, &zero, r);
                        break;
                }
                if (r > 0)
                        atomic_store(&s->holes, true);
        }
out:
        split_put(w, s);
}

/* A worker that took a split file from the queue: its ranges in order, with any helpers. */
static void restore_split(RWorker *w, RSplit *s)
{
        for (size_t i; (i = atomic_fetch_add(&s->next, 1)) < s->n_ranges;)
                restore_range(w, s, i);
        split_unlist(w->rs, s);
        split_put(w, s);
}

/*
 * A worker whose queue has run dry helps with split files still being written: claims a
 * range of the one with the most left, false when none has any. A listed split holds its
 * queue reference, and the claimed range its own, so it stays valid.
 */
static bool help_claim(Restore *rs, RSplit **ret, size_t *ret_range)
{
        for (;;) {
                RSplit *best = NULL;
                size_t most = 0, i;

                pthread_mutex_lock(&rs->split_lock);
                for (RSplit *s = rs->splits; s; s = s->next_split) {
                        size_t next = atomic_load(&s->next);
                        if (next < s->n_ranges && s->n_ranges - next > most) {
                                best = s;
                                most = s->n_ranges - next;
                        }
                }
                if (best)
                        i = atomic_fetch_add(&best->next, 1);
                pthread_mutex_unlock(&rs->split_lock);
                if (!best)
                        return false;
                if (i < best->n_ranges) {
                        *ret = best;
                        *ret_range = i;
                        return true;
                }
                /* Its owner or another helper took the last range meanwhile. */
        }
}

static bool batchable(const RWorkKind *item)
{
        const RFile *f = (const RFile *)item;

        return *item == RWORK_FILE && f->node.n_content == 1 && f->node.size <= BATCH_FILE_MAX;
}

/*
 * Writes first and the small files queued right behind it: their blobs are loaded first, then
 * hashed all at once, then the files are written. Returns the first item taken from the queue
 * that is not such a file (for the caller to do), or NULL.
 */
static RWorkKind *restore_batch(RWorker *w, RFile *first)
{
        Restore *rs = w->rs;
        RFile *files[BATCH_FILES];
        RPreloaded pre[BATCH_FILES];
        HfSha256Job jobs[BATCH_FILES];
        HfId got[BATCH_FILES];
        RWorkKind *other = NULL;
        size_t n = 0, n_loaded = 0, n_jobs = 0, bytes = 0;

        files[n++] = first;
        bytes += first->node.size;
        while (n < BATCH_FILES && bytes < BATCH_BYTES) {
                RWorkKind *item = hf_queue_trypop(rs->work);
                if (!item)
                        break;
                if (!batchable(item)) {
                        other = item;
                        break;
                }
                files[n] = (RFile *)item;
                bytes += files[n++]->node.size;
        }

        /* The sizes are the snapshot's word; what counts is what is loaded. Files past the
         * budget (only when sizes lie) are loaded as they are written. */
        hf_buf_reset(&w->batch);
        for (; n_loaded < n && w->batch.len < BATCH_BYTES; n_loaded++) {
                RPreloaded *p = &pre[n_loaded];
                *p = (RPreloaded){ .f = files[n_loaded], .off = w->batch.len };
                p->r = hf_repo_load_blob_unhashed(rs->repo, w->codec, HF_BLOB_DATA,
                                                  &p->f->node.content[0], &w->batch);
                p->len = w->batch.len - p->off;
        }
        /* Pointers only now: the buffer may have moved while it grew. */
        for (size_t i = 0; i < n_loaded; i++)
                if (pre[i].r == 0)
                        jobs[n_jobs++] = (HfSha256Job){ .data = w->batch.data + pre[i].off,
                                                        .len = pre[i].len,
                                                        .out = &got[i] };
        hf_sha256_many(jobs, n_jobs);
        for (size_t i = 0; i < n_loaded; i++)
                if (pre[i].r == 0 && !hf_id_eq(&got[i], &files[i]->node.content[0]))
                        pre[i].r = -EBADMSG;

        for (size_t i = 0; i < n; i++) {
                w->ready = i < n_loaded ? &pre[i] : NULL;
                file_done(rs, files[i], restore_file(w, files[i]));
        }
        w->ready = NULL;
        return other;
}

static void *rworker_main(void *arg)
{
        RWorker *w = arg;
        Restore *rs = w->rs;
        RWorkKind *item = NULL;

        for (;;) {
                if (!item)
                        item = hf_queue_pop(rs->work);
                if (!item)
                        break;
                if (batchable(item)) {
                        item = restore_batch(w, (RFile *)item);
                        continue;
                }
                if (*item == RWORK_SPLIT)
                        restore_split(w, (RSplit *)item);
                else
                        file_done(rs, (RFile *)item, restore_file(w, (RFile *)item));
                item = NULL;
        }
        /* Every file has its worker; what is left is ranges of split ones. */
        for (;;) {
                RSplit *s;
                size_t i;
                if (!help_claim(rs, &s, &i))
                        break;
                restore_range(w, s, i);
        }
        return NULL;
}

/* ---- links, folders, deletion ----------------------------------------------------------- */

static int make_links(Restore *rs)
{
        for (size_t i = 0; i < rs->n_files; i++) {
                RFile *f = rs->files[i];
                RFile *p;
                int sfd, dfd, r = 0;

                if (!f->link_only)
                        continue;
                p = rs->files[rs->groups[f->group].primary];
                if (p->group == -2) {
                        atomic_fetch_add(&rs->files_failed, 1);
                        hf_report_error(&rs->opts->out, "restore", f->snap_path, 0,
                                        "hard link not made: its first name %s failed",
                                        p->snap_path);
                        continue;
                }
                sfd = open_dir(rs, rs->dirs[p->dir].relpath);
                dfd = open_dir(rs, rs->dirs[f->dir].relpath);
                if (sfd < 0 || dfd < 0)
                        r = sfd < 0 ? sfd : dfd;
                if (r >= 0)
                        r = make_room(dfd, f->node.name, false);
                if (r >= 0 && linkat(sfd, p->node.name, dfd, f->node.name, 0) < 0)
                        r = -errno;
                if (sfd >= 0)
                        close(sfd);
                if (dfd >= 0)
                        close(dfd);
                if (r < 0) {
                        atomic_fetch_add(&rs->files_failed, 1);
                        hf_report_error(&rs->opts->out, "restore", f->snap_path, r,
                                        "cannot make hard link: %m");
                } else
                        atomic_fetch_add(&rs->files_done, 1);
        }
        return 0;
}

/* Removes what the snapshot does not have from one restored folder (--delete). */
static uint64_t delete_extra(Restore *rs, size_t dir, const HfTree *t)
{
        int dfd = open_dir(rs, rs->dirs[dir].relpath);
        uint64_t removed = 0;
        DIR *d;
        struct dirent *de;

        if (dfd < 0)
                return 0;
        d = fdopendir(dfd);
        if (!d) {
                close(dfd);
                return 0;
        }
        while ((de = readdir(d))) {
                struct stat st;
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (hf_tree_find(t, de->d_name, strlen(de->d_name)))
                        continue;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                if (S_ISDIR(st.st_mode)) {
                        /* Whole folders go only when empty; say so otherwise. */
                        if (unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) == 0)
                                removed++;
                        else
                                hf_report_error(&rs->opts->out, "restore", de->d_name, -errno,
                                                "not in the snapshot, but not removed: %m");
                } else if (unlinkat(dirfd(d), de->d_name, 0) == 0)
                        removed++;
        }
        closedir(d);
        return removed;
}

typedef struct DirPass {
        Restore *rs;
        atomic_size_t next;
        pthread_t thread;
} DirPass;

/*
 * Folder metadata, after every entry exists. Setting a folder's mode or times does not touch
 * its parent, so the order does not matter and both cores share the work.
 */
static void *finish_dirs_main(void *arg)
{
        DirPass *dp = arg;
        Restore *rs = dp->rs;

        for (;;) {
                size_t i = atomic_fetch_add(&dp->next, 1);
                RDir *d;
                int fd, r;

                if (i >= rs->n_dirs)
                        break;
                d = &rs->dirs[i];
                if (!d->has_node || !d->created)
                        continue;
                fd = open_dir(rs, d->relpath);
                if (fd < 0)
                        continue;
                r = apply_meta_fd(rs, fd, &d->node, (mode_t)-1);
                if (r < 0 && r != -ENOTSUP)
                        hf_report_error(&rs->opts->out, "restore", d->relpath, r,
                                        "folder restored, but its owner, mode or xattrs could "
                                        "not be set: %m");
                (void)apply_times_fd(fd, &d->node);
                close(fd);
        }
        return NULL;
}

static void finish_dirs(Restore *rs)
{
        DirPass dp = { .rs = rs };
        bool helper;

        atomic_init(&dp.next, 0);
        helper = rs->n_dirs > 64 && pthread_create(&dp.thread, NULL, finish_dirs_main, &dp) == 0;
        (void)finish_dirs_main(&dp);
        if (helper)
                pthread_join(dp.thread, NULL);
}

/* ---- the run ---------------------------------------------------------------------------- */

static int find_subtree(Restore *rs, const HfId *root, const char *sub, HfId *ret,
                        char **ret_prefix)
{
        _cleanup_free_ char *copy = strdup(sub);
        HfId cur = *root;
        char *s, *save = NULL;

        if (!copy)
                return -ENOMEM;
        for (s = strtok_r(copy, "/", &save); s; s = strtok_r(NULL, "/", &save)) {
                HfTree t = { 0 };
                const HfNode *n;
                int r = hf_load_tree(rs->repo, rs->codec, &cur, &t);
                if (r < 0)
                        return r;
                n = hf_tree_find(&t, s, strlen(s));
                if (!n || n->type != HF_NODE_DIR || !n->has_subtree) {
                        hf_tree_done(&t);
                        return log_error_errno(ENOENT, "the snapshot has no folder \"%s\"", sub);
                }
                cur = n->subtree;
                hf_tree_done(&t);
        }
        *ret = cur;
        *ret_prefix = strdup(sub[0] == '/' ? sub + 1 : sub);
        return *ret_prefix ? 0 : -ENOMEM;
}

int hf_restore(HfRepo *repo, const HfSnapshot *snap, const HfRestoreOptions *opts,
               HfRestoreResult *ret)
{
        Restore rs = {
                .repo = repo, .opts = opts, .targetfd = -1, .split_lock = PTHREAD_MUTEX_INITIALIZER
        };
        RWorker *workers = NULL;
        unsigned n_workers = opts->workers ? opts->workers : (unsigned)hf_ncpus();
        _cleanup_free_ char *prefix = NULL;
        HfId root = snap->tree;
        double t0 = hf_now_mono();
        size_t rootdir;
        int r;

        rs.is_root = geteuid() == 0;
        rs.euid = geteuid();
        rs.egid = getegid();
        r = hf_mkdir_p(opts->target, 0700);
        if (r < 0)
                return log_error_errno(r, "%s: cannot create the target folder: %m", opts->target);
        rs.targetfd = open(opts->target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (rs.targetfd < 0)
                return log_error_errno(errno, "%s: cannot open the target folder: %m",
                                       opts->target);
        /* Items are created with their final permission bits (restored before returning). */
        mode_t old_umask = umask(0);
        r = hf_repo_new_codec(repo, &rs.codec);
        if (r < 0)
                goto out;
        if (opts->subpath && *opts->subpath) {
                r = find_subtree(&rs, &snap->tree, opts->subpath, &root, &prefix);
                if (r < 0)
                        goto out;
        } else {
                prefix = strdup("");
                if (!prefix) {
                        r = -ENOMEM;
                        goto out;
                }
        }
        r = add_dir(&rs, SIZE_MAX, "", NULL, &rootdir);
        if (r < 0)
                goto out;
        /* Writers first, so they start on files while the planner still walks the trees. */
        r = hf_progress_new("restore", opts->out.progress, &rs.progress);
        if (r >= 0)
                r = hf_queue_new(WORK_QUEUE, &rs.work);
        if (r < 0)
                goto out;
        /* The planner is faster than the writers and keeps the queue full: let it refill in
         * bursts rather than be woken for every file taken. */
        hf_queue_resume_at(rs.work, WORK_QUEUE / 2);
        workers = calloc(n_workers, sizeof(RWorker));
        if (!workers) {
                r = -ENOMEM;
                goto out;
        }
        for (unsigned i = 0; i < n_workers; i++) {
                RWorker *w = &workers[i];
                w->rs = &rs;
                w->cached_fd = -1;
                hf_buf_init(&w->blob, HF_BLOB_MAX_PLAIN);
                hf_buf_init(&w->batch, BATCH_BYTES + HF_BLOB_MAX_PLAIN + 64);
                hf_buf_init(&w->check, HF_BLOB_MAX_PLAIN);
                r = hf_repo_new_codec(repo, &w->codec);
                if (r >= 0 && pthread_create(&w->thread, NULL, rworker_main, w) != 0)
                        r = -EAGAIN;
                if (r < 0) {
                        hf_codec_free(w->codec);
                        w->codec = NULL;
                        n_workers = i;
                        break;
                }
        }
        if (n_workers == 0) {
                r = r < 0 ? r : -EAGAIN;
                goto out;
        }
        rs.n_workers = n_workers; /* the planner splits files only for several */
        rs.pf.pack = UINT32_MAX;
        {
                /* Snapshot paths are shown absolute. */
                _cleanup_free_ char *sp = NULL;
                if (asprintf(&sp, "%s%s", *prefix ? "/" : "", prefix) < 0)
                        r = -ENOMEM;
                else {
                        PlanDir top = { .idx = rootdir, .snap_path = sp, .fd = rs.targetfd };
                        rs.dirs[rootdir].created = true;
                        r = plan_tree(&rs, &root, &top, false);
                }
        }
        pf_flush(&rs, &rs.pf);
        hf_progress_total_known(rs.progress);
        /* Done planning (or failed): the writers finish what is queued and stop. */
        hf_queue_close(rs.work);
        for (unsigned i = 0; i < n_workers; i++)
                pthread_join(workers[i].thread, NULL);
        reap_files(&rs);
        if (r < 0)
                goto out;
        make_links(&rs);
        hf_progress_free(rs.progress);
        rs.progress = NULL;

        if (opts->delete_extra && opts->n_includes == 0) {
                /* Compare each restored folder with its tree again. */
                for (size_t i = 0; i < rs.n_dirs; i++) {
                        RDir *d = &rs.dirs[i];
                        HfTree t = { 0 };
                        const HfId *id = d->has_node ? &d->node.subtree : &root;
                        if ((d->has_node && !d->node.has_subtree) || !d->created)
                                continue;
                        if (hf_load_tree(repo, rs.codec, id, &t) < 0)
                                continue;
                        ret->deleted += delete_extra(&rs, i, &t);
                        hf_tree_done(&t);
                }
        }
        finish_dirs(&rs);

        ret->files = atomic_load(&rs.files_done);
        ret->files_failed = atomic_load(&rs.files_failed) + rs.failed_other;
        ret->dirs = 0;
        for (size_t i = 1; i < rs.n_dirs; i++)
                ret->dirs += rs.dirs[i].created;
        ret->others = rs.others;
        ret->bytes = atomic_load(&rs.bytes);
        ret->verified = atomic_load(&rs.verified);
        ret->verify_failed = atomic_load(&rs.verify_failed);
        ret->seconds = hf_now_mono() - t0;
        r = ret->files_failed ? HF_INCOMPLETE : 0;
out:
        if (workers) {
                for (unsigned i = 0; i < n_workers; i++) {
                        hf_codec_free(workers[i].codec);
                        hf_buf_free(&workers[i].blob);
                        hf_buf_free(&workers[i].batch);
                        hf_buf_free(&workers[i].check);
                        free(workers[i].reads);
                        if (workers[i].cached_fd >= 0)
                                close(workers[i].cached_fd);
                }
                free(workers);
        }
        hf_progress_free(rs.progress);
        for (size_t i = 0; i < rs.n_dirs; i++) {
                free(rs.dirs[i].relpath);
                hf_node_done(&rs.dirs[i].node);
        }
        free(rs.dirs);
        reap_files(&rs);
        for (size_t i = 0; i < rs.n_files; i++)
                rfile_free(rs.files[i]);
        hf_queue_free(rs.work);
        free(rs.files);
        free(rs.groups);
        free(rs.group_slots);
        hf_codec_free(rs.codec);
        if (rs.targetfd >= 0)
                close(rs.targetfd);
        umask(old_umask);
        return r;
}
