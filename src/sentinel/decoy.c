/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Decoy files: planted by the sentinel in each protected tree (its root and first-level
 * folders), named so that a walk in name order meets them early, with content that looks like
 * a document worth encrypting. Nobody has a reason to write, rename or delete one, so any such
 * access is an immediate verdict; a write is even denied before it happens (guard.c). Reading
 * them (backups, grep, find) is fine.
 */
#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "../base/log.h"
#include "../base/util.h"
#include "../crypto/crypto.h"
#include "sentinel-internal.h"

#define DECOY_PREFIX "!0-holdfast-"

bool hf_decoy_name(const char *name)
{
        return strncmp(name, DECOY_PREFIX, strlen(DECOY_PREFIX)) == 0;
}

static int plant_one(const char *dir, void (*add)(void *, uint64_t, uint64_t, const char *),
                     void *ud)
{
        _cleanup_(closedirp_) DIR *d = opendir(dir);
        char path[HF_PATH_MAX];
        struct stat st;

        if (!d)
                return -errno;
        /* Reuse the decoy already there (state survives restarts). */
        struct dirent *de;
        while ((de = readdir(d))) {
                if (!hf_decoy_name(de->d_name))
                        continue;
                (void)snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
                if (lstat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                        add(ud, st.st_dev, st.st_ino, path);
                        return 0;
                }
        }
        static const char *const names[] = { "accounts.xlsx", "invoices.docx", "passwords.kdbx",
                                             "backup-keys.pdf" };
        uint8_t rnd[4];
        hf_random_bytes(rnd, sizeof(rnd));
        (void)snprintf(path, sizeof(path), "%s/" DECOY_PREFIX "%s", strcmp(dir, "/") ? dir : "",
                       names[rnd[0] % ELEMENTSOF(names)]);
        _cleanup_close_ int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW,
                                      0644);
        if (fd < 0)
                return -errno;
        /* A plausible document: a zip header and text. */
        static const char body[] =
                "PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00 Quarterly figures, contracts "
                "and account numbers. Confidential. Do not distribute.\n";
        for (int i = 0; i < 64; i++)
                if (hf_write_all(fd, body, sizeof(body) - 1) < 0)
                        return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        add(ud, st.st_dev, st.st_ino, path);
        return 0;
}

int hf_decoys_plant(const char *root, unsigned max, bool into_mounts,
                    void (*add)(void *ud, uint64_t dev, uint64_t ino, const char *path), void *ud)
{
        unsigned n = 0;
        int r = plant_one(root, add, ud);

        if (r < 0)
                return log_warning_errno(r, "%s: cannot plant a decoy: %m", root);
        n++;
        _cleanup_(closedirp_) DIR *d = opendir(root);
        struct statx top = { 0 };
        if (!d || statx(dirfd(d), "", AT_EMPTY_PATH, STATX_TYPE, &top) < 0)
                return (int)n;
        struct dirent *de;
        while ((de = readdir(d)) && n < max) {
                char path[HF_PATH_MAX];
                struct statx sx;
                if (de->d_name[0] == '.')
                        continue;
                (void)snprintf(path, sizeof(path), "%s/%s", strcmp(root, "/") ? root : "",
                               de->d_name);
                /* From the kernel's cache: a mount point's own filesystem is not asked. */
                if (hf_statx_cached(path, &sx) < 0 || !S_ISDIR(sx.stx_mode))
                        continue;
                /* Another filesystem, or a mount root (Linux 5.8 says which). */
                if (!into_mounts && ((sx.stx_attributes & STATX_ATTR_MOUNT_ROOT) ||
                                     sx.stx_dev_major != top.stx_dev_major ||
                                     sx.stx_dev_minor != top.stx_dev_minor))
                        continue;
                if (plant_one(path, add, ud) == 0)
                        n++;
        }
        return (int)n;
}
