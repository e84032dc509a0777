/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "util.h"

#include <fcntl.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include "log.h"

static const char hexdigits[] = "0123456789abcdef";

void hf_hex_encode(const void *in, size_t n, char *out)
{
        const uint8_t *p = in;

        for (size_t i = 0; i < n; i++) {
                out[2 * i] = hexdigits[p[i] >> 4];
                out[2 * i + 1] = hexdigits[p[i] & 15];
        }
        out[2 * n] = 0;
}

/* Hex digit values plus one, 0 for anything else (IDs are decoded by the hundred thousand). */
static const uint8_t unhex_table[256] = {
        ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,
        ['6'] = 7,  ['7'] = 8,  ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12,
        ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16, ['A'] = 11, ['B'] = 12,
        ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
};

int hf_hex_digit(int c)
{
        /* Stored off by one so that the zero-initialised rest means "not hex". */
        return (int)unhex_table[(uint8_t)c] - 1;
}

int hf_hex_decode(const char *s, size_t slen, uint8_t *out, size_t outmax, size_t *ret_n)
{
        unsigned bad = 0;

        if (slen % 2 || slen / 2 > outmax)
                return -EINVAL;
        /* No branch per digit: a bad one is noted and the whole input refused at the end. */
        for (size_t i = 0; i < slen / 2; i++) {
                unsigned hi = unhex_table[(uint8_t)s[2 * i]],
                         lo = unhex_table[(uint8_t)s[2 * i + 1]];
                bad |= (unsigned)(hi == 0) | (unsigned)(lo == 0);
                out[i] = (uint8_t)((hi - 1) << 4 | (lo - 1));
        }
        if (bad)
                return -EINVAL;
        if (ret_n)
                *ret_n = slen / 2;
        return 0;
}

void hf_id_hex(const HfId *id, char out[HF_ID_HEX_LEN + 1])
{
        hf_hex_encode(id->b, sizeof(id->b), out);
}

int hf_id_parse(const char *s, size_t n, HfId *ret)
{
        HfId id;

        if (n != HF_ID_HEX_LEN)
                return -EINVAL;
        if (hf_hex_decode(s, n, id.b, sizeof(id.b), NULL) < 0)
                return -EINVAL;
        *ret = id;
        return 0;
}

bool hf_id_is_zero(const HfId *id)
{
        for (size_t i = 0; i < sizeof(id->b); i++)
                if (id->b[i])
                        return false;
        return true;
}

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int hf_base64_encode(HfBuf *out, const void *in, size_t n)
{
        const uint8_t *p = in;
        size_t olen = (n + 2) / 3 * 4;
        char *o;
        int r;

        r = hf_buf_reserve(out, olen);
        if (r < 0)
                return r;
        o = (char *)out->data + out->len;
        for (size_t i = 0; i < n; i += 3) {
                uint32_t v = (uint32_t)p[i] << 16;
                if (i + 1 < n)
                        v |= (uint32_t)p[i + 1] << 8;
                if (i + 2 < n)
                        v |= p[i + 2];
                *o++ = b64chars[(v >> 18) & 63];
                *o++ = b64chars[(v >> 12) & 63];
                *o++ = i + 1 < n ? b64chars[(v >> 6) & 63] : '=';
                *o++ = i + 2 < n ? b64chars[v & 63] : '=';
        }
        out->len += olen;
        out->data[out->len] = 0;
        return 0;
}

static int b64val(char c)
{
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == '/')
                return 63;
        return -1;
}

int hf_base64_decode(HfBuf *out, const char *s, size_t n)
{
        size_t start = out->len;
        int r;

        if (n % 4)
                return -EINVAL;
        r = hf_buf_reserve(out, n / 4 * 3);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i += 4) {
                int v[4], pad = 0;
                for (int j = 0; j < 4; j++) {
                        if (s[i + j] == '=' && i + 4 == n && j >= 2) {
                                v[j] = 0;
                                pad++;
                                continue;
                        }
                        if (pad)
                                goto bad;
                        v[j] = b64val(s[i + j]);
                        if (v[j] < 0)
                                goto bad;
                }
                uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
                             (uint32_t)v[3];
                /* Reject non-canonical encodings: unused bits must be zero. */
                if ((pad == 1 && (w & 0xff)) || (pad == 2 && (w & 0xffff)))
                        goto bad;
                out->data[out->len++] = (uint8_t)(w >> 16);
                if (pad < 2)
                        out->data[out->len++] = (uint8_t)(w >> 8);
                if (pad < 1)
                        out->data[out->len++] = (uint8_t)w;
        }
        out->data[out->len] = 0;
        return 0;
