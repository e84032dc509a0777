/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Where vault files live. A backend stores opaque, write-once files by (type, name); it knows
 * nothing about encryption. Names are "config" for the config file and 64 hex characters for
 * every other type. Implementations: local directory, REST client, S3 client (this folder).
 *
 * Errors: -ENOENT for a missing file, -EEXIST when saving over an existing name (files are
 * never overwritten), -ENOSPC/-EDQUOT when storage is full, -EACCES when refused.
 */

#include "../base/buf.h"
#include "../base/macro.h"

typedef enum HfFileType {
        HF_FILE_CONFIG,
        HF_FILE_KEY,
        HF_FILE_SNAPSHOT,
        HF_FILE_INDEX,
        HF_FILE_LOCK,
        HF_FILE_PACK,
        _HF_FILE_TYPE_MAX,
} HfFileType;

/* "config", "keys", "snapshots", "index", "locks", "data": the folder names restic uses. */
const char *hf_file_type_dir(HfFileType t);
/* Singular names for messages: "config", "key", "snapshot", "index", "lock", "pack". */
const char *hf_file_type_name(HfFileType t);

typedef struct HfBackend HfBackend;

typedef int (*HfListFn)(void *userdata, const char *name, uint64_t size);

typedef struct HfBackendOps {
        /* Creates the layout for a new vault; -EEXIST when a config is already there. */
        int (*create)(HfBackend *b);
        /* Durable, atomic, exclusive create of (type, name). */
        int (*save)(HfBackend *b, HfFileType t, const char *name, const void *p, size_t n);
        /* Reads len bytes at off (len 0: to the end), appending to out. */
        int (*load)(HfBackend *b, HfFileType t, const char *name, uint64_t off, size_t len,
                    HfBuf *out);
        /* Reads exactly len bytes at off into p (hot path: no allocation). */
        int (*read_at)(HfBackend *b, HfFileType t, const char *name, uint64_t off, size_t len,
                       void *p);
        int (*stat)(HfBackend *b, HfFileType t, const char *name, uint64_t *ret_size);
        int (*remove)(HfBackend *b, HfFileType t, const char *name);
        /* Calls fn for every file of type t; a negative return from fn stops and is returned. */
        int (*list)(HfBackend *b, HfFileType t, HfListFn fn, void *userdata);
        void (*free)(HfBackend *b);
        /*
         * Optional: a file built in place whose name is known only when it is complete
         * (packs are named by their hash). temp_open gives a read-write fd; temp_commit makes
         * it durable and visible as (t, name) and closes it; temp_abort throws it away. When
         * NULL, a generic version keeps the temp file in $TMPDIR and calls save().
         */
        int (*temp_open)(HfBackend *b, HfFileType t, int *ret_fd);
        int (*temp_commit)(HfBackend *b, HfFileType t, int fd, const char *name);
        void (*temp_abort)(HfBackend *b, HfFileType t, int fd);
        /*
         * Optional (S3 with Object Lock): retention() is how long, in seconds, new objects
         * are kept from deletion and overwriting (0: not at all); retain() makes sure (t, name)
         * stays kept at least until the Unix time until, extending its retention if needed.
         */
        int64_t (*retention)(HfBackend *b);
        int (*retain)(HfBackend *b, HfFileType t, const char *name, int64_t until);
        /*
         * Optional: a hint that len bytes at off of (t, name) will be read soon; starts
         * reading them in the background and returns without waiting. Errors are ignored.
         */
        void (*prefetch)(HfBackend *b, HfFileType t, const char *name, uint64_t off, size_t len);
        /*
         * Optional: true when a file of type t, once saved, is in every client's next listing
         * of that type (a folder on a local filesystem). NULL or false: a listing may lag
         * behind a save (network filesystems, servers, object stores).
         */
        bool (*lists_at_once)(HfBackend *b, HfFileType t);
} HfBackendOps;

struct HfBackend {
        const HfBackendOps *ops;
        char *location; /* as the user gave it, for messages */
};

/*
 * Opens the backend a location names: a local path ("local:" prefix optional),
 * "rest:http(s)://..." or "s3:http(s)://host:port/bucket[/prefix]". With create, the location is made when missing (for init); otherwise
 * -ENOENT when it is not there.
 * -EPROTONOSUPPORT for a scheme this build does not know.
 */
int hf_backend_open(const char *location, bool create, HfBackend **ret);
HfBackend *hf_backend_free(HfBackend *b);
DEFINE_TRIVIAL_CLEANUP_FUNC(HfBackend *, hf_backend_free);

int hf_backend_local_open(const char *path, bool create, HfBackend **ret);
/*
 * Whether a filesystem type (statfs f_type) is one that keeps its namespace on this machine
 * (ext4, XFS, btrfs, tmpfs, ...): a file linked into a folder there is in the next listing of
 * every process. false for network and cluster filesystems, FUSE, and any type not known.
 */
