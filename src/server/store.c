/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Objects on disk in the local backend's layout (config, keys/, snapshots/, index/, locks/,
 * data/xx/), so `holdfast -r ROOT/repo` and restic open a served vault directly. Walking
 * helpers for adoption and verification.
 */
#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "../base/log.h"
#include "../crypto/crypto.h"
#include "internal.h"

int hf_store_object_path(const char *repo, HfFileType t, const char *name, char *buf, size_t n)
{
        const char *pre = *repo ? repo : ".";
        int k;

        if (t == HF_FILE_CONFIG)
                k = snprintf(buf, n, "%s/config", pre);
        else if (t == HF_FILE_PACK)
                k = snprintf(buf, n, "%s/data/%.2s/%s", pre, name, name);
        else
                k = snprintf(buf, n, "%s/%s/%s", pre, hf_file_type_dir(t), name);
        return k < 0 || (size_t)k >= n ? -ENAMETOOLONG : 0;
}

static bool id_name(const char *s)
{
        size_t n = strlen(s);

        if (n != HF_ID_HEX_LEN)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

static bool is_repo(int dfd)
{
        struct stat st;

        return fstatat(dfd, "config", &st, AT_SYMLINK_NOFOLLOW) == 0 ||
               (fstatat(dfd, "keys", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode));
}

static bool reserved_name(const char *s)
{
        for (HfFileType t = HF_FILE_KEY; t < _HF_FILE_TYPE_MAX; t++)
                if (strcmp(s, hf_file_type_dir(t)) == 0)
                        return true;
        return strcmp(s, "config") == 0 || strcmp(s, "metrics") == 0;
}

static int walk(int rootfd, char *path, size_t len, unsigned depth, HfRepoFn fn, void *userdata)
{
        int dfd = openat(rootfd, len ? path : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d;
        int r = 0;

        if (dfd < 0)
                return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
        if (is_repo(dfd)) {
                r = fn(userdata, path);
                if (r < 0) {
                        close(dfd);
                        return r;
                }
        }
        if (depth == HF_REPO_DEPTH_MAX) {
                close(dfd);
                return 0;
        }
        d = fdopendir(dfd);
        if (!d) {
                r = -errno;
                close(dfd);
                return r;
        }
        for (;;) {
                struct dirent *de;
                size_t l;

                errno = 0;
                de = readdir(d);
                if (!de)
                        break;
                l = strlen(de->d_name);
                if (de->d_name[0] == '.' || de->d_name[0] == '-' || reserved_name(de->d_name) ||
                    l > HF_SEGMENT_MAX || len + 1 + l + 1 > HF_REPO_PATH_MAX)
                        continue;
                if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
                        continue;
                {
                        char p[HF_URL_MAX];
                        HfRequestPath rp;
                        int k = snprintf(p, sizeof(p), "/%s%s%s/", path, len ? "/" : "",
                                         de->d_name);
                        /* Only names a request could reach are repositories. */
                        if (k < 0 || (size_t)k >= sizeof(p) ||
                            hf_server_parse_path(p, (size_t)k, &rp) < 0 || rp.kind != HF_PATH_REPO)
                                continue;
                }
                if (len)
                        path[len] = '/';
                memcpy(path + len + (len ? 1 : 0), de->d_name, l + 1);
                r = walk(rootfd, path, len + (len ? 1 : 0) + l, depth + 1, fn, userdata);
                path[len] = 0;
                if (r < 0)
                        break;
        }
        closedir(d);
        return r;
}

int hf_store_walk_repos(int rootfd, HfRepoFn fn, void *userdata)
{
        char path[HF_REPO_PATH_MAX] = "";

        return walk(rootfd, path, 0, 0, fn, userdata);
}

static int walk_dir(int rootfd, const char *rel, const char *repo, HfFileType t, HfObjectFn fn,
                    void *userdata)
{
        int fd = openat(rootfd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        DIR *d;
        int r = 0;

        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        d = fdopendir(fd);
        if (!d) {
                close(fd);
                return -errno;
        }
        for (;;) {
                struct dirent *de;
                struct stat st;

                de = readdir(d);
                if (!de)
                        break;
                if (!id_name(de->d_name))
                        continue;
                if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                        continue;
                r = fn(userdata, repo, t, de->d_name, fd, (uint64_t)st.st_size);
                if (r < 0)
                        break;
        }
        closedir(d);
        return r;
}

int hf_store_walk_type(int rootfd, const char *repo, HfFileType t, HfObjectFn fn, void *userdata)
{
        const char *pre = *repo ? repo : ".";
        char rel[HF_REPO_PATH_MAX + 32];
        struct stat st;
        int r;

        if (t == HF_FILE_CONFIG) {
                (void)snprintf(rel, sizeof(rel), "%s/config", pre);
                if (fstatat(rootfd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                        return 0;
                _cleanup_close_ int dfd = openat(rootfd, pre, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (dfd < 0)
                        return -errno;
                return fn(userdata, repo, HF_FILE_CONFIG, "config", dfd, (uint64_t)st.st_size);
        }
        if (t == HF_FILE_PACK) {
                for (int i = 0; i < 256; i++) {
                        (void)snprintf(rel, sizeof(rel), "%s/data/%02x", pre, i);
                        r = walk_dir(rootfd, rel, repo, t, fn, userdata);
                        if (r < 0)
                                return r;
                }
                return 0;
        }
        (void)snprintf(rel, sizeof(rel), "%s/%s", pre, hf_file_type_dir(t));
        return walk_dir(rootfd, rel, repo, t, fn, userdata);
}

int hf_store_walk_objects(int rootfd, const char *repo, HfObjectFn fn, void *userdata)
{
        for (HfFileType t = 0; t < _HF_FILE_TYPE_MAX; t++) {
                int r = hf_store_walk_type(rootfd, repo, t, fn, userdata);
                if (r < 0)
                        return r;
        }
        return 0;
}

int hf_store_hash_fd(int fd, HfId *ret, uint64_t *ret_size)
{
        _cleanup_(hf_sha256_freep) HfSha256 *h = NULL;
        _cleanup_free_ uint8_t *buf = malloc(1 << 20);
        uint64_t total = 0;
        int r;

        if (!buf)
                return -ENOMEM;
        r = hf_sha256_new(&h);
        if (r < 0)
                return r;
        for (;;) {
                ssize_t n = read(fd, buf, 1 << 20);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                hf_sha256_update(h, buf, (size_t)n);
                total += (uint64_t)n;
        }
        hf_sha256_final(h, ret);
        if (ret_size)
                *ret_size = total;
        return 0;
}

static void clean_dir(int rootfd, const char *rel)
{
        int fd = openat(rootfd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        DIR *d;

        if (fd < 0)
                return;
        d = fdopendir(fd);
        if (!d) {
                close(fd);
                return;
        }
        for (struct dirent *de; (de = readdir(d));)
                if (strncmp(de->d_name, ".hf-upload-", 11) == 0)
                        (void)unlinkat(fd, de->d_name, 0);
        closedir(d);
}

void hf_store_clean_temps(int rootfd, const char *repo)
{
        const char *pre = *repo ? repo : ".";
        char rel[HF_REPO_PATH_MAX + 32];

        clean_dir(rootfd, pre);
        for (HfFileType t = HF_FILE_KEY; t < _HF_FILE_TYPE_MAX; t++) {
                if (t == HF_FILE_PACK) {
                        for (int i = 0; i < 256; i++) {
                                (void)snprintf(rel, sizeof(rel), "%s/data/%02x", pre, i);
                                clean_dir(rootfd, rel);
                        }
                        continue;
                }
                (void)snprintf(rel, sizeof(rel), "%s/%s", pre, hf_file_type_dir(t));
                clean_dir(rootfd, rel);
        }
}
