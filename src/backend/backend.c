/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "backend.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "../base/util.h"

static const char *const type_dirs[_HF_FILE_TYPE_MAX] = {
        [HF_FILE_CONFIG] = "config", [HF_FILE_KEY] = "keys",   [HF_FILE_SNAPSHOT] = "snapshots",
        [HF_FILE_INDEX] = "index",   [HF_FILE_LOCK] = "locks", [HF_FILE_PACK] = "data",
};

static const char *const type_names[_HF_FILE_TYPE_MAX] = {
        [HF_FILE_CONFIG] = "config", [HF_FILE_KEY] = "key",   [HF_FILE_SNAPSHOT] = "snapshot",
        [HF_FILE_INDEX] = "index",   [HF_FILE_LOCK] = "lock", [HF_FILE_PACK] = "pack",
};

const char *hf_file_type_dir(HfFileType t)
{
        return t < _HF_FILE_TYPE_MAX ? type_dirs[t] : "?";
}

const char *hf_file_type_name(HfFileType t)
{
        return t < _HF_FILE_TYPE_MAX ? type_names[t] : "?";
}

int hf_backend_open(const char *location, bool create, HfBackend **ret)
{
        if (!location || !*location)
                return -EINVAL;
        if (strncmp(location, "local:", 6) == 0)
                return hf_backend_local_open(location + 6, create, ret);
        if (strncmp(location, "rest:", 5) == 0)
                return hf_backend_rest_open(location + 5, create, ret);
        if (strncmp(location, "s3:", 3) == 0)
                return hf_backend_s3_open(location + 3, create, NULL, ret);
        if (strncmp(location, "sftp:", 5) == 0 || strncmp(location, "rclone:", 7) == 0 ||
            strncmp(location, "b2:", 3) == 0 || strncmp(location, "azure:", 6) == 0 ||
            strncmp(location, "gs:", 3) == 0 || strncmp(location, "swift:", 6) == 0)
                return -EPROTONOSUPPORT;
        return hf_backend_local_open(location, create, ret);
}

HfBackend *hf_backend_free(HfBackend *b)
{
        if (b)
                b->ops->free(b);
        return NULL;
}

/* The generic temp file: unnamed (O_TMPFILE) in $TMPDIR, so nothing is left behind. */
static int generic_temp_open(int *ret_fd)
{
        const char *dir = getenv("TMPDIR");
        int fd;

        if (!dir || !*dir)
                dir = "/var/tmp";
        fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        *ret_fd = fd;
        return 0;
}

int hf_backend_temp_open(HfBackend *b, HfFileType t, int *ret_fd)
{
        if (b->ops->temp_open)
                return b->ops->temp_open(b, t, ret_fd);
        return generic_temp_open(ret_fd);
}

int hf_backend_temp_commit(HfBackend *b, HfFileType t, int fd, const char *name)
{
        HfBuf data = HF_BUF_INIT((size_t)1 << 31);
        int r;

        if (b->ops->temp_commit)
                return b->ops->temp_commit(b, t, fd, name);
        r = lseek(fd, 0, SEEK_SET) < 0 ? -errno : 0;
        if (r >= 0)
                r = hf_read_fd(fd, (size_t)1 << 31, &data);
        if (r >= 0)
                r = hf_backend_save(b, t, name, data.data, data.len);
        hf_buf_free(&data);
        close(fd);
        return r;
}

void hf_backend_temp_abort(HfBackend *b, HfFileType t, int fd)
{
        if (fd < 0)
                return;
        if (b->ops->temp_abort)
                b->ops->temp_abort(b, t, fd);
        else
                close(fd);
}
