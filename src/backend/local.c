/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Local directory backend in restic's layout: config, keys/, snapshots/, index/, locks/ and
 * data/xx/ (256 fan-out folders). Files are written to a temp name, fsynced, linked into place
 * (never replacing an existing name), the folder fsynced, and made read-only (0400).
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <linux/magic.h>

#include "../base/log.h"
#include "../base/util.h"
#include "backend.h"

/* A named temp file, for filesystems without O_TMPFILE or hosts without /proc. */
typedef struct NamedTemp {
        int fd;
        char name[64];
} NamedTemp;

/* Open pack files for reads, so restoring and checking do not open a pack per blob. */
#define FD_CACHE_SIZE 32

typedef struct CachedFd {
        char name[HF_ID_HEX_LEN + 1];
        HfFileType type;
        int fd;        /* -1: empty slot */
        unsigned refs; /* readers using fd now: never closed under them */
        uint64_t used; /* for least-recently-used eviction */
} CachedFd;

typedef struct LocalBackend {
        HfBackend base;
        int rootfd;
        int dirfds[_HF_FILE_TYPE_MAX];
        pthread_mutex_t fd_lock;
        CachedFd fds[FD_CACHE_SIZE];
        uint64_t fd_clock;
        pthread_mutex_t temp_lock;
        NamedTemp *temps;
        size_t n_temps;
} LocalBackend;

static bool name_ok(HfFileType t, const char *name)
{
        size_t n = strlen(name);

        if (t == HF_FILE_CONFIG)
                return strcmp(name, "config") == 0;
        if (n != HF_ID_HEX_LEN)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
                        return false;
        return true;
}

