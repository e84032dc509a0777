/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "backend.h"

#include <string.h>

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
        if (strncmp(location, "rest:", 5) == 0 || strncmp(location, "s3:", 3) == 0 ||
            strncmp(location, "sftp:", 5) == 0 || strncmp(location, "rclone:", 7) == 0 ||
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
