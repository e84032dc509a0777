/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Backup: walk the targets, turn every entry into a tree node, read changed files through the
 * chunker into deduplicated blobs, and write trees bottom-up, then the snapshot.
 *
 * Threads: the calling thread walks (readdir + lstat, parent-snapshot comparison) and queues
 * the files whose content must be read; N workers read, chunk, hash and store those files
 * (compression and encryption run inside hf_saver_save on the worker); the saver's uploaders
 * write packs. A folder is finished by whichever thread completes its last pending child: it
 * then encodes and stores the folder's tree and completes its parent in turn. Nothing waits
 * for a whole level, so tree building never serialises the pipeline.
 */
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include "config.h"

#include "../base/interrupt.h"
#include "../base/log.h"
#include "../base/queue.h"
#include "../chunker/chunker.h"
#include "../repo/lock.h"
#include "../repo/saver.h"
#include "progress.h"
#include "vault.h"

#define READ_BLOCK (1u << 20)
#define READ_AHEAD_MAX (4u << 20) /* per file, when a batch is opened ahead */
#define XATTR_LIST_MAX_BYTES (64u * 1024)
#define XATTR_VALUE_MAX_BYTES (64u * 1024)

typedef struct DirJob DirJob;

struct DirJob {
        DirJob *parent;
        size_t parent_idx; /* our node in parent->tree */
        char *path;        /* absolute path of the folder ("" for the virtual root) */
        int dfd;           /* open folder, -1 for virtual folders */
        HfTree tree;       /* sorted; fixed once listed, workers fill nodes in place */
        bool *skip;        /* nodes dropped after listing (vanished or unreadable files) */
        bool has_old;      /* the parent snapshot had this folder */
        HfId old_subtree;
        atomic_int pending;
};

typedef struct Links Links;

typedef struct FileJob {
        DirJob *dir;
        size_t idx;
        bool is_new;          /* not in the parent snapshot */
        int dfd;              /* folder to open the file in */
        char *dirpath;        /* its path, for messages */
        bool own;             /* dfd and dirpath belong to the job (targets given as files) */
        Links *links;         /* hard-link group this file is read for */
        struct FileJob *next; /* jobs travel to the readers in batches */
        bool opened;          /* fd holds the file opened ahead (or -errno) */
        int fd;
        bool xattrs; /* the reader lists the xattrs, through the file's fd */
} FileJob;

typedef struct Backup {
        HfRepo *repo;
        const HfBackupOptions *opts;
        HfSaver *saver;
        HfQueue *jobs;               /* batches of files to read */
        FileJob *batch, *batch_tail; /* the walker's batch being filled */
        unsigned batch_n;
        uint64_t batch_bytes;
        HfQueue *chunks; /* chunks to store */
        HfQueue *pool;   /* free chunk buffers */
        HfBuf *buffers;
        size_t n_buffers;
        pthread_mutex_t links_lock;
        Links **links; /* open addressing on (dev, ino) */
        size_t links_mask, n_links;
        HfProgress *progress;
        HfChunker *proto_chunker;
        bool have_parent;

        pthread_mutex_t done_lock;
        pthread_cond_t done_cond;
        bool root_done;
        HfId root_id;
        int error; /* fatal error (vault writes failed) */

        atomic_uint_fast64_t files_new, files_changed, files_unmodified;
        atomic_uint_fast64_t dirs_new, dirs_changed, dirs_unmodified;
        atomic_uint_fast64_t files_failed, bytes_processed, files_processed;

        /* Only the walking thread uses these caches. */
        struct NameCache {
                uint32_t id;
                char *name;
        } * users, *groups;
        size_t n_users, n_groups;

        HfCodec *walker_codec;
        HfBuf walker_scratch;
} Backup;

/* A reader or hasher thread and what it keeps between items. */
typedef struct Reader {
        Backup *b;
        HfCodec *codec;
        HfChunker *chunker; /* readers only */
        HfBuf scratch;      /* the encoded blob */
        pthread_t thread;
} Reader;

static void set_fatal(Backup *b, int r)
{
        pthread_mutex_lock(&b->done_lock);
        if (b->error == 0)
                b->error = r;
        pthread_cond_broadcast(&b->done_cond);
        pthread_mutex_unlock(&b->done_lock);
}

static int get_fatal(Backup *b)
{
        int r;
        pthread_mutex_lock(&b->done_lock);
        r = b->error;
        pthread_mutex_unlock(&b->done_lock);
        return r;
}

static char *path_join(const char *dir, const char *name)
{
        size_t a, n;

        if (!dir || !name)
                return NULL;
        a = strlen(dir);
        n = strlen(name);
        char *p = malloc(a + n + 2);

        if (!p)
                return NULL;
        memcpy(p, dir, a);
        if (a == 0 || dir[a - 1] != '/')
                p[a++] = '/';
        memcpy(p + a, name, n + 1);
        return p;
}

static const char *cached_name(struct NameCache **cache, size_t *n, uint32_t id, bool group)
{
        char buf[4096];

        for (size_t i = 0; i < *n; i++)
                if ((*cache)[i].id == id)
                        return (*cache)[i].name;
        struct NameCache *nc = realloc(*cache, (*n + 1) * sizeof(**cache));
        if (!nc)
                return NULL;
        *cache = nc;
        char *name = NULL;
        if (group) {
                struct group g, *res = NULL;
                if (getgrgid_r(id, &g, buf, sizeof(buf), &res) == 0 && res)
                        name = strdup(res->gr_name);
        } else {
                struct passwd pw, *res = NULL;
                if (getpwuid_r(id, &pw, buf, sizeof(buf), &res) == 0 && res)
                        name = strdup(res->pw_name);
        }
        nc[*n] = (struct NameCache){ .id = id, .name = name };
        (*n)++;
        return name;
}

static HfTime ts_time(const struct timespec *ts)
{
        return hf_time_local(ts->tv_sec, (int32_t)ts->tv_nsec);
}

static HfNodeType node_type_of(mode_t m)
{
        switch (m & S_IFMT) {
        case S_IFREG:
                return HF_NODE_FILE;
        case S_IFDIR:
                return HF_NODE_DIR;
        case S_IFLNK:
                return HF_NODE_SYMLINK;
        case S_IFBLK:
                return HF_NODE_DEV;
        case S_IFCHR:
                return HF_NODE_CHARDEV;
        case S_IFIFO:
                return HF_NODE_FIFO;
        case S_IFSOCK:
                return HF_NODE_SOCKET;
        default:
                return HF_NODE_IRREGULAR;
        }
}

/* Fills the stat-derived fields of a node the way restic does. */
static void fill_stat(Backup *b, HfNode *n, const struct stat *st)
{
        n->type = node_type_of(st->st_mode);
        n->mode = hf_mode_to_go(st->st_mode);
        n->mtime = ts_time(&st->st_mtim);
        /* restic records the mtime as atime (reading files changes atime anyway), and
         * identical nodes are what lets trees deduplicate with restic's. */
        n->atime = n->mtime;
        n->ctime = ts_time(&st->st_ctim);
        n->uid = st->st_uid;
        n->gid = st->st_gid;
        n->inode = st->st_ino;
        n->device_id = st->st_dev;
        n->size = n->type == HF_NODE_FILE ? (uint64_t)st->st_size : 0;
        n->links = (n->type == HF_NODE_DIR || n->type == HF_NODE_FIFO || n->type == HF_NODE_SOCKET)
                           ? 0
                           : st->st_nlink;
        n->device = (n->type == HF_NODE_DEV || n->type == HF_NODE_CHARDEV) ? st->st_rdev : 0;
        if (b) {
                const char *u = cached_name(&b->users, &b->n_users, st->st_uid, false);
                const char *g = cached_name(&b->groups, &b->n_groups, st->st_gid, true);
                free(n->user);
                free(n->group);
                n->user = u ? strdup(u) : NULL;
                n->group = g ? strdup(g) : NULL;
        }
}

/* Reads the extended attributes of the open file fd, or (fd < 0) of path (not following
 * symlinks), in the kernel's order. */
