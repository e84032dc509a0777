/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Local directory backend in restic's layout: config, keys/, snapshots/, index/, locks/ and
 * data/xx/ (256 fan-out folders). Files are written to a temp name, fsynced, linked into place
 * (never replacing an existing name), the folder fsynced, and made read-only (0400).
 */
#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "../base/log.h"
#include "../base/util.h"
#include "backend.h"

typedef struct LocalBackend {
        HfBackend base;
        int rootfd;
        int dirfds[_HF_FILE_TYPE_MAX];
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
        if (t == HF_FILE_CONFIG)
                return lb->rootfd;
        if (lb->dirfds[t] < 0) {
                int fd = openat(lb->rootfd, hf_file_type_dir(t),
                                O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (fd < 0)
                        return -errno;
                lb->dirfds[t] = fd;
        }
        return lb->dirfds[t];
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

static int local_read_at(HfBackend *b, HfFileType t, const char *name, uint64_t off, size_t len,
                         void *p)
{
        _cleanup_close_ int fd = local_open((LocalBackend *)b, t, name);
        if (fd < 0)
                return fd;
        return hf_pread_all(fd, p, len, off);
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

static void local_free(HfBackend *b)
{
        LocalBackend *lb = (LocalBackend *)b;

        for (int i = 0; i < _HF_FILE_TYPE_MAX; i++)
                if (lb->dirfds[i] >= 0)
                        close(lb->dirfds[i]);
        if (lb->rootfd >= 0)
                close(lb->rootfd);
        free(lb->base.location);
        free(lb);
}

static const HfBackendOps local_ops = {
        .create = local_create,
        .save = local_save,
        .load = local_load,
        .read_at = local_read_at,
        .stat = local_stat,
        .remove = local_remove,
        .list = local_list,
        .free = local_free,
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
