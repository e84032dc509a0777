/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "buf.h"
#include "macro.h"

/* A 32-byte object or blob ID (SHA-256). */
typedef struct HfId {
        uint8_t b[32];
} HfId;

#define HF_ID_HEX_LEN 64

/* Writes 64 hex characters and a NUL into out. */
void hf_id_hex(const HfId *id, char out[HF_ID_HEX_LEN + 1]);
/* Parses exactly 64 hex characters (either case). -EINVAL otherwise. */
int hf_id_parse(const char *s, size_t n, HfId *ret);
bool hf_id_is_zero(const HfId *id);
static inline int hf_id_cmp(const HfId *a, const HfId *b)
{
        return memcmp(a->b, b->b, sizeof(a->b));
}
static inline bool hf_id_eq(const HfId *a, const HfId *b)
{
        return memcmp(a->b, b->b, sizeof(a->b)) == 0;
}
/* First 8 bytes as an integer; IDs are uniform so this is a fine hash. */
static inline uint64_t hf_id_hash(const HfId *id)
{
        uint64_t h;
        memcpy(&h, id->b, sizeof(h));
        return h;
}

/* Lowercase hex of n bytes into out (2n+1 bytes with the NUL). */
void hf_hex_encode(const void *in, size_t n, char *out);
/* The value of a hex digit (either case), -1 for any other byte. */
int hf_hex_digit(int c);
/* Decodes 2n hex characters into n bytes. -EINVAL on odd length or a non-hex character (out
 * then holds garbage). */
int hf_hex_decode(const char *s, size_t slen, uint8_t *out, size_t outmax, size_t *ret_n);

/* Standard base64 with padding (RFC 4648 §4). */
int hf_base64_encode(HfBuf *out, const void *in, size_t n);
/* Strict decoding; -EINVAL on a bad character or bad padding. Appends to out. */
int hf_base64_decode(HfBuf *out, const char *s, size_t n);

/* Reads the whole of fd (from its current position) into out; -E2BIG beyond max bytes. */
int hf_read_fd(int fd, size_t max, HfBuf *out);
/* Reads a whole file relative to dirfd (AT_FDCWD for the cwd). */
int hf_read_file_at(int dirfd, const char *path, size_t max, HfBuf *out);
/* Writes all n bytes, retrying on short writes and EINTR. */
int hf_write_all(int fd, const void *p, size_t n);
int hf_pread_all(int fd, void *p, size_t n, uint64_t off);
/* Is the byte at off of fd in the page cache? Asked with cachestat(2) (Linux 6.5), which
 * leaves the cache as it is; before that with a one-byte RWF_NOWAIT read, which never waits
 * for the disk but may start a read-ahead; false where neither works (Linux before 4.14). */
bool hf_page_cached(int fd, uint64_t off);
/* The mount point of the filesystem holding path, or its nearest existing ancestor: the
 * longest mount point of /proc/self/mounts (its escapes undone) above it in the same mount
 * (statx's mount ID; the same device where the kernel gives none). */
int hf_mount_root(const char *path, char *out, size_t n);
/* The name of the filesystems holdfast tells apart, by statfs(2)'s f_type ("ext4", "xfs",
 * "btrfs", "tmpfs", "overlay", "nfs"); NULL for any other. */
const char *hf_fs_type_name(unsigned long f_type);

/* statx of path (not followed if a symlink or an automount point) from what the kernel has
 * cached: a filesystem that no longer answers (a dead NFS server, a stopped FUSE daemon) is not
 * asked. Type, inode, device and attributes (STATX_ATTR_MOUNT_ROOT from Linux 5.8). */
int hf_statx_cached(const char *path, struct statx *ret);

/* A mount as /proc/self/mountinfo gives it, read without touching the filesystem. */
typedef struct HfMountEntry {
        uint64_t id;      /* the mount ID (statx's stx_mnt_id); reused after an unmount */
        dev_t dev;        /* the superblock's device: a btrfs subvolume's files stat otherwise */
        const char *path; /* the mount point */
        const char *type; /* the filesystem type */
} HfMountEntry;

/* Calls cb(ud, mount) for every mount point of /proc/self/mountinfo strictly below path (a
 * canonical path; every other one when path is "/"), in the order mounted; stops at cb's first
 * negative return, which it returns. */