bool hf_backend_local_fs_type(unsigned long f_type);
/*
 * REST client (rest.c): url is "http(s)://[user:pass@]host:port/path" (after "rest:").
 * The CA bundle for TLS comes from $HOLDFAST_CACERT (or $RESTIC_CACERT, or --cacert). Safe
 * to call from several threads at once. -EINVAL for a malformed URL.
 */
int hf_backend_rest_open(const char *url, bool create, HfBackend **ret);
/*
 * Parses a REST listing (attacker bytes from a server): v2 "[{"name":..,"size":..},...]" or
 * v1 "["name",...]" (fn gets size 0). Names that are not 64 lowercase hex are skipped;
 * -EPROTO for anything else malformed. A negative return of fn stops and is returned.
 */
int hf_rest_parse_list(const void *json, size_t n, bool v2, HfListFn fn, void *userdata);

/* Object Lock asked for by "holdfast init --object-lock DAYS [--lock-mode MODE]". */
typedef struct HfBackendS3Lock {
        uint32_t days;   /* the bucket's default retention, 1..36500 */
        bool governance; /* GOVERNANCE instead of COMPLIANCE */
} HfBackendS3Lock;

/*
 * S3 client (s3.c): url is "http(s)://host[:port]/bucket[/prefix]" or "host/bucket[/prefix]"
 * (HTTPS), after "s3:". Credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
 * AWS_SESSION_TOKEN, the region from AWS_DEFAULT_REGION (default us-east-1), the CA bundle
 * from HOLDFAST_CACERT. Reads the bucket's Object Lock configuration; with create, makes the
 * bucket when it is missing (with Object Lock when lock is given) and, with lock, sets its
 * default retention. Problems a user must act on (credentials, clock skew, missing bucket,
 * bucket without Object Lock, server unreachable) are logged here in one sentence: -EACCES,
 * -ETIME, -ENXIO, -EOPNOTSUPP, -ECONNREFUSED. Safe to use from several threads at once.
 */
int hf_backend_s3_open(const char *url, bool create, const HfBackendS3Lock *lock, HfBackend **ret);
/* Another backend on the same bucket and connections, at PREFIX/sub/ (holdfast serve). */
int hf_backend_s3_sub(HfBackend *b, const char *sub, HfBackend **ret);
bool hf_backend_is_s3(const HfBackend *b);

typedef struct HfBackendS3Info {
        const char *bucket, *endpoint; /* owned by the backend */
        bool lock_enabled;             /* the bucket has Object Lock */
        bool governance;               /* written objects get GOVERNANCE, else COMPLIANCE */
        uint32_t default_days;         /* the bucket's default retention, 0 when none */
        int64_t retention_seconds;     /* what written objects get, 0 when none */
} HfBackendS3Info;
int hf_backend_s3_info(HfBackend *b, HfBackendS3Info *ret);

/* Streaming creation (see temp_open above); these fall back to a generic version. */
int hf_backend_temp_open(HfBackend *b, HfFileType t, int *ret_fd);
int hf_backend_temp_commit(HfBackend *b, HfFileType t, int fd, const char *name);
void hf_backend_temp_abort(HfBackend *b, HfFileType t, int fd);

static inline int hf_backend_save(HfBackend *b, HfFileType t, const char *name, const void *p,
                                  size_t n)
{
        return b->ops->save(b, t, name, p, n);
}
static inline int hf_backend_load(HfBackend *b, HfFileType t, const char *name, uint64_t off,
                                  size_t len, HfBuf *out)
{
        return b->ops->load(b, t, name, off, len, out);
}
static inline int hf_backend_read_at(HfBackend *b, HfFileType t, const char *name, uint64_t off,
                                     size_t len, void *p)
{
        return b->ops->read_at(b, t, name, off, len, p);
}
static inline void hf_backend_prefetch(HfBackend *b, HfFileType t, const char *name, uint64_t off,
                                       size_t len)
{
        if (b->ops->prefetch)
                b->ops->prefetch(b, t, name, off, len);
}
static inline bool hf_backend_lists_at_once(HfBackend *b, HfFileType t)
{
        return b->ops->lists_at_once && b->ops->lists_at_once(b, t);
}
static inline int hf_backend_stat(HfBackend *b, HfFileType t, const char *name, uint64_t *ret_size)
{
        return b->ops->stat(b, t, name, ret_size);
}
static inline int hf_backend_remove(HfBackend *b, HfFileType t, const char *name)
{
        return b->ops->remove(b, t, name);
}
static inline int hf_backend_list(HfBackend *b, HfFileType t, HfListFn fn, void *userdata)
{
        return b->ops->list(b, t, fn, userdata);
}
/* Seconds new objects are kept from deletion (Object Lock); 0 for backends without. */
static inline int64_t hf_backend_retention(HfBackend *b)
{
        return b->ops->retention ? b->ops->retention(b) : 0;
}
/* Keeps (t, name) at least until the Unix time until; 0 for backends without retention. */
static inline int hf_backend_retain(HfBackend *b, HfFileType t, const char *name, int64_t until)
{
        return b->ops->retain ? b->ops->retain(b, t, name, until) : 0;
}
