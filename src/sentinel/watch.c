/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The notification group: a FID group (FAN_REPORT_DFID_NAME_TARGET) with filesystem marks,
 * for the namespace and content-change stream (create, modify, close-write, delete, rename).
 * Events are merged by the kernel and cost no round trip. The queue is bounded on purpose: on
 * overflow the kernel drops events and says so (FAN_Q_OVERFLOW), which the main loop logs and
 * answers with a rescan, instead of kernel memory growing without limit under a storm.
 *
 * Paths: the parent's handle is opened with O_PATH (no permission events) and read back
 * through /proc/self/fd; parents are cached, the cache is dropped on any folder rename.
 */
#include <fcntl.h>
#include <linux/magic.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include "../base/log.h"
#include "../base/util.h"
#include "sentinel-internal.h"

#ifndef FAN_RENAME
#define FAN_RENAME 0x10000000
#endif
#ifndef FAN_EVENT_INFO_TYPE_OLD_DFID_NAME
#define FAN_EVENT_INFO_TYPE_OLD_DFID_NAME 10
#define FAN_EVENT_INFO_TYPE_NEW_DFID_NAME 12
#endif
#ifndef FAN_REPORT_TARGET_FID
#define FAN_REPORT_TARGET_FID 0x00001000
#endif

#define MAX_FS 32
#define CACHE 4096
#define ORPHANS 1024

typedef struct WFs {
        int mfd;
        fsid_t fsid, fsid_path; /* the filesystem's; the marked path's (a btrfs subvolume's) */
        uint64_t dev;
        bool shared; /* another entry has the same fsid: subvolumes of one btrfs */
} WFs;

typedef struct AlignedHandle {
        struct file_handle fh;
        unsigned char b[MAX_HANDLE_SZ];
} AlignedHandle;

typedef struct CacheEntry {
        uint64_t key;
        int fs;       /* the filesystem the event's fsid named (part of the key) */
        int mount;    /* the one whose mount the path was found through (subvolume_mount) */
        uint64_t dev; /* the folder's device number: a btrfs subvolume's differs from the fs's */
        char *path;
} CacheEntry;

/*
 * A deletion in a folder that was itself gone when the event was read (rm -r: the folder's
 * handle no longer opens): kept until the folder's own deletion names it, then delivered
 * under the folder's path, before it. A removed subfolder waits the same way, with its own
 * handle, for its parent.
 */
typedef struct Orphan {
        bool used;
        int fs;
        pid_t pid;
        bool ondir;
        double time;
        AlignedHandle dir, self; /* self.fh.handle_bytes 0: unknown */
        char name[256];
} Orphan;

struct HfWatch {
        int fan;
        bool rename;
        WFs fs[MAX_FS];
        size_t n_fs;
        CacheEntry cache[CACHE];
        uint64_t overflows;
        HfEvent ev;
        AlignedHandle handles[4]; /* object, folder, old folder, new folder of the event */
        Orphan *orphans;          /* ORPHANS, a ring */
        size_t orphan_next;
};

int hf_watch_new(HfWatch **ret, char *why, size_t whyn)
{
        HfWatch *w = calloc(1, sizeof(*w));

        if (!w)
                return -ENOMEM;
        w->fan = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_DFID_NAME |
                                       FAN_REPORT_FID | FAN_REPORT_TARGET_FID,
                               O_RDONLY | O_CLOEXEC);
        if (w->fan < 0)
                w->fan = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK |
                                               FAN_REPORT_DFID_NAME,
                                       O_RDONLY | O_CLOEXEC);
        if (w->fan < 0) {
                int r = -errno;
                (void)snprintf(why, whyn, "fanotify FID group: %s (needs Linux 5.9)", strerror(-r));
                free(w);
                return r;
        }
        w->rename = true;
        *ret = w;
        return 0;
}

HfWatch *hf_watch_free(HfWatch *w)
{
        if (!w)
                return NULL;
        closep(&w->fan);
        for (size_t i = 0; i < w->n_fs; i++)
                closep(&w->fs[i].mfd);
        for (size_t i = 0; i < CACHE; i++)
                free(w->cache[i].path);
        free(w->orphans);
        free(w);
        return NULL;
}

int hf_watch_fd(HfWatch *w)
{
        return w->fan;
}