int hf_mounts_below(const char *path, int (*cb)(void *ud, const HfMountEntry *m), void *ud);
/* The source (a device, for a disk filesystem) of the mount on mount point mnt, as
 * /proc/self/mounts gives it. -ENOENT when nothing is mounted there. */
int hf_mount_source(const char *mnt, char *out, size_t n);
/* statx's mount ID of path (fd and path as for openat), or of fd itself when path is NULL; 0
 * where the kernel gives none (before Linux 5.8) or statx fails. */
uint64_t hf_mount_id(int fd, const char *path);
/* A new open file description of what fd has open (a deleted file too), via /proc/self/fd;
 * O_CLOEXEC is added. Returns the fd or -errno. */
int hf_fd_reopen(int fd, int flags);
/* pwrite() of all n bytes at off, retrying short writes and EINTR. */
int hf_write_all_at(int fd, const void *p, size_t n, uint64_t off);
/* Room for element n (0-based) of an array of size-byte elements at *v, of capacity *cap:
 * grows it by half (at least 64) when full. 0, or -ENOMEM with *v and *cap unchanged. */
int hf_reserve(void **v, size_t *cap, size_t n, size_t size);
/*
 * Durable atomic creation of dirfd/name: write a temp file in the same folder, fsync, rename
 * over name, fsync the folder, then chmod to mode. With exclusive set, an existing name is
 * never replaced (-EEXIST), which is what write-once vault files need.
 */
int hf_write_file_atomic_at(int dirfd, const char *name, const void *p, size_t n, mode_t mode,
                            bool exclusive);
int hf_fsync_dirfd(int dirfd);
/*
 * fsync(fd), then drop the file's pages from the page cache. For vault files (packs), which
 * are written once and read rarely: keeping them would push the service's own data out of
 * memory.
 */
int hf_fsync_drop(int fd);
/* Copies up to len bytes at off of in to at of out (copy_file_range, else read and write),
 * short at in's end. *ret_copied (may be NULL): how many. */
int hf_copy_span(int in, uint64_t off, uint64_t len, int out, uint64_t at, uint64_t *ret_copied);
/* The same with pread and pwrite only, handing each block copied to each (may be NULL). */
int hf_copy_rw(int in, uint64_t off, uint64_t len, int out, uint64_t at,
               void (*each)(void *userdata, const uint8_t *p, size_t n), void *userdata,
               uint64_t *ret_copied);
/* mkdir -p with mode for the created components. */
int hf_mkdir_p(const char *path, mode_t mode);

/* Copies src into dst (n > 0 bytes), cut to n - 1 bytes when longer; false when it was cut. */
bool hf_copy_str(char *dst, size_t n, const char *src);

/* Strict unsigned integer parsing: the whole string, decimal, no sign, no overflow. */
int hf_parse_u64(const char *s, uint64_t *ret);
/* Sizes like "16M", "1.5G", "4096" (binary units). */
int hf_parse_size(const char *s, uint64_t *ret);

/* Human-readable sizes ("1.5 MiB") and durations ("1m02s") into a caller buffer. */
const char *hf_format_bytes(char *buf, size_t n, uint64_t bytes);
const char *hf_format_duration(char *buf, size_t n, double seconds);

double hf_now_mono(void);
int hf_ncpus(void);

/*
 * Asks the kernel to back the 2 MiB-aligned part of [p, p + n) with huge pages where it can
 * (transparent huge pages in "madvise" mode): one page fault per 2 MiB instead of one per
 * 4 KiB the first time the memory is touched. For large memory written once and read soon
 * (index tables, decoded index files, the key derivation's scratch). Does nothing for less
 * than HF_HUGE_HINT_MIN bytes, or where the kernel cannot.
 */
#define HF_HUGE_HINT_MIN (4u << 20)
void hf_mem_hint_huge(void *p, size_t n);
/* n bytes (not zeroed) on a 2 MiB boundary, hinted as above, so that all of them can be huge
 * pages, not only an aligned middle; free() them. NULL when out of memory. */
void *hf_alloc_huge(size_t n);

/* True when s (length n) is valid UTF-8 with no surrogates and no overlong forms. */
bool hf_utf8_valid(const char *s, size_t n);
/*
 * Decodes one UTF-8 sequence at s (n bytes available). Returns its length and stores the code
 * point, or returns 1 with *ret_cp = -1 for an invalid byte (Go's RuneError semantics).
 */
size_t hf_utf8_decode(const uint8_t *s, size_t n, int32_t *ret_cp);