static int fill_xattrs(HfNode *n, const char *path, int fd)
{
        char list[XATTR_LIST_MAX_BYTES];
        ssize_t len = fd >= 0 ? flistxattr(fd, list, sizeof(list))
                              : llistxattr(path, list, sizeof(list));

        if (len < 0)
                return errno == ENOTSUP || errno == ENOSYS ? 0 : -errno;
        for (ssize_t off = 0; off < len;) {
                const char *name = list + off;
                size_t nl = strlen(name);
                uint8_t value[XATTR_VALUE_MAX_BYTES];
                ssize_t vl = fd >= 0 ? fgetxattr(fd, name, value, sizeof(value))
                                     : lgetxattr(path, name, value, sizeof(value));

                off += (ssize_t)nl + 1;
                if (vl < 0)
                        continue; /* removed meanwhile or too large: restic skips it too */
                int r = hf_node_add_xattr(n, name, value, (size_t)vl);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Lists the xattrs of fd (or, fd < 0, of path) into n; a problem other than a vanished file
 * is reported, under path. */
static void list_xattrs(Backup *b, HfNode *n, const char *path, int fd)
{
        int r = fill_xattrs(n, path, fd);

        if (r < 0 && r != -ENOENT)
                hf_report_error(&b->opts->out, "archival", path, r,
                                "cannot read extended attributes: %m");
}

/* ---- finishing folders ------------------------------------------------------------------ */

static void dir_free(DirJob *d)
{
        if (!d)
                return;
        if (d->dfd >= 0)
                close(d->dfd);
        hf_tree_done(&d->tree);
        free(d->skip);
        free(d->path);
        free(d);
}

static void dir_complete(Backup *b, DirJob *d, HfCodec *codec, HfBuf *scratch);

static void dir_dec(Backup *b, DirJob *d, HfCodec *codec, HfBuf *scratch)
{
        if (atomic_fetch_sub(&d->pending, 1) == 1)
                dir_complete(b, d, codec, scratch);
}

/* All children are done: encode and store the tree, then complete the parent. */
static void dir_complete(Backup *b, DirJob *d, HfCodec *codec, HfBuf *scratch)
{
        _cleanup_buf_ HfBuf json = HF_BUF_INIT(HF_BLOB_MAX_PLAIN);
        size_t w = 0;
        HfId id;
        int r;

        /* Drop the nodes whose files vanished or could not be read. */
        for (size_t i = 0; i < d->tree.n; i++) {
                if (d->skip[i]) {
                        hf_node_done(&d->tree.nodes[i]);
                        continue;
                }
                if (w != i)
                        d->tree.nodes[w] = d->tree.nodes[i];
                w++;
        }
        d->tree.n = w;
        r = hf_tree_format(&d->tree, &json);
        if (r >= 0) {
                hf_sha256(json.data, json.len, &id);
                r = hf_saver_save(b->saver, codec, HF_BLOB_TREE, &id, json.data, json.len, scratch,
                                  NULL);
        }
        if (r < 0) {
                set_fatal(b, r);
                id = (HfId){ { 0 } };
        }
        if (d->parent) {
                if (!d->has_old)
                        atomic_fetch_add(&b->dirs_new, 1);
                else if (hf_id_eq(&d->old_subtree, &id))
                        atomic_fetch_add(&b->dirs_unmodified, 1);
                else
                        atomic_fetch_add(&b->dirs_changed, 1);
        }
        if (d->parent) {
                HfNode *pn = &d->parent->tree.nodes[d->parent_idx];
                pn->subtree = id;
                pn->has_subtree = true;
                DirJob *p = d->parent;
                dir_free(d);
                dir_dec(b, p, codec, scratch);
        } else {
                dir_free(d);
                pthread_mutex_lock(&b->done_lock);
                b->root_id = id;
                b->root_done = true;
                pthread_cond_broadcast(&b->done_cond);
                pthread_mutex_unlock(&b->done_lock);
        }
}

/* ---- reading files ---------------------------------------------------------------------- */

/*
 * Files go through two stages so that both cores work on one large file too: readers open,
 * read and cut chunks; hashers hash, deduplicate, compress, encrypt and pack them. A chunk
 * travels with its buffer, taken from a fixed pool, so memory is bounded by the pool. A file
 * is finished by whichever thread stores its last chunk.
 */

typedef struct FileCtx {
        FileJob *job;
        char *path;
        struct stat st; /* of the file as read */
        pthread_mutex_t lock;
        HfId *content;
        size_t cap;
        size_t n_cut;   /* chunks handed to hashers */
        size_t n_done;  /* chunks stored */
        bool read_done; /* the reader will cut no more */
        uint64_t size;  /* bytes read: the node's size, as restic records it */
        int error;      /* 0, or why the file is not in the snapshot */
        Links *links;   /* hard-link group this file reads for, or NULL */
} FileCtx;

typedef struct ChunkJob {
        FileCtx *f;
        size_t idx;
        HfBuf *buf;
} ChunkJob;

/* Names of one inode (st_nlink > 1): read once, the other names get the same content. */
struct Links {
        dev_t dev;
        ino_t ino;
        bool done, failed;
        HfId *content;
        size_t n_content;
        uint64_t size; /* of the content */
        struct LinkWaiter {
                DirJob *dir;
                size_t idx;
                bool is_new;
        } * waiters;
        size_t n_waiters;
};

static void file_finish(Backup *b, FileCtx *f, HfCodec *codec, HfBuf *scratch);

static int pool_get(Backup *b, HfBuf **ret)
{
        HfBuf *buf = hf_queue_pop(b->pool);

        if (!buf)
                return -ECANCELED;
        hf_buf_reset(buf);
        *ret = buf;
        return 0;
}

/* Buffers keep at most this much between chunks. A chunk is 512 KiB plus about 1 MiB on
 * average; one in twelve passes 3 MiB, one in a hundred 5 MiB. Giving back what a larger one
 * took costs a page fault per 4 KiB when the next one comes. */
#define KEEP_BYTES (5u * 1024 * 1024)

static void pool_put(Backup *b, HfBuf *buf)
{
        if (!buf)
                return;
        hf_buf_trim(buf, KEEP_BYTES + READ_BLOCK);
        if (hf_queue_push(b->pool, buf) < 0)
                hf_buf_free(buf); /* closed: shutting down */
}

/* Hands a cut chunk to the hashers. */
static int submit_chunk(Backup *b, FileCtx *f, HfBuf *buf)
{
        ChunkJob *cj = malloc(sizeof(*cj));

        if (!cj)
                return -ENOMEM;
        pthread_mutex_lock(&f->lock);
        if (f->n_cut == f->cap) {
                size_t ncap = f->cap ? f->cap * 2 : 4;
                HfId *nv = realloc(f->content, ncap * sizeof(HfId));
                if (!nv) {
                        pthread_mutex_unlock(&f->lock);
                        free(cj);
                        return -ENOMEM;
                }
                f->content = nv;
                f->cap = ncap;
        }
        *cj = (ChunkJob){ .f = f, .idx = f->n_cut++, .buf = buf };
        pthread_mutex_unlock(&f->lock);
        if (hf_queue_push(b->chunks, cj) < 0) {
                pthread_mutex_lock(&f->lock);
                f->n_cut--;
                pthread_mutex_unlock(&f->lock);
                free(cj);
                return -ECANCELED;
        }
        return 0;
}

static int open_file(int dfd, const char *name)
{
        int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC | O_NOATIME);

        if (fd < 0 && errno == EPERM)
                fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

/*
 * Opens every file of a fresh batch and asks the kernel to read them ahead, so that on a cold
 * page cache the disk works on the batch's later files while this reader cuts the first ones
 * (two readers alone keep only two reads in flight). A file's fd is used when its turn comes.
 * When the batch's last file ends in the page cache, the batch is taken as cached (files read
 * together leave the cache together) and nothing is asked: one probe instead of a call per
 * file on a warm cache.
 */
static void open_ahead(FileJob *batch)
{
        FileJob *last = NULL;

        for (FileJob *j = batch; j; j = j->next) {
                const HfNode *n = &j->dir->tree.nodes[j->idx];
                j->fd = open_file(j->dfd, n->name);
                j->opened = true;
                if (j->fd >= 0 && n->size > 0)
                        last = j;
        }
        if (!last || hf_page_cached(last->fd, last->dir->tree.nodes[last->idx].size - 1))
                return;
        for (FileJob *j = batch; j; j = j->next) {
                const HfNode *n = &j->dir->tree.nodes[j->idx];
                if (j->fd >= 0 && n->size > 0)
                        (void)posix_fadvise(j->fd, 0, (off_t)MIN(n->size, (uint64_t)READ_AHEAD_MAX),
                                            POSIX_FADV_WILLNEED);
        }
}

/*
 * Reads one file and cuts it into chunks for the hashers. Problems with the file itself are
 * reported and recorded in f->error (-ENOENT: vanished; others: unreadable, run incomplete);
 * vault problems set the fatal error.
 */
static void read_file(Reader *w, FileCtx *f)
{
        Backup *b = w->b;
        FileJob *job = f->job;
        HfNode *n = &job->dir->tree.nodes[job->idx];
        _cleanup_close_ int fd = -1;
        HfBuf *buf = NULL;
        struct stat st2;
        uint64_t total = 0;
        int r;

        if (job->opened) {
                fd = job->fd; /* now ours to close */
                job->opened = false;
        } else
                fd = open_file(job->dfd, n->name);
        if (fd < 0) {
                r = fd;
                goto unreadable;
        }
        if (fstat(fd, &f->st) < 0) {
                r = -errno;
                goto unreadable;
        }
        if (!S_ISREG(f->st.st_mode)) {
                /* Replaced by something else between listing and opening. */
                hf_report_error(&b->opts->out, "archival", f->path, 0,
                                "changed type while being backed up (skipped)");
                f->error = -ENOENT;
                return;
        }
        if (job->xattrs)
                list_xattrs(b, n, f->path, fd);
        /* Only a file that takes more than one read has a read pattern to tell. */
        if (f->st.st_size > (off_t)READ_BLOCK)
                (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        hf_chunker_reset(w->chunker);
        r = pool_get(b, &buf);
        if (r < 0)
                goto fatal;
        for (;;) {
                size_t scanned, room;
                ssize_t k;

                r = hf_buf_reserve(buf, READ_BLOCK);
                if (r < 0)
                        goto fatal;
                room = MIN((size_t)READ_BLOCK, buf->cap - buf->len - 1);
                /* Up to the size fstat gave, as GNU tar does: a file appended to faster than
                 * it is read would otherwise never end. A size of 0 (/proc, sysfs) is read to
                 * the end. */
                if (f->st.st_size > 0) {
                        if (total >= (uint64_t)f->st.st_size)
                                break;
                        room = (size_t)MIN((uint64_t)room, (uint64_t)f->st.st_size - total);
                }
                k = read(fd, buf->data + buf->len, room);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        goto unreadable;
                }
                if (k == 0)
                        break;
                if (hf_is_interrupted()) {
                        r = -EINTR;
                        goto fatal;
                }
                scanned = buf->len;
                buf->len += (size_t)k;
                total += (uint64_t)k;
                hf_progress_add_bytes(b->progress, (uint64_t)k);
                atomic_fetch_add(&b->bytes_processed, (uint64_t)k);
                /* Cut as many chunks as the new bytes complete. */
                while (scanned < buf->len) {
                        HfBuf *next = NULL;
                        bool cut;
                        size_t used = hf_chunker_scan(w->chunker, buf->data + scanned,
                                                      buf->len - scanned, &cut, NULL);
                        scanned += used;
                        if (!cut)
                                break;
                        r = pool_get(b, &next);
                        if (r >= 0)
                                r = hf_buf_append(next, buf->data + scanned, buf->len - scanned);
                        if (r < 0) {
                                pool_put(b, next);
                                goto fatal;
                        }
                        buf->len = scanned;
                        r = submit_chunk(b, f, buf);
                        buf = next;
                        if (r < 0)
                                goto fatal;
                        scanned = 0;
                }
        }
        /* What was read is what the snapshot holds, whatever fstat said before (a file that
         * shrank, or a /proc file whose size reads 0); a file that changed meanwhile is caught
         * by the fstat below. */
        f->size = total;
        if (buf->len > 0 && f->n_cut == 0) {
                /* A file of one chunk (most files) is stored right here: handing it to a
                 * hasher would cost two thread switches for nothing. */
                HfId id;
                hf_sha256(buf->data, buf->len, &id);
                r = hf_saver_save(b->saver, w->codec, HF_BLOB_DATA, &id, buf->data, buf->len,
                                  &w->scratch, NULL);
                hf_buf_trim(&w->scratch, KEEP_BYTES);
                if (r < 0)
                        goto fatal;
                f->content = malloc(sizeof(HfId));
                if (!f->content) {
                        r = -ENOMEM;
                        goto fatal;
                }
                f->content[0] = id;
                f->cap = 1;
                pthread_mutex_lock(&f->lock);
                f->n_cut = f->n_done = 1;
                pthread_mutex_unlock(&f->lock);
        } else if (buf->len > 0) {
                r = submit_chunk(b, f, TAKE_PTR(buf));
                if (r < 0)
                        goto fatal;
        }
        pool_put(b, buf);
        if (fstat(fd, &st2) == 0 &&
            (st2.st_size != f->st.st_size || st2.st_mtim.tv_sec != f->st.st_mtim.tv_sec ||
             st2.st_mtim.tv_nsec != f->st.st_mtim.tv_nsec))
                hf_report_error(&b->opts->out, "archival", f->path, 0,
                                "changed while being read; the snapshot holds what was read");
        return;

unreadable:
        pool_put(b, buf);
        if (r == -ENOENT)
                hf_report_error(&b->opts->out, "archival", f->path, 0,
                                "vanished before it could be read (skipped)");
        else
                hf_report_error(&b->opts->out, "archival", f->path, r, "cannot read: %m");
        f->error = r;
        return;
fatal:
        pool_put(b, buf);
        f->error = -ECANCELED;
        set_fatal(b, r);
}

/* Completes a file once no chunk of it is in flight; the caller has checked that. */
static void file_finish(Backup *b, FileCtx *f, HfCodec *codec, HfBuf *scratch)
{
        FileJob *job = f->job;
        DirJob *d = job->dir;
        HfNode *n = &d->tree.nodes[job->idx];
        Links *l = f->links;

        if (f->error) {
                d->skip[job->idx] = true;
                if (f->error != -ENOENT && f->error != -ECANCELED)
                        atomic_fetch_add(&b->files_failed, 1);
        } else {
                /* The node describes the file we read, not the one we listed. */
                fill_stat(NULL, n, &f->st);
                n->size = f->size;
                free(n->content);
                n->content = TAKE_PTR(f->content);
                n->n_content = f->n_cut;
                atomic_fetch_add(job->is_new ? &b->files_new : &b->files_changed, 1);
        }
        atomic_fetch_add(&b->files_processed, 1);
        hf_progress_add_files(b->progress, 1);

        if (l) {
                /* The other names of this inode waited for its content. */
                pthread_mutex_lock(&b->links_lock);
                l->done = true;
                l->failed = f->error != 0;
                l->size = n->size;
                if (!l->failed && n->n_content) {
                        l->content = malloc(n->n_content * sizeof(HfId));
                        if (l->content) {
                                memcpy(l->content, n->content, n->n_content * sizeof(HfId));
                                l->n_content = n->n_content;
                        } else
                                l->failed = true;
                }
                struct LinkWaiter *ws = TAKE_PTR(l->waiters);
                size_t nw = l->n_waiters;
                l->n_waiters = 0;
                pthread_mutex_unlock(&b->links_lock);
                for (size_t i = 0; i < nw; i++) {
                        HfNode *wn = &ws[i].dir->tree.nodes[ws[i].idx];
                        if (l->failed) {
                                ws[i].dir->skip[ws[i].idx] = true;
                        } else {
                                wn->content = l->n_content ? malloc(l->n_content * sizeof(HfId))
                                                           : NULL;
                                if (l->n_content && wn->content)
                                        memcpy(wn->content, l->content,
                                               l->n_content * sizeof(HfId));
                                wn->n_content = wn->content ? l->n_content : 0;
                                wn->size = l->size;
                                atomic_fetch_add(ws[i].is_new ? &b->files_new : &b->files_changed,
                                                 1);
                        }
                        atomic_fetch_add(&b->files_processed, 1);
                        dir_dec(b, ws[i].dir, codec, scratch);
                }
                free(ws);
        }

        if (job->own) {
                close(job->dfd);
                free(job->dirpath);
        }
        free(job);
        free(f->content);
        free(f->path);
        pthread_mutex_destroy(&f->lock);
        free(f);
        dir_dec(b, d, codec, scratch);
}

static void *reader_main(void *arg)
{
        Reader *w = arg;
        Backup *b = w->b;

        FileJob *next = NULL;

        for (;;) {
                FileJob *job = next;
                FileCtx *f;
                bool complete;

                if (!job) {
                        job = hf_queue_pop(b->jobs);
                        if (!job)
                                break;
                        open_ahead(job);
                }
                next = job->next;
                f = calloc(1, sizeof(*f));
                if (!f) {
                        set_fatal(b, -ENOMEM);
                        job->dir->skip[job->idx] = true;
                        dir_dec(b, job->dir, w->codec, &w->scratch);
                        free(job);
                        continue;
                }
                f->job = job;
                f->links = job->links;
                pthread_mutex_init(&f->lock, NULL);
                f->path = path_join(job->dirpath, job->dir->tree.nodes[job->idx].name);
                if (hf_is_interrupted())
                        set_fatal(b, -EINTR);
                if (!f->path)
                        set_fatal(b, -ENOMEM);
                if (get_fatal(b))
                        f->error = -ECANCELED;
                else
                        read_file(w, f);
                if (job->opened && job->fd >= 0)
                        close(job->fd);
                job->opened = false;
                pthread_mutex_lock(&f->lock);
                f->read_done = true;
                complete = f->n_done == f->n_cut;
                pthread_mutex_unlock(&f->lock);
                if (complete)
                        file_finish(b, f, w->codec, &w->scratch);
        }
        return NULL;
}

/* Stores a hashed chunk (unless r < 0) and hands it back to its file. */
static void save_chunk(Reader *w, ChunkJob *cj, const HfId *id, int r)
{
        Backup *b = w->b;
        FileCtx *f = cj->f;
        bool complete;

        if (r >= 0) {
                r = hf_saver_save(b->saver, w->codec, HF_BLOB_DATA, id, cj->buf->data, cj->buf->len,
                                  &w->scratch, NULL);
                hf_buf_trim(&w->scratch, KEEP_BYTES);
                if (r < 0)
                        set_fatal(b, r);
        }
        pool_put(b, cj->buf);
        pthread_mutex_lock(&f->lock);
        if (r < 0)
                f->error = -ECANCELED;
        else
                f->content[cj->idx] = *id;
        f->n_done++;
        complete = f->read_done && f->n_done == f->n_cut;
        pthread_mutex_unlock(&f->lock);
        free(cj);
        if (complete)
                file_finish(b, f, w->codec, &w->scratch);
}

/* Takes chunks two at a time when two are waiting: their SHA-256 chains run together. */
static void *hasher_main(void *arg)
{
        Reader *w = arg;
        Backup *b = w->b;

        for (;;) {
                ChunkJob *cj[2];
                HfSha256Job jobs[2];
                HfId ids[2];
                size_t n = 0;
                int r;

                cj[n] = hf_queue_pop(b->chunks);
                if (!cj[n])
                        break;
                n++;
                cj[n] = hf_queue_trypop(b->chunks);
                if (cj[n])
                        n++;
                r = get_fatal(b) ? -ECANCELED : 0;
                for (size_t i = 0; i < n; i++)
                        jobs[i] = (HfSha256Job){ .data = cj[i]->buf->data,
                                                 .len = cj[i]->buf->len,
                                                 .out = &ids[i] };
                if (r >= 0)
                        hf_sha256_many(jobs, n);
                for (size_t i = 0; i < n; i++)
                        save_chunk(w, cj[i], &ids[i], r);
        }
        return NULL;
}

/* ---- walking ---------------------------------------------------------------------------- */

typedef struct NameEntry {
        char *name;
        size_t len;
} NameEntry;

static int name_entry_cmp(const void *x, const void *y)
{
        const NameEntry *a = x, *c = y;
        int k = memcmp(a->name, c->name, MIN(a->len, c->len));

        if (k)
                return k;
        return a->len < c->len ? -1 : a->len > c->len ? 1 : 0;
}

static int walk_dir(Backup *b, DirJob *d, const struct stat *dst, const HfTree *old);

/* Loads the parent snapshot's tree for a folder node, if any. */
static int load_old_tree(Backup *b, const HfNode *old, HfTree *ret)
{
        if (!old || old->type != HF_NODE_DIR || !old->has_subtree)
                return -ENOENT;
        return hf_load_tree(b->repo, b->walker_codec, &old->subtree, ret);
}

static bool unchanged(Backup *b, const HfNode *old, const struct stat *st)
{
        if (!old || old->type != HF_NODE_FILE || b->opts->force)
                return false;
        if (old->size != (uint64_t)st->st_size || old->inode != (uint64_t)st->st_ino)
                return false;
        if (old->mtime.sec != st->st_mtim.tv_sec || old->mtime.nsec != st->st_mtim.tv_nsec)
                return false;
        if (old->ctime.sec != st->st_ctim.tv_sec || old->ctime.nsec != st->st_ctim.tv_nsec)
                return false;
        /* Reuse only what the vault still holds. */
        for (size_t i = 0; i < old->n_content; i++)
                if (!hf_saver_known(b->saver, HF_BLOB_DATA, &old->content[i]))
                        return false;
        return true;
}

static DirJob *dir_new(DirJob *parent, size_t idx, char *path, int dfd)
{
        DirJob *d = calloc(1, sizeof(*d));

        if (!d) {
                free(path);
                if (dfd >= 0)
                        close(dfd);
                return NULL;
        }
        d->parent = parent;
        d->parent_idx = idx;
        d->path = path;
        d->dfd = dfd;
        atomic_init(&d->pending, 1); /* the listing itself */
        return d;
}

/* A batch closes at 32 files or 1 MiB of file data, so small files cost one wake-up per
 * batch and large files still spread over all readers. */
#define BATCH_JOBS 32
#define BATCH_BYTES (1u << 20)

/* Hands the walker's batch to the readers: one wake-up per batch instead of one per file. */
static int flush_jobs(Backup *b)
{
        FileJob *head = b->batch;
        int r;

        if (!head)
                return 0;
        b->batch = b->batch_tail = NULL;
        b->batch_n = 0;
        b->batch_bytes = 0;
        r = hf_queue_push(b->jobs, head);
        if (r < 0) {
                /* Closed: shutting down after a failure. The jobs are dropped with it. */
                while (head) {
                        FileJob *n = head->next;
                        atomic_fetch_sub(&head->dir->pending, 1);
                        if (head->own) {
                                close(head->dfd);
                                free(head->dirpath);
                        }
                        free(head);
                        head = n;
                }
        }
        return r;
}

static int queue_job(Backup *b, FileJob *job, uint64_t size)
{
        job->next = NULL;
        if (b->batch_tail)
                b->batch_tail->next = job;
        else
                b->batch = job;
        b->batch_tail = job;
        b->batch_bytes += size;
        return ++b->batch_n >= BATCH_JOBS || b->batch_bytes >= BATCH_BYTES ? flush_jobs(b) : 0;
}

/* Finds or creates the hard-link group of an inode. Walker thread, links_lock held. */
static int links_get(Backup *b, dev_t dev, ino_t ino, Links **ret, bool *ret_created)
{
        size_t h;

        if ((b->n_links + 1) * 2 > b->links_mask + 1) {
                size_t nmask = b->links_mask ? b->links_mask * 2 + 1 : 255;
                Links **nv = calloc(nmask + 1, sizeof(Links *));
                if (!nv)
                        return -ENOMEM;
                for (size_t i = 0; b->links && i <= b->links_mask; i++) {
                        Links *l = b->links[i];
                        if (!l)
                                continue;
                        for (h = ((uint64_t)l->ino * 0x9e3779b97f4a7c15ULL ^ l->dev) & nmask; nv[h];
                             h = (h + 1) & nmask)
                                ;
                        nv[h] = l;
                }
                free(b->links);
                b->links = nv;
                b->links_mask = nmask;
        }
        for (h = ((uint64_t)ino * 0x9e3779b97f4a7c15ULL ^ dev) & b->links_mask; b->links[h];
             h = (h + 1) & b->links_mask)
                if (b->links[h]->ino == ino && b->links[h]->dev == dev) {
                        *ret = b->links[h];
                        *ret_created = false;
                        return 0;
                }
        Links *l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        l->dev = dev;
        l->ino = ino;
        b->links[h] = l;
        b->n_links++;
        *ret = l;
        *ret_created = true;
        return 0;
}

/*
 * Handles one listed entry of a folder: fills the node, queues file reads, recurses into
 * sub-folders. d->pending already counts the listing, so d cannot complete meanwhile.
 */
static int handle_entry(Backup *b, DirJob *d, size_t i, const struct stat *st, const HfNode *old,
                        dev_t root_dev, int dfd, const char *dirpath, bool own)
{
        HfNode *n = &d->tree.nodes[i];
        _cleanup_free_ char *path = path_join(dirpath, n->name);
        int r;

        if (!path)
                return -ENOMEM;
        fill_stat(b, n, st);
        /* A file to read has its xattrs listed by its reader, through the open file: a path
         * here is resolved from the root at every call. */
        bool xattrs_later = false;
        if (old && !b->opts->force && old->type == n->type && old->inode == n->inode &&
            old->ctime.sec == st->st_ctim.tv_sec && old->ctime.nsec == st->st_ctim.tv_nsec) {
                /* Changing an xattr changes ctime: an unchanged ctime means the same xattrs
                 * as in the parent snapshot, so skip listing them again. */
                r = 0;
                for (size_t k = 0; k < old->n_xattrs && r >= 0; k++)
                        r = hf_node_add_xattr(n, old->xattrs[k].name, old->xattrs[k].value,
                                              old->xattrs[k].len);
                if (r < 0)
                        return r;
        } else if (n->type == HF_NODE_FILE)
                xattrs_later = true; /* a changed ctime: unchanged() is false, it is read */
        else
                list_xattrs(b, n, path, -1);
        switch (n->type) {
        case HF_NODE_FILE: {
                if (old && unchanged(b, old, st)) {
                        n->content = old->n_content ? malloc(old->n_content * sizeof(HfId)) : NULL;
                        if (old->n_content && !n->content)
                                return -ENOMEM;
                        if (old->n_content)
                                memcpy(n->content, old->content, old->n_content * sizeof(HfId));
                        n->n_content = old->n_content;
                        atomic_fetch_add(&b->files_unmodified, 1);
                        atomic_fetch_add(&b->files_processed, 1);
                        atomic_fetch_add(&b->bytes_processed, (uint64_t)st->st_size);
                        hf_progress_add_files(b->progress, 1);
                        hf_progress_add_bytes(b->progress, (uint64_t)st->st_size);
                        return 0;
                }
                Links *group = NULL;
                if (st->st_nlink > 1) {
                        /* Another name of an inode already read (or being read): share its
                         * content instead of reading the same bytes again. */
                        bool created;
                        pthread_mutex_lock(&b->links_lock);
                        r = links_get(b, st->st_dev, st->st_ino, &group, &created);
                        if (r >= 0 && !created) {
                                if (group->done && !group->failed) {
                                        n->content = group->n_content ? malloc(group->n_content *
                                                                               sizeof(HfId))
                                                                      : NULL;
                                        if (group->n_content && n->content)
                                                memcpy(n->content, group->content,
                                                       group->n_content * sizeof(HfId));
                                        n->n_content = n->content ? group->n_content : 0;
                                        n->size = group->size;
                                        pthread_mutex_unlock(&b->links_lock);
                                        if (xattrs_later)
                                                list_xattrs(b, n, path, -1);
                                        atomic_fetch_add(old && old->type == HF_NODE_FILE
                                                                 ? &b->files_changed
                                                                 : &b->files_new,
                                                         1);
                                        atomic_fetch_add(&b->files_processed, 1);
                                        return 0;
                                }
                                if (!group->done) {
                                        struct LinkWaiter *nw = realloc(group->waiters,
                                                                        (group->n_waiters + 1) *
                                                                                sizeof(*nw));
                                        if (!nw) {
                                                pthread_mutex_unlock(&b->links_lock);
                                                return -ENOMEM;
                                        }
                                        group->waiters = nw;
                                        nw[group->n_waiters++] = (struct LinkWaiter){
                                                .dir = d,
                                                .idx = i,
                                                .is_new = !old || old->type != HF_NODE_FILE,
                                        };
                                        atomic_fetch_add(&d->pending, 1);
                                        pthread_mutex_unlock(&b->links_lock);
                                        if (xattrs_later)
                                                list_xattrs(b, n, path, -1);
                                        return 0;
                                }
                                group = NULL; /* the first name failed: read this one */
                        }
                        pthread_mutex_unlock(&b->links_lock);
                        if (r < 0)
                                return r;
                }
                FileJob *job = calloc(1, sizeof(*job));
                if (!job)
                        return -ENOMEM;
                job->dir = d;
                job->idx = i;
                job->links = group;
                job->is_new = !old || old->type != HF_NODE_FILE;
                job->xattrs = xattrs_later;
                job->dfd = dfd;
                job->dirpath = (char *)dirpath;
                if (own) {
                        job->own = true;
                        job->dfd = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
                        job->dirpath = strdup(dirpath);
                        if (job->dfd < 0 || !job->dirpath) {
                                if (job->dfd >= 0)
                                        close(job->dfd);
                                free(job->dirpath);
                                free(job);
                                return -ENOMEM;
                        }
                }
                atomic_fetch_add(&d->pending, 1);
                hf_progress_set_item(b->progress, path);
                return queue_job(b, job, (uint64_t)st->st_size);
        }
        case HF_NODE_SYMLINK: {
                char target[PATH_MAX + 1];
                ssize_t k = readlinkat(dfd, n->name, target, sizeof(target) - 1);
                if (k < 0) {
                        hf_report_error(&b->opts->out, "archival", path, -errno,
                                        "cannot read symlink: %m");
                        d->skip[i] = true;
                        atomic_fetch_add(&b->files_failed, 1);
                        return 0;
                }
                n->linktarget = malloc((size_t)k + 1);
                if (!n->linktarget)
                        return -ENOMEM;
                memcpy(n->linktarget, target, (size_t)k);
                n->linktarget[k] = 0;
                n->linktarget_len = (size_t)k;
                return 0;
        }
        case HF_NODE_DIR: {
                HfTree old_tree = { 0 };
                DirJob *c;
                int cfd = -1;
                bool descend = !(b->opts->one_file_system && st->st_dev != root_dev);

                n->content = NULL;
                if (descend) {
                        cfd = openat(dfd, n->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (cfd < 0) {
                                hf_report_error(&b->opts->out, "archival", path, -errno,
                                                "cannot open folder (stored empty): %m");
                                atomic_fetch_add(&b->files_failed, 1);
                        }
                }
                c = dir_new(d, i, TAKE_PTR(path), cfd);
                if (!c)
                        return -ENOMEM;
                if (old && old->type == HF_NODE_DIR && old->has_subtree) {
                        c->has_old = true;
                        c->old_subtree = old->subtree;
                        if (cfd >= 0 && load_old_tree(b, old, &old_tree) < 0)
                                old_tree = (HfTree){ 0 };
                }
                atomic_fetch_add(&d->pending, 1);
                r = walk_dir(b, c, st, &old_tree);
                hf_tree_done(&old_tree);
                return r;
        }
        default:
                return 0;
        }
}

/* Lists a real folder into d->tree and processes its entries; completes d's listing. */
static int walk_dir(Backup *b, DirJob *d, const struct stat *dst, const HfTree *old)
{
        NameEntry *names = NULL;
        size_t n = 0, cap = 0;
        DIR *dir = NULL;
        int r = 0;

        if (d->dfd >= 0) {
                int fd2 = dup(d->dfd);
                if (fd2 < 0)
                        return -errno;
                dir = fdopendir(fd2);
                if (!dir) {
                        close(fd2);
                        return -errno;
                }
                for (;;) {
                        struct dirent *de;
                        errno = 0;
                        de = readdir(dir);
                        if (!de) {
                                if (errno) {
                                        hf_report_error(&b->opts->out, "archival", d->path, -errno,
                                                        "cannot list folder: %m");
                                        atomic_fetch_add(&b->files_failed, 1);
                                }
                                break;
                        }
                        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                                continue;
                        if (n == cap) {
                                size_t ncap = cap ? cap * 2 : 64;
                                NameEntry *nn = realloc(names, ncap * sizeof(*nn));
                                if (!nn) {
                                        r = -ENOMEM;
                                        goto out;
                                }
                                names = nn;
                                cap = ncap;
                        }
                        names[n].len = strlen(de->d_name);
                        names[n].name = strdup(de->d_name);
                        if (!names[n].name) {
                                r = -ENOMEM;
                                goto out;
                        }
                        n++;
                }
                if (n > 1)
                        qsort(names, n, sizeof(*names), name_entry_cmp);
        }

        d->tree.nodes = calloc(MAX(n, (size_t)1), sizeof(HfNode));
        d->skip = calloc(MAX(n, (size_t)1), sizeof(bool));
        if (!d->tree.nodes || !d->skip) {
                r = -ENOMEM;
                goto out;
        }
        d->tree.cap = MAX(n, (size_t)1);
        /* First pass: stat and exclude, so the node array is final before workers see it. */
        struct stat *sts = calloc(MAX(n, (size_t)1), sizeof(struct stat));
        if (!sts) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *path = path_join(d->path, names[i].name);
                if (!path) {
                        free(sts);
                        r = -ENOMEM;
                        goto out;
                }
                if (hf_exclude_match(b->opts->excludes, b->opts->n_excludes, path, names[i].name))
                        continue;
                if (fstatat(d->dfd, names[i].name, &sts[d->tree.n], AT_SYMLINK_NOFOLLOW) < 0) {
                        if (errno == ENOENT)
                                hf_report_error(&b->opts->out, "archival", path, 0,
                                                "vanished before it could be read (skipped)");
                        else {
                                hf_report_error(&b->opts->out, "archival", path, -errno,
                                                "cannot stat: %m");
                                atomic_fetch_add(&b->files_failed, 1);
                        }
                        continue;
                }
                HfNode *node = &d->tree.nodes[d->tree.n++];
                node->name = TAKE_PTR(names[i].name);
                node->name_len = names[i].len;
        }
        for (size_t i = 0; i < d->tree.n && r >= 0; i++) {
                if (hf_is_interrupted()) {
                        r = -EINTR;
                        break;
                }
                const HfNode *o = old ? hf_tree_find(old, d->tree.nodes[i].name,
                                                     d->tree.nodes[i].name_len)
                                      : NULL;
                r = handle_entry(b, d, i, &sts[i], o, dst->st_dev, d->dfd, d->path, false);
        }
        free(sts);
out:
        for (size_t i = 0; i < n; i++)
                free(names[i].name);
        free(names);
        if (dir)
                closedir(dir);
        if (r < 0)
                set_fatal(b, r);
        /* The listing is done; the last pending child (or this) finishes the folder. */
        dir_dec(b, d, b->walker_codec, &b->walker_scratch);
        return r;
}

/* ---- targets ---------------------------------------------------------------------------- */

/* A component of the virtual tree the targets span (restic mirrors their full paths). */
typedef struct TNode {
        char *name;
        char *abspath;
        bool target;
        struct TNode **kids;
        size_t n_kids;
} TNode;

static void tnode_free(TNode *t)
{
        if (!t)
                return;
        for (size_t i = 0; i < t->n_kids; i++)
                tnode_free(t->kids[i]);
        free(t->kids);
        free(t->name);
        free(t->abspath);
        free(t);
}

static TNode *tnode_child(TNode *t, const char *name, size_t len, const char *abspath)
{
        for (size_t i = 0; i < t->n_kids; i++)
                if (strlen(t->kids[i]->name) == len && memcmp(t->kids[i]->name, name, len) == 0)
                        return t->kids[i];
        TNode **nk = realloc(t->kids, (t->n_kids + 1) * sizeof(TNode *));
        if (!nk)
                return NULL;
        t->kids = nk;
        TNode *c = calloc(1, sizeof(*c));
        if (!c)
                return NULL;
        c->name = strndup(name, len);
        c->abspath = strdup(abspath);
        if (!c->name || !c->abspath) {
                tnode_free(c);
                return NULL;
        }
        t->kids[t->n_kids++] = c;
        return c;
}

/*
 * Makes path absolute and clean ("//a/./b/../c/" -> "/a/c"). The result is the caller's.
 */
static char *clean_abs(const char *path)
{
        _cleanup_free_ char *joined = NULL;
        char cwd[PATH_MAX];
        char *out, *o;
        const char *s;

        if (path[0] != '/') {
                if (!getcwd(cwd, sizeof(cwd)))
                        return NULL;
                joined = path_join(cwd, path);
                if (!joined)
                        return NULL;
                path = joined;
        }
        out = malloc(strlen(path) + 2);
        if (!out)
                return NULL;
        o = out;
        for (s = path; *s;) {
                const char *e;
                size_t len;
                while (*s == '/')
                        s++;
                if (!*s)
                        break;
                e = strchr(s, '/');
                len = e ? (size_t)(e - s) : strlen(s);
                if (len == 1 && s[0] == '.') {
                } else if (len == 2 && s[0] == '.' && s[1] == '.') {
                        while (o > out && *--o != '/')
                                ;
                } else {
                        *o++ = '/';
                        memcpy(o, s, len);
                        o += len;
                }
                s += len;
        }
        if (o == out)
                *o++ = '/';
        *o = 0;
        return out;
}

/*
 * The tree path of a target: restic keeps relative targets relative to the working folder
 * and absolute ones from the root. Returns the components' text (no leading '/').
 */
static char *tree_path_of(const char *arg, const char *abs)
{
        char cwd[PATH_MAX];
        size_t n;

        if (arg[0] == '/')
                return strdup(abs + 1);
        if (!getcwd(cwd, sizeof(cwd)))
                return strdup(abs + 1);
        n = strlen(cwd);
        if (strcmp(cwd, "/") == 0)
                return strdup(abs + 1);
        if (strncmp(abs, cwd, n) == 0 && (abs[n] == '/' || abs[n] == 0))
                return strdup(abs[n] ? abs + n + 1 : "");
        /* A relative target outside the working folder ("../x"): use the absolute form. */
        return strdup(abs + 1);
}

static int add_target(TNode *root, const char *tpath, const char *abs)
{
        TNode *t = root;
        const char *s = tpath;
        size_t skip = strlen(abs) - strlen(tpath);

        if (!*tpath) {
                t->target = true; /* the working folder itself */
                free(t->abspath);
                t->abspath = strdup(abs);
                return t->abspath ? 0 : -ENOMEM;
        }
        while (*s) {
                const char *e = strchr(s, '/');
                size_t len = e ? (size_t)(e - s) : strlen(s);
                _cleanup_free_ char *ap = strndup(abs, skip + (size_t)(s - tpath) + len);
                if (!ap)
                        return -ENOMEM;
                t = tnode_child(t, s, len, ap);
                if (!t)
                        return -ENOMEM;
                if (t->target)
                        return 0; /* inside a target already given */
                s += len;
                if (*s == '/')
                        s++;
        }
        t->target = true;
        return 0;
}

static int tnode_cmp(const void *x, const void *y)
{
        const TNode *a = *(TNode *const *)x, *c = *(TNode *const *)y;
        return strcmp(a->name, c->name);
}

static int walk_virtual(Backup *b, DirJob *d, TNode *t, const HfTree *old);

/* Builds the node for a virtual-tree entry: either a target (walked for real) or an
 * intermediate folder that only holds the targets below it. */
static int handle_tnode(Backup *b, DirJob *d, size_t i, TNode *t, const HfNode *old)
{
        HfNode *n = &d->tree.nodes[i];
        struct stat st;
        int r;

        if (lstat(t->abspath, &st) < 0) {
                r = -errno;
                hf_report_error(&b->opts->out, "archival", t->abspath, r, "cannot back up: %m");
                d->skip[i] = true;
                atomic_fetch_add(&b->files_failed, 1);
                return 0;
        }
        if (t->target) {
                /* Walk it through its parent folder, like any folder entry. */
                _cleanup_free_ char *parent = strdup(t->abspath);
                char *slash;
                if (!parent)
                        return -ENOMEM;
                slash = strrchr(parent, '/');
                if (slash == parent)
                        slash[1] = 0;
                else if (slash)
                        *slash = 0;
                int pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (pfd < 0) {
                        r = -errno;
                        hf_report_error(&b->opts->out, "archival", t->abspath, r,
                                        "cannot open parent folder: %m");
                        d->skip[i] = true;
                        atomic_fetch_add(&b->files_failed, 1);
                        return 0;
                }
                /* A file target's job outlives this call: it gets its own folder fd. */
                r = handle_entry(b, d, i, &st, old, st.st_dev, pfd, parent, true);
                close(pfd);
                return r;
        }
        if (!S_ISDIR(st.st_mode)) {
                hf_report_error(&b->opts->out, "archival", t->abspath, ENOTDIR,
                                "cannot back up below it: %m");
                d->skip[i] = true;
                atomic_fetch_add(&b->files_failed, 1);
                return 0;
        }
        fill_stat(b, n, &st);
        list_xattrs(b, n, t->abspath, -1);
        HfTree old_tree = { 0 };
        DirJob *c = dir_new(d, i, strdup(t->abspath), -1);
        if (!c || !c->path)
                return -ENOMEM;
        if (old && old->type == HF_NODE_DIR && old->has_subtree) {
                c->has_old = true;
                c->old_subtree = old->subtree;
                if (load_old_tree(b, old, &old_tree) < 0)
                        old_tree = (HfTree){ 0 };
        }
        atomic_fetch_add(&d->pending, 1);
        r = walk_virtual(b, c, t, &old_tree);
        hf_tree_done(&old_tree);
        return r;
}

static int walk_virtual(Backup *b, DirJob *d, TNode *t, const HfTree *old)
{
        int r = 0;

        if (t->n_kids > 1)
                qsort(t->kids, t->n_kids, sizeof(TNode *), tnode_cmp);
        d->tree.nodes = calloc(MAX(t->n_kids, (size_t)1), sizeof(HfNode));
        d->skip = calloc(MAX(t->n_kids, (size_t)1), sizeof(bool));
        if (!d->tree.nodes || !d->skip) {
                r = -ENOMEM;
                goto out;
        }
        d->tree.cap = d->tree.n = t->n_kids;
        for (size_t i = 0; i < t->n_kids; i++) {
                d->tree.nodes[i].name = strdup(t->kids[i]->name);
                if (!d->tree.nodes[i].name) {
                        r = -ENOMEM;
                        goto out;
                }
                d->tree.nodes[i].name_len = strlen(t->kids[i]->name);
        }
        for (size_t i = 0; i < t->n_kids && r >= 0; i++) {
                const HfNode *o = old ? hf_tree_find(old, t->kids[i]->name,
                                                     strlen(t->kids[i]->name))
                                      : NULL;
                r = handle_tnode(b, d, i, t->kids[i], o);
        }
out:
        if (r < 0)
                set_fatal(b, r);
        dir_dec(b, d, b->walker_codec, &b->walker_scratch);
        return r;
}

/* ---- totals for the progress display ---------------------------------------------------- */

#include <ftw.h>

static HfProgress *scan_progress;
static const HfBackupOptions *scan_opts;
static atomic_bool scan_stop;

static int scan_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        const char *name = path + ftw->base;

        if (atomic_load(&scan_stop))
                return FTW_STOP;
        if (ftw->level > 0 &&
            hf_exclude_match(scan_opts->excludes, scan_opts->n_excludes, path, name))
                return flag == FTW_D ? FTW_SKIP_SUBTREE : FTW_CONTINUE;
        if (flag == FTW_F && S_ISREG(st->st_mode))
                hf_progress_add_total(scan_progress, 1, (uint64_t)st->st_size);
        return FTW_CONTINUE;
}

static void *scan_main(void *arg)
{
        const HfBackupOptions *o = arg;

        for (size_t i = 0; i < o->n_paths && !atomic_load(&scan_stop); i++)
                (void)nftw(o->paths[i], scan_entry, 64,
                           FTW_PHYS | FTW_ACTIONRETVAL | (o->one_file_system ? FTW_MOUNT : 0));
        hf_progress_total_known(scan_progress);
        return NULL;
}

/* ---- the run ---------------------------------------------------------------------------- */

static void raise_fd_limit(void)
{
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                (void)setrlimit(RLIMIT_NOFILE, &rl);
        }
}