bad:
        out->len = start;
        out->data[out->len] = 0;
        return -EINVAL;
}

int hf_read_fd(int fd, size_t max, HfBuf *out)
{
        struct stat st;
        size_t hint = 65536, start = out->len;
        int r;

        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
                hint = (size_t)st.st_size + 1;
        for (;;) {
                /* max counts the bytes read from fd, whatever out held before. */
                size_t left = max - (out->len - start), room;
                ssize_t n;

                if (left == 0) {
                        /* At the ceiling: one more byte means too big. */
                        uint8_t c;
                        n = read(fd, &c, 1);
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n < 0)
                                return -errno;
                        return n == 0 ? 0 : -E2BIG;
                }
                r = hf_buf_reserve(out, MIN(hint, left));
                if (r < 0)
                        return r;
                /* The buffer may have grown past left; never read beyond the ceiling. */
                room = MIN(out->cap - out->len - 1, left);
                n = read(fd, out->data + out->len, room);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                out->len += (size_t)n;
                out->data[out->len] = 0;
                hint = 65536;
        }
        return 0;
}

int hf_read_file_at(int dirfd, const char *path, size_t max, HfBuf *out)
{
        _cleanup_close_ int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        return hf_read_fd(fd, max, out);
}

int hf_write_all(int fd, const void *p, size_t n)
{
        const uint8_t *q = p;

        while (n > 0) {
                ssize_t k = write(fd, q, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        return -EIO;
                q += k;
                n -= (size_t)k;
        }
        return 0;
}

int hf_pread_all(int fd, void *p, size_t n, uint64_t off)
{
        uint8_t *q = p;

        while (n > 0) {
                ssize_t k = pread(fd, q, n, (off_t)off);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        return -ENODATA; /* file shorter than expected */
                q += k;
                n -= (size_t)k;
                off += (uint64_t)k;
        }
        return 0;
}

#ifndef __NR_cachestat
#define __NR_cachestat 451 /* the same number on every architecture */
#endif

/* cachestat(2)'s arguments (Linux 6.5, uapi linux/mman.h; older headers lack them). */
struct hf_cachestat_range {
        uint64_t off, len;
};
struct hf_cachestat {
        uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};

bool hf_page_cached(int fd, uint64_t off)
{
        static atomic_bool no_cachestat;
        struct hf_cachestat_range range = { .off = off, .len = 1 };
        struct hf_cachestat cs;
        uint8_t b;
        struct iovec v = { .iov_base = &b, .iov_len = 1 };

        if (!atomic_load_explicit(&no_cachestat, memory_order_relaxed)) {
                if (syscall(__NR_cachestat, fd, &range, &cs, 0) == 0)
                        return cs.nr_cache > 0;
                if (errno != ENOSYS && errno != EPERM)
                        return false; /* EBADF, or a file that is not in the page cache's care */
                atomic_store_explicit(&no_cachestat, true, memory_order_relaxed);
        }
        /* Before Linux 6.5. This read may itself start reading ahead, and answer yes when the
         * disk was quick. */
        return preadv2(fd, &v, 1, (off_t)off, RWF_NOWAIT) == 1;
}

int hf_write_all_at(int fd, const void *p, size_t n, uint64_t off)
{
        const uint8_t *q = p;

        while (n > 0) {
                ssize_t k = pwrite(fd, q, n, (off_t)off);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        return -EIO;
                q += k;
                n -= (size_t)k;
                off += (uint64_t)k;
        }
        return 0;
}

int hf_copy_rw(int in, uint64_t off, uint64_t len, int out, uint64_t at,
               void (*each)(void *userdata, const uint8_t *p, size_t n), void *userdata,
               uint64_t *ret_copied)
{
        uint8_t buf[65536];
        uint64_t done = 0;

        while (done < len) {
                ssize_t n = pread(in, buf, (size_t)MIN(sizeof(buf), len - done),
                                  (off_t)(off + done));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                int r = hf_write_all_at(out, buf, (size_t)n, at + done);
                if (r < 0)
                        return r;
                if (each)
                        each(userdata, buf, (size_t)n);
                done += (uint64_t)n;
        }
        *ret_copied = done;
        return 0;
}

int hf_copy_span(int in, uint64_t off, uint64_t len, int out, uint64_t at, uint64_t *ret_copied)
{
        loff_t off_in = (loff_t)off, off_out = (loff_t)at;
        uint64_t done = 0;
        bool eof = false;

        while (done < len) {
                ssize_t n = copy_file_range(in, &off_in, out, &off_out, len - done, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (done == 0 && (errno == EXDEV || errno == EOPNOTSUPP ||
                                          errno == ENOSYS || errno == EINVAL))
                                break;
                        return -errno;
                }
                if (n == 0) {
                        eof = true; /* in ends short of len */
                        break;
                }
                done += (uint64_t)n;
        }
        if (done < len && !eof) {
                /* Plain read/write for what copy_file_range would not do (another filesystem,
                 * a memfd). */
                uint64_t more = 0;
                int r = hf_copy_rw(in, off + done, len - done, out, at + done, NULL, NULL, &more);
                if (r < 0)
                        return r;
                done += more;
        }
        if (ret_copied)
                *ret_copied = done;
        return 0;
}

int hf_fsync_drop(int fd)
{
        if (fsync(fd) < 0)
                return -errno;
        /* Only a hint: the data are durable either way. */
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        return 0;
}

int hf_fsync_dirfd(int dirfd)
{
        if (fsync(dirfd) < 0 && errno != EINVAL && errno != EROFS)
                return -errno;
        return 0;
}

int hf_write_file_atomic_at(int dirfd, const char *name, const void *p, size_t n, mode_t mode,
                            bool exclusive)
{
        static atomic_uint counter;
        char tmp[512];
        int fd, r;

        r = snprintf(tmp, sizeof(tmp), ".%s-tmp-%d-%u", name, (int)getpid(),
                     atomic_fetch_add(&counter, 1));
        if (r < 0 || (size_t)r >= sizeof(tmp))
                return -ENAMETOOLONG;
        fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        r = hf_write_all(fd, p, n);
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r >= 0 && fchmod(fd, mode) < 0)
                r = -errno;
        if (close(fd) < 0 && r >= 0)
                r = -errno;
        if (r < 0)
                goto fail;
        if (exclusive) {
                /* link() refuses to replace, unlike rename(). */
                if (linkat(dirfd, tmp, dirfd, name, 0) < 0) {
                        r = -errno;
                        goto fail;
                }
                (void)unlinkat(dirfd, tmp, 0);
        } else if (renameat(dirfd, tmp, dirfd, name) < 0) {
                r = -errno;
                goto fail;
        }
        return hf_fsync_dirfd(dirfd);
fail:
        (void)unlinkat(dirfd, tmp, 0);
        return r;
}