uint64_t hf_watch_overflows(HfWatch *w)
{
        return w->overflows;
}

/* Marks the filesystem of dfd/path (path NULL: of dfd itself) for the watch's events. */
static int mark_fs(HfWatch *w, int dfd, const char *path)
{
        uint64_t mask = FAN_MODIFY | FAN_CLOSE_WRITE | FAN_CREATE | FAN_DELETE | FAN_ONDIR;

        if (w->rename && fanotify_mark(w->fan, FAN_MARK_ADD | FAN_MARK_FILESYSTEM,
                                       mask | FAN_RENAME, dfd, path) < 0) {
                if (errno != EINVAL)
                        return -errno;
                w->rename = false;
        }
        if (!w->rename && fanotify_mark(w->fan, FAN_MARK_ADD | FAN_MARK_FILESYSTEM,
                                        mask | FAN_MOVED_FROM | FAN_MOVED_TO, dfd, path) < 0)
                return -errno;
        return 0;
}

/*
 * The top-level subvolume (ID 5) of the btrfs filesystem mounted at root, opened as a folder
 * of a detached mount that no one else sees. A filesystem mark through a subvolume is refused
 * (EXDEV: events carry the filesystem's fsid, not the subvolume's); through this it is not.
 */
static int btrfs_top_level(const char *root)
{
        char dev[HF_PATH_MAX];
        _cleanup_close_ int fs = -1, m = -1;
        int r = hf_mount_source(root, dev, sizeof(dev));

        if (r < 0)
                return r;
        fs = fsopen("btrfs", FSOPEN_CLOEXEC);
        if (fs < 0 || fsconfig(fs, FSCONFIG_SET_STRING, "source", dev, 0) < 0 ||
            fsconfig(fs, FSCONFIG_SET_STRING, "subvolid", "5", 0) < 0 ||
            fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
                return -errno;
        m = fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_RDONLY);
        if (m < 0)
                return -errno;
        /* fanotify_mark() takes no O_PATH fd, which is what fsmount() gives. */
        r = openat(m, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        return r < 0 ? -errno : r;
}

int hf_watch_add_fs(HfWatch *w, const char *root)
{
        struct statfs sf, top;
        struct stat st;
        int r;

        if (stat(root, &st) < 0 || statfs(root, &sf) < 0)
                return -errno;
        for (size_t i = 0; i < w->n_fs; i++)
                if (w->fs[i].dev == st.st_dev)
                        return (int)i;
        if (w->n_fs >= MAX_FS)
                return -E2BIG;
        top = sf;
        r = mark_fs(w, AT_FDCWD, root);
        if (r == -EXDEV && (unsigned long)sf.f_type == BTRFS_SUPER_MAGIC) {
                /* A btrfs subvolume mounted on its own (/home from @home). */
                _cleanup_close_ int t = btrfs_top_level(root);
                if (t < 0) {
                        log_debug_errno(t, "%s: the btrfs top-level subvolume: %m", root);
                        return -EXDEV;
                }
                r = mark_fs(w, t, NULL);
                if (r >= 0 && fstatfs(t, &top) < 0)
                        r = -errno;
        }
        if (r < 0)
                return r;
        WFs *f = &w->fs[w->n_fs];
        f->mfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (f->mfd < 0)
                return -errno;
        f->fsid = top.f_fsid;
        f->fsid_path = sf.f_fsid;
        f->dev = st.st_dev;
        for (size_t i = 0; i < w->n_fs; i++)
                if (memcmp(&w->fs[i].fsid, &f->fsid, sizeof(f->fsid)) == 0)
                        w->fs[i].shared = f->shared = true;
        return (int)w->n_fs++;
}

/*
 * Events name a btrfs filesystem by its fsid whatever subvolume the file is in. With several
 * of its subvolumes mounted and marked (/ from @, /home from @home), a handle opened through
 * the wrong one's mount has no path there: the fsid statfs() gives the opened object (its
 * subvolume's) says whose mount to use. fd: the object opened through fs's mount.
 */
static int subvolume_mount(HfWatch *w, int fs, int fd)
{
        struct statfs sf;

        if (!w->fs[fs].shared || fstatfs(fd, &sf) < 0)
                return fs;
        for (size_t i = 0; i < w->n_fs; i++)
                if (memcmp(&w->fs[i].fsid, &w->fs[fs].fsid, sizeof(sf.f_fsid)) == 0 &&
                    memcmp(&w->fs[i].fsid_path, &sf.f_fsid, sizeof(sf.f_fsid)) == 0)
                        return (int)i;
        return fs;
}

static int fs_of(HfWatch *w, const fsid_t *fsid)
{
        for (size_t i = 0; i < w->n_fs; i++)
                if (memcmp(&w->fs[i].fsid, fsid, sizeof(*fsid)) == 0 ||
                    memcmp(&w->fs[i].fsid_path, fsid, sizeof(*fsid)) == 0)
                        return (int)i;
        return -1;
}

static uint64_t hash_handle(int fs, const struct file_handle *fh)
{
        uint64_t h = 1469598103934665603ULL ^ (uint64_t)fs ^ ((uint64_t)fh->handle_type << 32);
        for (unsigned i = 0; i < fh->handle_bytes; i++)
                h = (h ^ fh->f_handle[i]) * 1099511628211ULL;
        return h | 1;
}

static void cache_flush(HfWatch *w)
{
        for (size_t i = 0; i < CACHE; i++) {
                free(w->cache[i].path);
                w->cache[i] = (CacheEntry){ 0 };
        }
}

/* Remembers a folder's path under its handle's key, and what dir_path() hands back with it. */
static void cache_put(HfWatch *w, uint64_t key, int fs, int mount, const char *path, uint64_t dev)
{
        CacheEntry *c = &w->cache[key % CACHE];

        free(c->path);
        c->path = strdup(path);
        c->key = key;
        c->fs = fs;
        c->mount = mount;
        c->dev = dev;
}

/*
 * Path of the folder behind a handle, and the device number of what is in it (cached; ret_dev
 * may be NULL). The event's fsid names the filesystem, *fsp; it becomes the one whose mount
 * the path was found through (subvolume_mount). In a btrfs subvolume that is not mounted on
 * its own, the files have a device number of their own, which the guard's pre-images are
 * keyed by.
 */
static int dir_path(HfWatch *w, int *fsp, struct file_handle *fh, char *out, size_t n,
                    uint64_t *ret_dev)
{
        int fs = *fsp, mount;
        uint64_t key = hash_handle(fs, fh);
        CacheEntry *c = &w->cache[key % CACHE];
        struct stat st;
        char p[64];

        if (c->key == key && c->fs == fs && c->path) {
                (void)snprintf(out, n, "%s", c->path);
                if (ret_dev)
                        *ret_dev = c->dev;
                *fsp = c->mount;
                return 0;
        }
        _cleanup_close_ int fd = open_by_handle_at(w->fs[fs].mfd, fh, O_PATH | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        mount = subvolume_mount(w, fs, fd);
        if (mount != fs) {
                closep(&fd);
                fd = open_by_handle_at(w->fs[mount].mfd, fh, O_PATH | O_CLOEXEC);
                if (fd < 0)
                        return -errno;
        }
        if (fstat(fd, &st) < 0)
                return -errno;
        (void)snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
        ssize_t k = readlink(p, out, n - 1);
        if (k < 0)
                return -errno;
        out[k] = 0;
        cache_put(w, key, fs, mount, out, st.st_dev);
        if (ret_dev)
                *ret_dev = st.st_dev;
        *fsp = mount;
        return 0;
}

static void join(char *out, size_t n, const char *dir, const char *name)
{
        if (!name || !*name || strcmp(name, ".") == 0)
                (void)snprintf(out, n, "%s", dir);
        else
                (void)snprintf(out, n, "%s%s%s", dir, strcmp(dir, "/") ? "/" : "", name);
}

void hf_watch_prime(HfWatch *w, const char *path)
{
        struct {
                struct file_handle fh;
                unsigned char b[128];
        } h;
        struct statfs sf;
        struct stat st;
        int mnt;

        h.fh.handle_bytes = sizeof(h.b);
        if (name_to_handle_at(AT_FDCWD, path, &h.fh, &mnt, 0) < 0 || statfs(path, &sf) < 0 ||
            stat(path, &st) < 0)
                return;
        int mount = fs_of(w, &sf.f_fsid);
        if (mount < 0)
                return;
        /* Keyed as events name the folder: by the filesystem's fsid, which for a btrfs
         * subvolume mounted on its own (/home from @home) is the first marked one's. */
        int fs = fs_of(w, &w->fs[mount].fsid);
        cache_put(w, hash_handle(fs, &h.fh), fs, mount, path, st.st_dev);
}

void hf_fid_hex(const struct file_handle *fh, char *out, size_t n)
{
        out[0] = 0;
        if (!fh || fh->handle_bytes > MAX_HANDLE_SZ || n < 9 + 2 * (size_t)fh->handle_bytes)
                return;
        (void)snprintf(out, n, "%08x", (unsigned)fh->handle_type);
        hf_hex_encode(fh->f_handle, fh->handle_bytes, out + 8);
}

int hf_fd_fid(int fd, char *out, size_t n)
{
        AlignedHandle h;
        int mnt;

        out[0] = 0;
        h.fh.handle_bytes = MAX_HANDLE_SZ;
        if (name_to_handle_at(fd, "", &h.fh, &mnt, AT_EMPTY_PATH) < 0)
                return -errno;
        hf_fid_hex(&h.fh, out, n);
        return 0;
}

int hf_watch_open(HfWatch *w, const HfEvent *ev, int flags)
{
        if (!ev->fh || ev->fs < 0)
                return -ENOENT;
        int fd = open_by_handle_at(w->fs[ev->fs].mfd, ev->fh, flags | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

/*
 * Records of a FID group are only 4-byte aligned (names make them variable-length), while
 * struct fanotify_event_metadata holds a u64: every header and info record is copied into
 * an aligned struct before use, and the file handles into aligned storage of the watch.
 *
 * Copies the FID record at p (len bytes, header included) into *ret; the name that follows
 * the handle (DFID_NAME records) in *ret_name, NULL when the record has none.
 */
static int parse_fid(const char *p, size_t len, fsid_t *ret_fsid, AlignedHandle *ret,
                     const char **ret_name)
{
        const size_t fixed = offsetof(struct fanotify_event_info_fid, handle);
        struct file_handle h;

        if (len < fixed + sizeof(h))
                return -EPROTO;
        memcpy(ret_fsid, p + offsetof(struct fanotify_event_info_fid, fsid), sizeof(*ret_fsid));
        memcpy(&h, p + fixed, sizeof(h));
        if (h.handle_bytes > MAX_HANDLE_SZ || h.handle_bytes > len - fixed - sizeof(h))
                return -EPROTO;
        ret->fh = h;
        memcpy(ret->fh.f_handle, p + fixed + sizeof(h), h.handle_bytes);
        const char *name = p + fixed + sizeof(h) + h.handle_bytes;
        size_t rest = len - fixed - sizeof(h) - h.handle_bytes;
        *ret_name = rest > 0 && memchr(name, 0, rest) ? name : NULL;
        return 0;
}

static bool same_handle(const struct file_handle *a, const struct file_handle *b)
{
        return a->handle_bytes == b->handle_bytes && a->handle_type == b->handle_type &&
               memcmp(a->f_handle, b->f_handle, a->handle_bytes) == 0;
}

static void orphan_add(HfWatch *w, int fs, const HfEvent *ev, const struct file_handle *dfh,
                       const char *name)
{
        if (!name || dfh->handle_bytes > MAX_HANDLE_SZ || strlen(name) >= sizeof(w->orphans->name))
                return;
        if (!w->orphans && !(w->orphans = calloc(ORPHANS, sizeof(Orphan))))
                return;
        Orphan *o = &w->orphans[w->orphan_next++ % ORPHANS]; /* the oldest goes */
        *o = (Orphan){
                .used = true, .fs = fs, .pid = ev->pid, .ondir = ev->ondir, .time = ev->time
        };
        memcpy(&o->dir.fh, dfh, sizeof(*dfh) + dfh->handle_bytes);
        if (ev->fh && ev->fh->handle_bytes <= MAX_HANDLE_SZ)
                memcpy(&o->self.fh, ev->fh, sizeof(*ev->fh) + ev->fh->handle_bytes);
        (void)snprintf(o->name, sizeof(o->name), "%s", name);
}

/* Delivers the orphans of the folder dir (now known to have been at path), and theirs. */
static void orphans_of(HfWatch *w, int fs, const struct file_handle *dir, const char *path,
                       HfWatchCallback cb, void *ud, int depth)
{
        if (!w->orphans || depth > 64)
                return;
        for (size_t i = 0; i < ORPHANS; i++) {
                Orphan *o = &w->orphans[i];
                if (!o->used || o->fs != fs || !same_handle(&o->dir.fh, dir))
                        continue;
                o->used = false;
                AlignedHandle self = o->self;
                _cleanup_free_ HfEvent *ev = calloc(1, sizeof(*ev));
                if (!ev)
                        return;
                *ev = (HfEvent){ .kind = HF_EV_DELETE,
                                 .fd = -1,
                                 .pid = o->pid,
                                 .ondir = o->ondir,
                                 .time = o->time,
                                 .dev = w->fs[fs].dev,
                                 .fs = fs,
                                 .fh = self.fh.handle_bytes ? &self.fh : NULL };
                join(ev->path, sizeof(ev->path), path, o->name);
                if (o->ondir && self.fh.handle_bytes)
                        orphans_of(w, fs, &self.fh, ev->path, cb, ud, depth + 1);
                cb(ev, ud);
        }
}

static void deliver(HfWatch *w, const char *rec, size_t rec_len, HfWatchCallback cb, void *ud)
{
        HfEvent *ev = &w->ev;
        struct fanotify_event_metadata m;
        struct file_handle *dfh = NULL, *ofh = NULL, *nfh = NULL;
        const char *name = NULL, *oname = NULL, *nname = NULL;
        int fs = -1;

        memcpy(&m, rec, sizeof(m));
        if (m.metadata_len < sizeof(m) || m.metadata_len > rec_len)
                return;
        const char *p = rec + m.metadata_len, *end = rec + rec_len;
        ev->kind = HF_EV_MODIFY;
        ev->pid = m.pid;
        ev->ondir = (m.mask & FAN_ONDIR) != 0;
        ev->time = hf_now_real();
        ev->dev = ev->ino = 0;
        ev->fh = NULL;
        ev->fd = -1;
        ev->path[0] = ev->new_path[0] = 0;

        while ((size_t)(end - p) >= sizeof(struct fanotify_event_info_header)) {
                struct fanotify_event_info_header h;
                memcpy(&h, p, sizeof(h));
                if (h.len < sizeof(h) || h.len > (size_t)(end - p))
                        break;
                if (h.info_type == FAN_EVENT_INFO_TYPE_FID ||
                    h.info_type == FAN_EVENT_INFO_TYPE_DFID_NAME ||
                    h.info_type == FAN_EVENT_INFO_TYPE_DFID ||
                    h.info_type == FAN_EVENT_INFO_TYPE_OLD_DFID_NAME ||
                    h.info_type == FAN_EVENT_INFO_TYPE_NEW_DFID_NAME) {
                        AlignedHandle *slot =
                                &w->handles[h.info_type == FAN_EVENT_INFO_TYPE_FID             ? 0
                                            : h.info_type == FAN_EVENT_INFO_TYPE_OLD_DFID_NAME ? 2
                                            : h.info_type == FAN_EVENT_INFO_TYPE_NEW_DFID_NAME ? 3
                                                                                               : 1];
                        fsid_t fsid;
                        const char *nm = NULL;
                        if (parse_fid(p, h.len, &fsid, slot, &nm) < 0)
                                break;
                        fs = fs_of(w, &fsid);
                        switch (h.info_type) {
                        case FAN_EVENT_INFO_TYPE_FID:
                                ev->fh = &slot->fh;
                                break;
                        case FAN_EVENT_INFO_TYPE_DFID_NAME:
                                dfh = &slot->fh;
                                name = nm;
                                break;
                        case FAN_EVENT_INFO_TYPE_DFID:
                                dfh = &slot->fh;
                                break;
                        case FAN_EVENT_INFO_TYPE_OLD_DFID_NAME:
                                ofh = &slot->fh;
                                oname = nm;
                                break;
                        default:
                                nfh = &slot->fh;
                                nname = nm;
                                break;
                        }
                }
                p += h.len;
        }
        if (fs < 0)
                return;
        ev->dev = w->fs[fs].dev;
        char dir[HF_PATH_MAX];
        if (m.mask & FAN_RENAME) {
                int nfs = fs;
                if (!ofh || !nfh)
                        return;
                ev->kind = HF_EV_RENAME;
                if (dir_path(w, &fs, ofh, dir, sizeof(dir), &ev->dev) < 0)
                        return;
                join(ev->path, sizeof(ev->path), dir, oname);
                if (dir_path(w, &nfs, nfh, dir, sizeof(dir), NULL) < 0)
                        return;
                join(ev->new_path, sizeof(ev->new_path), dir, nname);
        } else {
                if (!dfh) {
                        if (!ev->fh || dir_path(w, &fs, ev->fh, dir, sizeof(dir), &ev->dev) < 0)
                                return;
                        (void)snprintf(ev->path, sizeof(ev->path), "%s", dir);
                } else {
                        int named = fs;
                        if (dir_path(w, &fs, dfh, dir, sizeof(dir), &ev->dev) < 0) {
                                if (m.mask & FAN_DELETE)
                                        orphan_add(w, named, ev, dfh, name);
                                return;
                        }
                        join(ev->path, sizeof(ev->path), dir, name);
                }
        }
        ev->fs = fs;
        if (ev->ondir && (m.mask & (FAN_RENAME | FAN_DELETE | FAN_MOVED_FROM)))
                cache_flush(w);
        _cleanup_close_ int obj = -1;
        if (ev->fh && !(m.mask & FAN_DELETE)) {
                struct stat st;
                obj = open_by_handle_at(w->fs[fs].mfd, ev->fh, O_PATH | O_CLOEXEC);
                if (obj >= 0 && fstat(obj, &st) == 0) {
                        ev->ino = st.st_ino;
                        ev->dev = st.st_dev;
                        ev->fd = obj;
                }
        }

        /* One callback per kind, in the order things happened. */
        if (m.mask & FAN_RENAME) {
                cb(ev, ud);
                return;
        }
        if (m.mask & FAN_MOVED_FROM) {
                ev->kind = HF_EV_RENAME;
                cb(ev, ud);
                return;
        }
        if (m.mask & (FAN_CREATE | FAN_MOVED_TO)) {
                ev->kind = HF_EV_CREATE;
                cb(ev, ud);
        }
        if (m.mask & FAN_MODIFY) {
                ev->kind = HF_EV_MODIFY;
                cb(ev, ud);
        }
        if (m.mask & FAN_CLOSE_WRITE) {
                ev->kind = HF_EV_CLOSE_WRITE;
                cb(ev, ud);
        }
        if (m.mask & FAN_DELETE) {
                if (ev->ondir && ev->fh)
                        orphans_of(w, fs, ev->fh, ev->path, cb, ud, 0);
                ev->kind = HF_EV_DELETE;
                cb(ev, ud);
        }
}

int hf_watch_dispatch(HfWatch *w, HfWatchCallback cb, void *ud)
{
        _Alignas(struct fanotify_event_metadata) char buf[65536];

        for (int rounds = 0; rounds < 64; rounds++) {
                ssize_t n = read(w->fan, buf, sizeof(buf));
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return 0;
                        return -errno;
                }
                size_t off = 0;
                while ((size_t)n - off >= sizeof(struct fanotify_event_metadata)) {
                        struct fanotify_event_metadata m;
                        memcpy(&m, buf + off, sizeof(m));
                        if (m.event_len < sizeof(m) || m.event_len > (size_t)n - off)
                                break;
                        if (m.vers != FANOTIFY_METADATA_VERSION) {
                                off += m.event_len;
                                continue;
                        }
                        if (m.mask & FAN_Q_OVERFLOW) {
                                w->overflows++;
                                cache_flush(w);
                                w->ev = (HfEvent){ .kind = HF_EV_OVERFLOW,
                                                   .fs = -1,
                                                   .fd = -1,
                                                   .time = hf_now_real() };
                                cb(&w->ev, ud);
                        } else
                                deliver(w, buf + off, m.event_len, cb, ud);
                        if (m.fd >= 0)
                                close(m.fd);
                        off += m.event_len;
                }
        }
        return 0;
}