static int find_parent(Backup *b, char **abs, size_t n_abs, const char *host, HfSnapshot *ret)
{
        HfSnapshotFilter f = { .host = host, .paths = abs, .n_paths = n_abs };
        HfSnapshot *v;
        size_t n;
        ssize_t best = -1;
        int r;

        if (b->opts->parent)
                return hf_snapshot_find(b->repo, b->opts->parent, NULL, ret);
        r = hf_snapshot_load_all(b->repo, &v, &n, NULL);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                if (hf_snapshot_match(&v[i], &f))
                        best = (ssize_t)i;
        if (best < 0) {
                hf_snapshot_array_free(v, n);
                return -ENOENT;
        }
        *ret = v[best];
        memset(&v[best], 0, sizeof(v[best]));
        hf_snapshot_array_free(v, n);
        return 0;
}

static int print_summary(const HfBackupOptions *o, const HfBackupResult *res)
{
        const HfSnapshotSummary *m = &res->summary;
        char hex[HF_ID_HEX_LEN + 1], a[32], c[32], d[32];

        hf_id_hex(&res->snapshot_id, hex);
        if (o->out.json) {
                hf_out_lock();
                printf("{\"message_type\":\"summary\",\"files_new\":%llu,\"files_changed\":%llu,"
                       "\"files_unmodified\":%llu,\"dirs_new\":%llu,\"dirs_changed\":%llu,"
                       "\"dirs_unmodified\":%llu,\"data_blobs\":%llu,\"tree_blobs\":%llu,"
                       "\"data_added\":%llu,\"data_added_packed\":%llu,"
                       "\"total_files_processed\":%llu,\"total_bytes_processed\":%llu,"
                       "\"total_duration\":%.3f,\"snapshot_id\":\"%s\",\"files_failed\":%llu,"
                       "\"dry_run\":%s}\n",
                       (unsigned long long)m->files_new, (unsigned long long)m->files_changed,
                       (unsigned long long)m->files_unmodified, (unsigned long long)m->dirs_new,
                       (unsigned long long)m->dirs_changed, (unsigned long long)m->dirs_unmodified,
                       (unsigned long long)m->data_blobs, (unsigned long long)m->tree_blobs,
                       (unsigned long long)m->data_added, (unsigned long long)m->data_added_packed,
                       (unsigned long long)m->total_files_processed,
                       (unsigned long long)m->total_bytes_processed, res->seconds,
                       res->dry_run ? "" : hex, (unsigned long long)res->files_failed,
                       res->dry_run ? "true" : "false");
                fflush(stdout);
                hf_out_unlock();
                return 0;
        }
        if (o->out.quiet)
                return 0;
        printf("Files:       %6llu new, %6llu changed, %6llu unmodified\n",
               (unsigned long long)m->files_new, (unsigned long long)m->files_changed,
               (unsigned long long)m->files_unmodified);
        printf("Dirs:        %6llu new, %6llu changed, %6llu unmodified\n",
               (unsigned long long)m->dirs_new, (unsigned long long)m->dirs_changed,
               (unsigned long long)m->dirs_unmodified);
        printf("%s to the vault: %s (%s stored)\n", res->dry_run ? "Would add" : "Added",
               hf_format_bytes(a, sizeof(a), m->data_added),
               hf_format_bytes(c, sizeof(c), m->data_added_packed));
        printf("processed %llu files, %s in %s\n", (unsigned long long)m->total_files_processed,
               hf_format_bytes(d, sizeof(d), m->total_bytes_processed),
               hf_format_duration(a, sizeof(a), res->seconds));
        if (res->dry_run)
                printf("dry run: nothing was written%s\n",
                       res->files_failed ? "; some items could not be read (see above)" : "");
        else if (res->files_failed)
                printf("snapshot %.8s saved, but %llu item(s) could not be read (see above)\n", hex,
                       (unsigned long long)res->files_failed);
        else
                printf("snapshot %.8s saved\n", hex);
        return 0;
}