/* The folder fd of a type, opened lazily; for packs, the folder of the fan-out. */
static int type_dirfd(LocalBackend *lb, HfFileType t)
{
        int cur, fd, expected = -1;

        if (t == HF_FILE_CONFIG)
                return lb->rootfd;
        cur = __atomic_load_n(&lb->dirfds[t], __ATOMIC_ACQUIRE);
        if (cur >= 0)
                return cur;
        fd = openat(lb->rootfd, hf_file_type_dir(t), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        /* Threads may race to open it: the first one wins, the others close theirs. */
        if (!__atomic_compare_exchange_n(&lb->dirfds[t], &expected, fd, false, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE)) {
                close(fd);
                return expected;
        }
        return fd;
}

/* Resolves (type, name) to a folder fd and a path relative to it. */
static int locate(LocalBackend *lb, HfFileType t, const char *name, int *ret_dirfd, char *path,
                  size_t pathlen)
{
        int dfd;

        if (t >= _HF_FILE_TYPE_MAX || !name_ok(t, name))
                return -EINVAL;
        dfd = type_dirfd(lb, t);
        if (dfd < 0)
                return dfd;
        if (t == HF_FILE_PACK)
                (void)snprintf(path, pathlen, "%.2s/%s", name, name);
        else
                (void)snprintf(path, pathlen, "%s", name);
        *ret_dirfd = dfd;
        return 0;
}

static int local_create(HfBackend *b)
{
        LocalBackend *lb = (LocalBackend *)b;
        struct stat st;

        if (fstatat(lb->rootfd, "config", &st, 0) == 0)
                return -EEXIST;
        for (HfFileType t = HF_FILE_KEY; t < _HF_FILE_TYPE_MAX; t++)
                if (mkdirat(lb->rootfd, hf_file_type_dir(t), 0700) < 0 && errno != EEXIST)
                        return -errno;
        int dfd = type_dirfd(lb, HF_FILE_PACK);
        if (dfd < 0)
                return dfd;
        for (int i = 0; i < 256; i++) {
                char sub[3];
                (void)snprintf(sub, sizeof(sub), "%02x", i);
                if (mkdirat(dfd, sub, 0700) < 0 && errno != EEXIST)
                        return -errno;
        }
        (void)hf_fsync_dirfd(dfd);
        return hf_fsync_dirfd(lb->rootfd);
}

static int local_save(HfBackend *b, HfFileType t, const char *name, const void *p, size_t n)
{
        LocalBackend *lb = (LocalBackend *)b;
        _cleanup_close_ int subfd = -1;
        char path[128];
        int dfd, r;

        r = locate(lb, t, name, &dfd, path, sizeof(path));
        if (r < 0)
                return r;
        if (t == HF_FILE_PACK) {
                char sub[3] = { name[0], name[1], 0 };
                subfd = openat(dfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (subfd < 0 && errno == ENOENT) {
                        if (mkdirat(dfd, sub, 0700) < 0 && errno != EEXIST)
                                return -errno;
                        subfd = openat(dfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                }
                if (subfd < 0)
                        return -errno;
                return hf_write_file_atomic_at(subfd, name, p, n, 0400, true);
        }
        return hf_write_file_atomic_at(dfd, name, p, n, 0400, true);
}

static int local_open(LocalBackend *lb, HfFileType t, const char *name)
{
        char path[128];
        int dfd, r, fd;

        r = locate(lb, t, name, &dfd, path, sizeof(path));
        if (r < 0)
                return r;
        fd = openat(dfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
        return fd < 0 ? -errno : fd;
}

static int local_load(HfBackend *b, HfFileType t, const char *name, uint64_t off, size_t len,
                      HfBuf *out)
{
        _cleanup_close_ int fd = local_open((LocalBackend *)b, t, name);
        struct stat st;
        int r;

        if (fd < 0)
                return fd;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (off > (uint64_t)st.st_size)
                return -ENODATA;
        if (len == 0)
                len = (size_t)((uint64_t)st.st_size - off);
        if (off + len > (uint64_t)st.st_size)
                return -ENODATA;
        r = hf_buf_reserve(out, len);
        if (r < 0)
                return r;
        r = hf_pread_all(fd, out->data + out->len, len, off);
        if (r < 0)
                return r;
        out->len += len;
        out->data[out->len] = 0;
        return 0;
}

/* A cached fd for (t, name), with a reference the caller drops with fd_put(). */
static int fd_get(LocalBackend *lb, HfFileType t, const char *name, CachedFd **ret)
{
        CachedFd *victim = NULL;
        int fd;

        pthread_mutex_lock(&lb->fd_lock);
        for (size_t i = 0; i < FD_CACHE_SIZE; i++) {
                CachedFd *c = &lb->fds[i];
                if (c->fd >= 0 && c->type == t && strcmp(c->name, name) == 0) {
                        c->refs++;
                        c->used = ++lb->fd_clock;
                        pthread_mutex_unlock(&lb->fd_lock);
                        *ret = c;
                        return c->fd;
                }
        }
        pthread_mutex_unlock(&lb->fd_lock);
        fd = local_open(lb, t, name);
        if (fd < 0)
                return fd;
        pthread_mutex_lock(&lb->fd_lock);
        /* An empty slot, else the least recently used one nobody is reading from. */
        for (size_t i = 0; i < FD_CACHE_SIZE; i++) {
                CachedFd *c = &lb->fds[i];
                if (c->refs != 0)
                        continue;
                if (c->fd < 0) {
                        victim = c;
                        break;
                }
                if (!victim || c->used < victim->used)
                        victim = c;
        }
        if (!victim) {
                /* Every slot busy: use this fd once, uncached. */
                pthread_mutex_unlock(&lb->fd_lock);
                *ret = NULL;
                return fd;
        }
        if (victim->fd >= 0)
                close(victim->fd);
        (void)snprintf(victim->name, sizeof(victim->name), "%s", name);
        victim->type = t;
        victim->fd = fd;
        victim->refs = 1;
        victim->used = ++lb->fd_clock;
        pthread_mutex_unlock(&lb->fd_lock);
        *ret = victim;
        return fd;
}

static void fd_put(LocalBackend *lb, CachedFd *c, int fd)
{
        if (!c) {
                close(fd);
                return;
        }
        pthread_mutex_lock(&lb->fd_lock);
        c->refs--;
        pthread_mutex_unlock(&lb->fd_lock);
}

static int local_read_at(HfBackend *b, HfFileType t, const char *name, uint64_t off, size_t len,
                         void *p)
{
        LocalBackend *lb = (LocalBackend *)b;
        CachedFd *c;
        int fd, r;

        if (t != HF_FILE_PACK) {
                _cleanup_close_ int ofd = local_open(lb, t, name);
                if (ofd < 0)
                        return ofd;
                return hf_pread_all(ofd, p, len, off);
        }
        fd = fd_get(lb, t, name, &c);
        if (fd < 0)
                return fd;
        r = hf_pread_all(fd, p, len, off);
        fd_put(lb, c, fd);
        return r;
}

static void local_prefetch(HfBackend *b, HfFileType t, const char *name, uint64_t off, size_t len)
{
        LocalBackend *lb = (LocalBackend *)b;
        CachedFd *c;
        int fd;

        if (t != HF_FILE_PACK)
                return;
        fd = fd_get(lb, t, name, &c);
        if (fd < 0)
                return;
        (void)posix_fadvise(fd, (off_t)off, (off_t)len, POSIX_FADV_WILLNEED);
        fd_put(lb, c, fd);
}

/* A removed file must not stay readable through the cache. */
static void fd_forget(LocalBackend *lb, HfFileType t, const char *name)
{
        pthread_mutex_lock(&lb->fd_lock);
        for (size_t i = 0; i < FD_CACHE_SIZE; i++) {
                CachedFd *c = &lb->fds[i];
                if (c->fd >= 0 && c->refs == 0 && c->type == t && strcmp(c->name, name) == 0) {
                        close(c->fd);
                        c->fd = -1;
                }
        }
        pthread_mutex_unlock(&lb->fd_lock);
}

static int local_stat(HfBackend *b, HfFileType t, const char *name, uint64_t *ret_size)
{
        LocalBackend *lb = (LocalBackend *)b;
        struct stat st;
        char path[128];
        int dfd, r;

        r = locate(lb, t, name, &dfd, path, sizeof(path));
        if (r < 0)
                return r;
        if (fstatat(dfd, path, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        if (ret_size)
                *ret_size = (uint64_t)st.st_size;
        return 0;
}

static int local_remove(HfBackend *b, HfFileType t, const char *name)
{
        LocalBackend *lb = (LocalBackend *)b;
        char path[128];
        int dfd, r;

        r = locate(lb, t, name, &dfd, path, sizeof(path));
        if (r < 0)
                return r;
        if (unlinkat(dfd, path, 0) < 0)
                return -errno;
        fd_forget(lb, t, name);
        return 0;
}

/* Lists the regular files with valid names in dirfd/sub. */
static int list_dir(int dirfd, const char *sub, HfFileType t, HfListFn fn, void *userdata)
{
        int fd = openat(dirfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d;
        int r = 0;

        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        d = fdopendir(fd);
        if (!d) {
                r = -errno;
                close(fd);
                return r;
        }
        for (;;) {
                struct dirent *de;
                struct stat st;

                errno = 0;
                de = readdir(d);
                if (!de) {
                        if (errno)
                                r = -errno;
                        break;
                }
                if (!name_ok(t, de->d_name))
                        continue;
                if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        if (errno == ENOENT)
                                continue;
                        r = -errno;
                        break;
                }
                if (!S_ISREG(st.st_mode))
                        continue;
                r = fn(userdata, de->d_name, (uint64_t)st.st_size);
                if (r < 0)
                        break;
        }
        closedir(d);
        return r;
}

static int local_list(HfBackend *b, HfFileType t, HfListFn fn, void *userdata)
{
        LocalBackend *lb = (LocalBackend *)b;
        int dfd, r;

        if (t == HF_FILE_CONFIG) {
                struct stat st;
                if (fstatat(lb->rootfd, "config", &st, 0) < 0)
                        return errno == ENOENT ? 0 : -errno;
                return fn(userdata, "config", (uint64_t)st.st_size);
        }
        dfd = type_dirfd(lb, t);
        if (dfd == -ENOENT)
                return 0;
        if (dfd < 0)
                return dfd;
        if (t != HF_FILE_PACK)
                return list_dir(dfd, ".", t, fn, userdata);
        for (int i = 0; i < 256; i++) {
                char sub[3];
                (void)snprintf(sub, sizeof(sub), "%02x", i);
                r = list_dir(dfd, sub, t, fn, userdata);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int subdir_fd(int dfd, const char *name)
{
        char sub[3] = { name[0], name[1], 0 };
        int fd = openat(dfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0 && errno == ENOENT) {
                if (mkdirat(dfd, sub, 0700) < 0 && errno != EEXIST)
                        return -errno;
                fd = openat(dfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        }
        return fd < 0 ? -errno : fd;
}

/*
 * Packs are written in place into an unnamed file in the vault's own folder (O_TMPFILE), so
 * the final link is cheap and a crash leaves nothing behind.
 */
static int local_temp_open(HfBackend *b, HfFileType t, int *ret_fd)
{
        static atomic_uint counter;
        LocalBackend *lb = (LocalBackend *)b;
        int dfd = type_dirfd(lb, t), fd;

        if (dfd < 0)
                return dfd;
        if (access("/proc/self/fd", X_OK) == 0) {
                fd = openat(dfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
                if (fd >= 0) {
                        *ret_fd = fd;
                        return 0;
                }
                if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
                        return -errno;
        }
        NamedTemp nt;
        (void)snprintf(nt.name, sizeof(nt.name), ".tmp-%d-%u", (int)getpid(),
                       atomic_fetch_add(&counter, 1));
        fd = openat(dfd, nt.name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        nt.fd = fd;
        pthread_mutex_lock(&lb->temp_lock);
        NamedTemp *nv = realloc(lb->temps, (lb->n_temps + 1) * sizeof(NamedTemp));
        if (nv) {
                lb->temps = nv;
                lb->temps[lb->n_temps++] = nt;
        }
        pthread_mutex_unlock(&lb->temp_lock);
        if (!nv) {
                (void)unlinkat(dfd, nt.name, 0);
                close(fd);
                return -ENOMEM;
        }
        *ret_fd = fd;
        return 0;
}

/* Removes fd from the named temp list; copies its name into name (empty if unnamed). */
static void take_named(LocalBackend *lb, int fd, char name[64])
{
        name[0] = 0;
        pthread_mutex_lock(&lb->temp_lock);
        for (size_t i = 0; i < lb->n_temps; i++)
                if (lb->temps[i].fd == fd) {
                        memcpy(name, lb->temps[i].name, 64);
                        lb->temps[i] = lb->temps[--lb->n_temps];
                        break;
                }
        pthread_mutex_unlock(&lb->temp_lock);
}

static int local_temp_commit(HfBackend *b, HfFileType t, int fd, const char *name)
{
        LocalBackend *lb = (LocalBackend *)b;
        _cleanup_close_ int sub = -1;
        char path[128], named[64];
        int dfd = -1, target, r = 0;

        take_named(lb, fd, named);
        r = locate(lb, t, name, &dfd, path, sizeof(path));
        if (r >= 0 && fchmod(fd, 0400) < 0)
                r = -errno;
        if (r >= 0)
                r = hf_fsync_drop(fd);
        target = dfd;
        if (r >= 0 && t == HF_FILE_PACK) {
                sub = subdir_fd(dfd, name);
                if (sub < 0)
                        r = sub;
                target = sub;
        }
        if (r >= 0) {
                int k;
                if (named[0])
                        k = linkat(dfd, named, target, name, 0);
                else {
                        char proc[64];
                        (void)snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
                        k = linkat(AT_FDCWD, proc, target, name, AT_SYMLINK_FOLLOW);
                }
                /* The same bytes under the same name are already there: nothing to do. */
                if (k < 0 && errno != EEXIST)
                        r = -errno;
        }
        if (r >= 0)
                r = hf_fsync_dirfd(target);
        if (named[0])
                (void)unlinkat(dfd, named, 0);
        close(fd);
        return r;
}

static void local_temp_abort(HfBackend *b, HfFileType t, int fd)
{
        LocalBackend *lb = (LocalBackend *)b;
        char named[64];
        int dfd = type_dirfd(lb, t);

        take_named(lb, fd, named);
        if (named[0] && dfd >= 0)
                (void)unlinkat(dfd, named, 0);
        close(fd);
}

static void local_free(HfBackend *b)
{
        LocalBackend *lb = (LocalBackend *)b;

        for (int i = 0; i < _HF_FILE_TYPE_MAX; i++)
                if (lb->dirfds[i] >= 0)
                        close(lb->dirfds[i]);
        if (lb->rootfd >= 0)
                close(lb->rootfd);
        free(lb->temps);
        pthread_mutex_destroy(&lb->temp_lock);
        for (size_t i = 0; i < FD_CACHE_SIZE; i++)
                if (lb->fds[i].fd >= 0)
                        close(lb->fds[i].fd);
        pthread_mutex_destroy(&lb->fd_lock);
        free(lb->base.location);
        free(lb);
}

bool hf_backend_local_fs_type(unsigned long f_type)
{
        /* statfs(2) f_type values; those linux/magic.h lacks are written out. Left out on
         * purpose: overlayfs (its statfs does not say what its layers are on) and every
         * network, cluster and FUSE type. */
        static const unsigned long local[] = {
                EXT4_SUPER_MAGIC, /* ext2, ext3, ext4 */
                XFS_SUPER_MAGIC,   BTRFS_SUPER_MAGIC, TMPFS_MAGIC,
                RAMFS_MAGIC,       F2FS_SUPER_MAGIC,  REISERFS_SUPER_MAGIC,
                EXFAT_SUPER_MAGIC, MSDOS_SUPER_MAGIC, /* FAT */
                0x2FC12FC1,                           /* ZFS (OpenZFS) */
                0xCA451A4E,                           /* bcachefs */
                0x3153464A,                           /* JFS */
                0x7366746E,                           /* NTFS (ntfs3) */
        };

        for (size_t i = 0; i < ELEMENTSOF(local); i++)
                if ((f_type & 0xFFFFFFFFul) == local[i])
                        return true;
        return false;
}

/*
 * A link into a folder of a local filesystem is in the next readdir of any process: a lock
 * written and then listed for by two clients is seen by at least the later one. Network
 * filesystems cache folder listings (NFS for up to a minute), so they give no such promise.
 */
static bool local_lists_at_once(HfBackend *b, HfFileType t)
{
        LocalBackend *lb = (LocalBackend *)b;
        struct statfs sf;
        int fd = type_dirfd(lb, t);

        if (fd < 0 || fstatfs(fd, &sf) < 0)
                return false;
        return hf_backend_local_fs_type((unsigned long)sf.f_type);
}

static const HfBackendOps local_ops = {
        .create = local_create,
        .save = local_save,
        .load = local_load,
        .read_at = local_read_at,
        .prefetch = local_prefetch,
        .stat = local_stat,
        .remove = local_remove,
        .list = local_list,
        .free = local_free,
        .temp_open = local_temp_open,
        .temp_commit = local_temp_commit,
        .temp_abort = local_temp_abort,
        .lists_at_once = local_lists_at_once,
};

int hf_backend_local_open(const char *path, bool create, HfBackend **ret)
{
        LocalBackend *lb;
        int r;

        if (!path || !*path)
                return -EINVAL;
        /* init may point at a folder that does not exist yet; nothing else creates one. */
        if (create) {
                r = hf_mkdir_p(path, 0700);
                if (r < 0)
                        return r;
        }
        lb = calloc(1, sizeof(*lb));
        if (!lb)
                return -ENOMEM;
        for (int i = 0; i < _HF_FILE_TYPE_MAX; i++)
                lb->dirfds[i] = -1;
        pthread_mutex_init(&lb->temp_lock, NULL);
        pthread_mutex_init(&lb->fd_lock, NULL);
        for (size_t i = 0; i < FD_CACHE_SIZE; i++)
                lb->fds[i].fd = -1;
        lb->base.ops = &local_ops;
        lb->base.location = strdup(path);
        lb->rootfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (lb->rootfd < 0 || !lb->base.location) {
                r = lb->rootfd < 0 ? -errno : -ENOMEM;
                local_free(&lb->base);
                return r;
        }
        *ret = &lb->base;
        return 0;
}