int hf_mkdir_p(const char *path, mode_t mode)
{
        _cleanup_free_ char *p = strdup(path);
        if (!p)
                return -ENOMEM;
        /* From p, not p + 1: for "" that would already be past the NUL. */
        for (char *s = p; *s; s++) {
                if (*s != '/' || s == p)
                        continue;
                *s = 0;
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

bool hf_copy_str(char *dst, size_t n, const char *src)
{
        size_t k = strlen(src);
        bool fits = k < n;

        if (!fits)
                k = n - 1;
        memcpy(dst, src, k);
        dst[k] = 0;
        return fits;
}

int hf_parse_u64(const char *s, uint64_t *ret)
{
        uint64_t v = 0;

        if (!s || !*s)
                return -EINVAL;
        for (; *s; s++) {
                if (*s < '0' || *s > '9')
                        return -EINVAL;
                if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
                        return -ERANGE;
                v = v * 10 + (uint64_t)(*s - '0');
        }
        *ret = v;
        return 0;
}

int hf_parse_size(const char *s, uint64_t *ret)
{
        uint64_t whole = 0, frac = 0, fracdiv = 1, mult = 1;
        const char *p = s;

        if (!s || !*s)
                return -EINVAL;
        for (; *p >= '0' && *p <= '9'; p++) {
                uint64_t d = (uint64_t)(*p - '0');
                if (whole > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                whole = whole * 10 + d;
        }
        if (p == s)
                return -EINVAL;
        if (*p == '.') {
                p++;
                /* Nine fraction digits are below a byte even in TiB; later ones are ignored. */
                for (; *p >= '0' && *p <= '9'; p++) {
                        if (fracdiv >= 1000000000)
                                continue;
                        frac = frac * 10 + (uint64_t)(*p - '0');
                        fracdiv *= 10;
                }
        }
        switch (*p) {
        case 0:
                break;
        case 'k':
        case 'K':
                mult = 1ULL << 10;
                p++;
                break;
        case 'm':
        case 'M':
                mult = 1ULL << 20;
                p++;
                break;
        case 'g':
        case 'G':
                mult = 1ULL << 30;
                p++;
                break;
        case 't':
        case 'T':
                mult = 1ULL << 40;
                p++;
                break;
        default:
                return -EINVAL;
        }
        if (*p == 'i' && mult > 1)
                p++;
        if (*p == 'B' || *p == 'b')
                p++;
        if (*p)
                return -EINVAL;
        if (whole > UINT64_MAX / mult)
                return -ERANGE;
        /* frac * mult overflows (10^9 * 2^40), so split mult around fracdiv; still exact. */
        *ret = whole * mult + frac * (mult / fracdiv) + frac * (mult % fracdiv) / fracdiv;
        return 0;
}

const char *hf_format_bytes(char *buf, size_t n, uint64_t bytes)
{
        static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
        double v = (double)bytes;
        size_t u = 0;

        while (v >= 1024 && u + 1 < ELEMENTSOF(units)) {
                v /= 1024;
                u++;
        }
        if (u == 0)
                (void)snprintf(buf, n, "%llu B", (unsigned long long)bytes);
        else
                (void)snprintf(buf, n, "%.*f %s", v < 10 ? 2 : v < 100 ? 1 : 0, v, units[u]);
        return buf;
}

const char *hf_format_duration(char *buf, size_t n, double s)
{
        if (s < 0)
                s = 0;
        if (s < 10)
                (void)snprintf(buf, n, "%.2fs", s);
        else if (s < 60)
                (void)snprintf(buf, n, "%.1fs", s);
        else if (s < 3600)
                (void)snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
        else
                (void)snprintf(buf, n, "%dh%02dm%02ds", (int)s / 3600, (int)s / 60 % 60,
                               (int)s % 60);
        return buf;
}

double hf_now_mono(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void hf_mem_hint_huge(void *p, size_t n)
{
        const uintptr_t huge = 2u << 20;
        uintptr_t start = ((uintptr_t)p + huge - 1) & ~(huge - 1);
        uintptr_t end = ((uintptr_t)p + n) & ~(huge - 1);

        if (!p || n < HF_HUGE_HINT_MIN || end <= start)
                return;
        (void)madvise((void *)start, end - start, MADV_HUGEPAGE);
}

void *hf_alloc_huge(size_t n)
{
        void *p;

        if (posix_memalign(&p, (size_t)2 << 20, n) != 0)
                return NULL;
        hf_mem_hint_huge(p, n);
        return p;
}

int hf_ncpus(void)
{
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

size_t hf_utf8_decode(const uint8_t *s, size_t n, int32_t *ret_cp)
{
        uint8_t c = s[0];
        int32_t cp, min;
        size_t len;

        if (c < 0x80) {
                *ret_cp = c;
                return 1;
        }
        if (c >= 0xc2 && c <= 0xdf) {
                len = 2;
                cp = c & 0x1f;
                min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
                len = 3;
                cp = c & 0x0f;
                min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
                len = 4;
                cp = c & 0x07;
                min = 0x10000;
        } else
                goto bad;
        if (n < len)
                goto bad;
        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        goto bad;
                cp = cp << 6 | (s[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                goto bad;
        *ret_cp = cp;
        return len;
bad:
        *ret_cp = -1;
        return 1;
}

bool hf_utf8_valid(const char *s, size_t n)
{
        const uint8_t *p = (const uint8_t *)s;

        while (n > 0) {
                int32_t cp;
                size_t k = hf_utf8_decode(p, n, &cp);
                if (cp < 0)
                        return false;
                p += k;
                n -= k;
        }
        return true;
}

int hf_reserve(void **v, size_t *cap, size_t n, size_t size)
{
        if (n < *cap)
                return 0;
        size_t want = MAX(n + 1, MAX((size_t)64, *cap + *cap / 2));
        void *nv = reallocarray(*v, want, size);
        if (!nv)
                return -ENOMEM;
        *v = nv;
        *cap = want;
        return 0;
}

/* A field of /proc/self/mounts in place: the kernel writes space, tab, newline and backslash
 * in mount points as \ooo. */
static void unescape_mount_field(char *s)
{
        char *w = s;

        for (const char *r = s; *r;) {
                if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
                    r[3] >= '0' && r[3] <= '7') {
                        *w++ = (char)(((r[1] - '0') << 6) | ((r[2] - '0') << 3) | (r[3] - '0'));
                        r += 4;
                } else
                        *w++ = *r++;
        }
        *w = 0;
}

/* A line of /proc/self/mounts split in place: its mount point (escapes undone) and, in
 * *ret_type, its filesystem type; NULL for a line without them. The line then starts with
 * the mount's source (escapes undone). */
static char *split_mount_line(char *line, const char **ret_type)
{
        char *mnt = strchr(line, ' '), *type, *end;

        if (!mnt)
                return NULL;
        *mnt = 0;
        unescape_mount_field(line);
        mnt++;
        end = strchr(mnt, ' ');
        if (!end)
                return NULL;
        *end = 0;
        type = end + 1;
        end = strchr(type, ' ');
        if (!end)
                return NULL;
        *end = 0;
        unescape_mount_field(mnt);
        *ret_type = type;
        return mnt;
}

/*
 * Where path's mount is, for comparing: its mount ID where statx() gives one (Linux 5.8), else
 * its device. The device alone misses a btrfs subvolume that is not mounted on its own: its
 * files have a device number that no mount point has.
 */
typedef struct MountKey {
        bool by_id;
        uint64_t v;
} MountKey;

uint64_t hf_mount_id(int fd, const char *path)
{
        struct statx sx = { 0 };

        if (statx(fd, path ? path : "", path ? 0 : AT_EMPTY_PATH, STATX_MNT_ID, &sx) < 0 ||
            !(sx.stx_mask & STATX_MNT_ID))
                return 0;
        return sx.stx_mnt_id;
}

int hf_statx_cached(const char *path, struct statx *ret)
{
        *ret = (struct statx){ 0 };
        if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_STATX_DONT_SYNC,
                  STATX_TYPE | STATX_INO, ret) < 0)
                return -errno;
        return 0;
}

const char *hf_fs_type_name(unsigned long f_type)
{
        switch (f_type & 0xFFFFFFFFul) {
        case EXT4_SUPER_MAGIC: /* ext2 and ext3 too */
                return "ext4";
        case XFS_SUPER_MAGIC:
                return "xfs";
        case BTRFS_SUPER_MAGIC:
                return "btrfs";
        case TMPFS_MAGIC:
                return "tmpfs";
        case OVERLAYFS_SUPER_MAGIC:
                return "overlay";
        case NFS_SUPER_MAGIC:
                return "nfs";
        default:
                return NULL;
        }
}

/*
 * A line of /proc/self/mountinfo ("36 35 98:0 /root /mnt/point opts [tags] - type source
 * superopts") read into *m, split in place, the mount point's escapes undone; -EPROTO for a
 * line without those fields.
 */
static int parse_mountinfo_line(char *line, HfMountEntry *m)
{
        char *f[5], *p = line, *sep;
        unsigned maj, min;

        for (size_t i = 0; i < ELEMENTSOF(f); i++) {
                f[i] = p;
                p = strchr(p, ' ');
                if (!p)
                        return -EPROTO;
                *p++ = 0;
        }
        sep = strstr(p, " - ");
        if (!sep)
                return -EPROTO;
        m->type = sep + 3;
        p = strchr(m->type, ' ');
        if (p)
                *p = 0;
        if (sscanf(f[0], "%" SCNu64, &m->id) != 1 || sscanf(f[2], "%u:%u", &maj, &min) != 2)
                return -EPROTO;
        m->dev = makedev(maj, min);
        unescape_mount_field(f[4]);
        m->path = f[4];
        return 0;
}

int hf_mounts_below(const char *path, int (*cb)(void *ud, const HfMountEntry *m), void *ud)
{
        _cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
        _cleanup_free_ char *line = NULL;
        size_t cap = 0, pl = strlen(path);
        bool all = strcmp(path, "/") == 0;
        ssize_t k;

        if (!f)
                return -errno;
        while ((k = getline(&line, &cap, f)) > 0) {
                HfMountEntry m;
                int r;

                if (line[k - 1] == '\n')
                        line[k - 1] = 0;
                if (parse_mountinfo_line(line, &m) < 0)
                        continue;
                if (all ? m.path[0] != '/' || m.path[1] == 0
                        : strncmp(m.path, path, pl) != 0 || m.path[pl] != '/')
                        continue;
                r = cb(ud, &m);
                if (r < 0)
                        return r;
        }
        return 0;
}

int hf_mount_source(const char *mnt, char *out, size_t n)
{
        _cleanup_fclose_ FILE *f = fopen("/proc/self/mounts", "re");
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        int r = -ENOENT;

        if (!f)
                return -errno;
        /* The last mount on a mount point is the one seen there. */
        while (getline(&line, &cap, f) > 0) {
                const char *type;
                char *m = split_mount_line(line, &type);

                if (m && strcmp(m, mnt) == 0)
                        r = (size_t)snprintf(out, n, "%s", line) < n ? 0 : -ENAMETOOLONG;
        }
        return r;
}

int hf_fd_reopen(int fd, int flags)
{
        char p[32];
        int k;

        (void)snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
        k = open(p, flags | O_CLOEXEC);
        return k < 0 ? -errno : k;
}

static int mount_key(const char *path, MountKey *ret)
{
        uint64_t id = hf_mount_id(AT_FDCWD, path);
        struct stat st;

        if (id) {
                *ret = (MountKey){ .by_id = true, .v = id };
                return 0;
        }
        if (stat(path, &st) < 0)
                return -errno;
        *ret = (MountKey){ .v = st.st_dev };
        return 0;
}

int hf_mount_root(const char *path, char *out, size_t n)
{
        _cleanup_fclose_ FILE *f = NULL;
        _cleanup_free_ char *line = NULL, *probe = strdup(path), *best = strdup("/");
        size_t cap = 0, bestlen = 1;
        MountKey kp = { 0 }, km = { 0 };
        struct stat sp;
        int r;

        if (!probe || !best)
                return -ENOMEM;
        /* The nearest existing ancestor decides the filesystem. */
        while (stat(probe, &sp) < 0) {
                char *s = strrchr(probe, '/');
                if (!s || s == probe) {
                        if (stat("/", &sp) < 0)
                                return -errno;
                        free(probe);
                        probe = strdup("/");
                        if (!probe)
                                return -ENOMEM;
                        break;
                }
                *s = 0;
        }
        r = mount_key(probe, &kp);
        if (r < 0)
                return r;
        f = fopen("/proc/self/mounts", "re");
        if (!f)
                return -errno;
        while (getline(&line, &cap, f) > 0) {
                const char *type;
                char *mnt = split_mount_line(line, &type);
                if (!mnt)
                        continue;
                size_t l = strlen(mnt);
                if (l < bestlen || strncmp(probe, mnt, l) != 0 ||
                    (probe[l] != '/' && probe[l] != 0 && strcmp(mnt, "/") != 0))
                        continue;
                if (mount_key(mnt, &km) < 0 || km.by_id != kp.by_id || km.v != kp.v)
                        continue;
                free(best);
                best = strdup(mnt);
                if (!best)
                        return -ENOMEM;
                bestlen = l;
        }
        if ((size_t)snprintf(out, n, "%s", best) >= n)
                return -ENAMETOOLONG;
        return 0;
}