int hf_backup(HfRepo *repo, const HfBackupOptions *opts, HfBackupResult *ret)
{
        _cleanup_(hf_lock_releasep) HfLock *lock = NULL;
        _cleanup_(hf_saver_freep) HfSaver *saver = NULL;
        _cleanup_(hf_chunker_freep) HfChunker *proto = NULL;
        Backup b = { .repo = repo, .opts = opts };
        Reader *workers = NULL;
        unsigned n_per_stage = opts->workers ? opts->workers : (unsigned)hf_ncpus();
        unsigned n_workers = 0;
        char **abs = NULL;
        size_t n_abs = 0;
        TNode *root = NULL;
        HfSnapshot parent = { 0 }, snap = { 0 };
        HfTree parent_tree = { 0 };
        pthread_t scanner;
        bool scanning = false;
        HfTime start = hf_time_now();
        double t0 = hf_now_mono();
        HfSaverStats st;
        int r;

        if (opts->n_paths == 0)
                return log_error_errno(EINVAL, "backup needs at least one path");
        raise_fd_limit();
        pthread_mutex_init(&b.done_lock, NULL);
        pthread_cond_init(&b.done_cond, NULL);
        pthread_mutex_init(&b.links_lock, NULL);
        hf_buf_init(&b.walker_scratch, HF_BLOB_MAX_PLAIN + 1024);

        /* Targets: absolute clean paths for the snapshot, the virtual tree for its layout. */
        root = calloc(1, sizeof(*root));
        if (!root) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < opts->n_paths; i++) {
                _cleanup_free_ char *a = clean_abs(opts->paths[i]);
                _cleanup_free_ char *tp = NULL;
                bool dup = false;
                if (!a) {
                        r = -ENOMEM;
                        goto out;
                }
                for (size_t j = 0; j < n_abs; j++)
                        dup = dup || strcmp(abs[j], a) == 0;
                if (dup)
                        continue;
                struct stat tst;
                if (lstat(a, &tst) < 0) {
                        /* Reported once here; the snapshot is made of the others. */
                        hf_report_error(&opts->out, "archival", a, -errno, "cannot back up: %m");
                        atomic_fetch_add(&b.files_failed, 1);
                        continue;
                }
                tp = tree_path_of(opts->paths[i], a);
                if (!tp) {
                        r = -ENOMEM;
                        goto out;
                }
                r = add_target(root, tp, a);
                if (r >= 0)
                        r = hf_strv_push(&abs, &n_abs, a);
                if (r < 0)
                        goto out;
        }

        if (n_abs == 0) {
                r = log_error_errno(ENOENT, "none of the paths given can be backed up; no "
                                            "snapshot was saved");
                goto out;
        }
        /* The lock protocol's wait overlaps loading the index; nothing is written before
         * hf_lock_confirm() below. */
        r = hf_lock_begin(repo, false, &lock);
        if (r < 0)
                goto out;
        r = hf_repo_load_index(repo, NULL);
        if (r >= 0)
                r = hf_lock_confirm(&lock);
        if (r >= 0 && !opts->dry_run)
                r = hf_repo_save_recovered_index(repo);
        if (r < 0)
                goto out;
        r = hf_repo_new_codec(repo, &b.walker_codec);
        if (r < 0)
                goto out;
        r = hf_saver_new(repo, 0, &saver);
        if (r < 0)
                goto out;
        hf_saver_set_dry_run(saver, opts->dry_run);
        b.saver = saver;

        const char *host = opts->host ? opts->host : hf_hostname();
        if (!opts->force) {
                r = find_parent(&b, abs, n_abs, host, &parent);
                if (r >= 0) {
                        char hex[HF_ID_HEX_LEN + 1];
                        hf_id_hex(&parent.id, hex);
                        b.have_parent = true;
                        if (!opts->out.quiet && !opts->out.json)
                                fprintf(stderr, "using parent snapshot %.8s\n", hex);
                        if (hf_load_tree(repo, b.walker_codec, &parent.tree, &parent_tree) < 0) {
                                log_warning("parent snapshot's tree cannot be read: every file "
                                            "will be read again");
                                parent_tree = (HfTree){ 0 };
                        }
                } else if (r != -ENOENT || opts->parent)
                        goto out; /* a parent asked for by name must exist */
        }

        r = hf_progress_new("backup", opts->out.progress, &b.progress);
        if (r < 0)
                goto out;
        if (opts->out.progress) {
                scan_progress = b.progress;
                scan_opts = opts;
                atomic_store(&scan_stop, false);
                scanning = pthread_create(&scanner, NULL, scan_main, (void *)opts) == 0;
        }

        /* Readers and hashers, n_per_stage each; chunk buffers for all of them plus two. */
        b.n_buffers = 2 * (size_t)n_per_stage + 1;
        r = hf_queue_new(n_per_stage * 4, &b.jobs);
        if (r >= 0)
                r = hf_queue_new(b.n_buffers, &b.chunks);
        if (r >= 0)
                r = hf_queue_new(b.n_buffers, &b.pool);
        if (r < 0)
                goto out;
        b.buffers = calloc(b.n_buffers, sizeof(HfBuf));
        if (!b.buffers) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < b.n_buffers; i++) {
                hf_buf_init(&b.buffers[i], HF_CHUNK_MAX + READ_BLOCK + 16);
                (void)hf_queue_push(b.pool, &b.buffers[i]);
        }
        r = hf_chunker_new(hf_repo_pol(repo), &proto);
        if (r < 0)
                goto out;
        workers = calloc(2 * (size_t)n_per_stage, sizeof(Reader));
        if (!workers) {
                r = -ENOMEM;
                goto out;
        }
        for (unsigned i = 0; i < 2 * n_per_stage; i++) {
                Reader *w = &workers[i];
                bool is_reader = i < n_per_stage;
                w->b = &b;
                hf_buf_init(&w->scratch, HF_BLOB_MAX_PLAIN + 1024);
                r = hf_repo_new_codec(repo, &w->codec);
                if (r >= 0 && is_reader)
                        r = hf_chunker_new(hf_repo_pol(repo), &w->chunker);
                if (r >= 0 &&
                    pthread_create(&w->thread, NULL, is_reader ? reader_main : hasher_main, w) != 0)
                        r = -EAGAIN;
                if (r < 0) {
                        hf_codec_free(w->codec);
                        hf_chunker_free(w->chunker);
                        hf_buf_free(&w->scratch);
                        w->codec = NULL;
                        w->chunker = NULL;
                        break;
                }
                n_workers++;
        }
        if (r < 0 || n_workers < 2 * n_per_stage) {
                r = r < 0 ? r : -EAGAIN;
                goto stop;
        }

        /* Walk. The root folder is virtual unless the working folder itself is a target. */
        {
                DirJob *rd;
                if (root->target) {
                        int fd = open(root->abspath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                        struct stat rst;
                        if (fd < 0 || fstat(fd, &rst) < 0) {
                                r = log_error_errno(errno, "%s: cannot open: %m", root->abspath);
                                if (fd >= 0)
                                        close(fd);
                                goto stop;
                        }
                        rd = dir_new(NULL, 0, strdup(root->abspath), fd);
                        if (!rd || !rd->path) {
                                r = -ENOMEM;
                                goto stop;
                        }
                        r = walk_dir(&b, rd, &rst, &parent_tree);
                } else {
                        rd = dir_new(NULL, 0, strdup(""), -1);
                        if (!rd || !rd->path) {
                                r = -ENOMEM;
                                goto stop;
                        }
                        r = walk_virtual(&b, rd, root, &parent_tree);
                }
                /* The last, partly filled batch. */
                int k = flush_jobs(&b);
                if (r >= 0)
                        r = k;
        }
        pthread_mutex_lock(&b.done_lock);
        while (!b.root_done && !(b.error && r < 0))
                pthread_cond_wait(&b.done_cond, &b.done_lock);
        pthread_mutex_unlock(&b.done_lock);

stop:
        /* Readers first (they may still submit chunks), then the hashers drain. */
        hf_queue_close(b.jobs);
        for (unsigned i = 0; i < n_workers && i < n_per_stage; i++)
                pthread_join(workers[i].thread, NULL);
        hf_queue_close(b.chunks);
        for (unsigned i = n_per_stage; i < n_workers; i++)
                pthread_join(workers[i].thread, NULL);
        if (scanning) {
                atomic_store(&scan_stop, true);
                pthread_join(scanner, NULL);
        }
        hf_progress_free(b.progress);
        b.progress = NULL;
        if (r >= 0)
                r = get_fatal(&b);
        if (r < 0) {
                /* Keep what was stored: the next run finds it through the index. */
                if (hf_saver_abort(saver) >= 0)
                        log_notice("the packs stored so far are indexed; the next backup "
                                   "reuses them");
                if (r == -EINTR)
                        log_error("backup interrupted; no snapshot was saved");
                else
                        log_error("backup failed (see above); no snapshot was saved");
                goto out;
        }

        /* Packs, then index, then the snapshot that refers to them. */
        r = hf_saver_finish(saver);
        if (r < 0)
                goto out;
        hf_saver_stats(saver, &st);

        snap.time = start;
        snap.tree = b.root_id;
        snap.has_parent = b.have_parent;
        snap.parent = parent.id;
        snap.paths = abs;
        snap.n_paths = n_abs;
        abs = NULL;
        n_abs = 0;
        snap.hostname = strdup(host);
        snap.username = strdup(hf_username());
        snap.uid = (uint32_t)getuid();
        snap.gid = (uint32_t)getgid();
        snap.program_version = strdup("holdfast " HF_VERSION);
        for (size_t i = 0; i < opts->n_tags && r >= 0; i++)
                r = hf_strv_push(&snap.tags, &snap.n_tags, opts->tags[i]);
        for (size_t i = 0; i < opts->n_excludes && r >= 0; i++)
                r = hf_strv_push(&snap.excludes, &snap.n_excludes, opts->excludes[i]);
        if (r < 0 || !snap.hostname || !snap.username || !snap.program_version) {
                r = r < 0 ? r : -ENOMEM;
                goto out;
        }
        snap.has_summary = true;
        snap.summary = (HfSnapshotSummary){
                .backup_start = start,
                .backup_end = hf_time_now(),
                .files_new = atomic_load(&b.files_new),
                .files_changed = atomic_load(&b.files_changed),
                .files_unmodified = atomic_load(&b.files_unmodified),
                .dirs_new = atomic_load(&b.dirs_new),
                .dirs_changed = atomic_load(&b.dirs_changed),
                .dirs_unmodified = atomic_load(&b.dirs_unmodified),
                .data_blobs = st.data_blobs,
                .tree_blobs = st.tree_blobs,
                .data_added = st.data_added,
                .data_added_packed = st.data_added_packed,
                .total_files_processed = atomic_load(&b.files_processed),
                .total_bytes_processed = atomic_load(&b.bytes_processed),
        };
        /* Object Lock (S3): what the snapshot needs stays for the promised time. */
        r = opts->dry_run ? 0 : hf_retain_snapshot(repo, &snap.tree, &snap.time);
        if (r < 0)
                goto out;
        if (!opts->dry_run) {
                r = hf_snapshot_save(repo, &snap);
                if (r < 0)
                        goto out;
        }

        ret->snapshot_id = snap.id;
        ret->dry_run = opts->dry_run;
        ret->summary = snap.summary;
        ret->files_failed = atomic_load(&b.files_failed);
        ret->seconds = hf_now_mono() - t0;
        print_summary(opts, ret);
        r = ret->files_failed ? HF_INCOMPLETE : 0;
out:
        if (workers) {
                for (unsigned i = 0; i < n_workers; i++) {
                        hf_codec_free(workers[i].codec);
                        hf_chunker_free(workers[i].chunker);
                        hf_buf_free(&workers[i].scratch);
                }
                free(workers);
        }
        hf_queue_free(b.jobs);
        hf_queue_free(b.chunks);
        hf_queue_free(b.pool);
        for (size_t i = 0; b.buffers && i < b.n_buffers; i++)
                hf_buf_free(&b.buffers[i]);
        free(b.buffers);
        for (size_t i = 0; b.links && i <= b.links_mask; i++)
                if (b.links[i]) {
                        free(b.links[i]->content);
                        free(b.links[i]->waiters);
                        free(b.links[i]);
                }
        free(b.links);
        pthread_mutex_destroy(&b.links_lock);
        hf_codec_free(b.walker_codec);
        hf_buf_free(&b.walker_scratch);
        hf_progress_free(b.progress);
        for (size_t i = 0; i < b.n_users; i++)
                free(b.users[i].name);
        for (size_t i = 0; i < b.n_groups; i++)
                free(b.groups[i].name);
        free(b.users);
        free(b.groups);
        hf_tree_done(&parent_tree);
        hf_snapshot_done(&parent);
        hf_snapshot_done(&snap);
        hf_strv_free(abs, n_abs);
        tnode_free(root);
        pthread_mutex_destroy(&b.done_lock);
        pthread_cond_destroy(&b.done_cond);
        return r;
}
