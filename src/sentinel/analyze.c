/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Content features of a change. Everything here reads bytes an attacker wrote, so it runs in
 * the unprivileged, seccomp-confined child (privsep.c) and is fuzzed (fuzz-sentinel-analyze).
 *
 * The central idea (detection-notes §2.3): measure only the bytes that changed between the
 * pre-image and the file now. For any cipher those bytes are uniform however sparse the
 * pattern (1 MiB on / 1 MiB off, every 16th block, 16 bytes of 32); for benign edits they
 * follow the content's own distribution.
 */
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "../base/util.h"
#include "sentinel.h"

/* Sampling of big files: the head, then SAMPLE_CHUNK bytes at evenly spaced offsets. */
#define SAMPLE_HEAD (256 * 1024)
#define SAMPLE_CHUNK (16 * 1024)
#define SAMPLE_CHUNKS 32
#define SAMPLE_MAX (SAMPLE_HEAD + SAMPLE_CHUNK * SAMPLE_CHUNKS)
_Static_assert(SAMPLE_CHUNKS + 1 == HF_SAMPLE_SPANS, "HF_SAMPLE_SPANS");

static const char *const magic_names[_HF_MAGIC_MAX] = {
        [HF_MAGIC_NONE] = "data",     [HF_MAGIC_EMPTY] = "empty", [HF_MAGIC_TEXT] = "text",
        [HF_MAGIC_PDF] = "pdf",       [HF_MAGIC_PNG] = "png",     [HF_MAGIC_JPEG] = "jpeg",
        [HF_MAGIC_GIF] = "gif",       [HF_MAGIC_ZIP] = "zip",     [HF_MAGIC_GZIP] = "gzip",
        [HF_MAGIC_ZSTD] = "zstd",     [HF_MAGIC_XZ] = "xz",       [HF_MAGIC_BZIP2] = "bzip2",
        [HF_MAGIC_SQLITE] = "sqlite", [HF_MAGIC_ELF] = "elf",     [HF_MAGIC_PNM] = "pnm",
        [HF_MAGIC_PGP] = "pgp",       [HF_MAGIC_TAR] = "tar",     [HF_MAGIC_GIT] = "git",
};

const char *hf_magic_name(HfMagic m)
{
        return (unsigned)m < _HF_MAGIC_MAX && magic_names[m] ? magic_names[m] : "?";
}

bool hf_magic_is_dense(HfMagic m)
{
        switch (m) {
        case HF_MAGIC_PNG:
        case HF_MAGIC_JPEG:
        case HF_MAGIC_GIF:
        case HF_MAGIC_ZIP:
        case HF_MAGIC_GZIP:
        case HF_MAGIC_ZSTD:
        case HF_MAGIC_XZ:
        case HF_MAGIC_BZIP2:
        case HF_MAGIC_PGP:
        case HF_MAGIC_GIT:
        case HF_MAGIC_PDF:
                return true;
        default:
                return false;
        }
}

static bool starts(const uint8_t *p, size_t n, const void *m, size_t mn)
{
        return n >= mn && memcmp(p, m, mn) == 0;
}

static bool is_texty(uint8_t c)
{
        return (c >= 0x20 && c < 0x7f) || c == '\n' || c == '\r' || c == '\t' || c >= 0x80;
}

HfMagic hf_magic_detect(const uint8_t *p, size_t n)
{
        if (n == 0)
                return HF_MAGIC_EMPTY;
        if (starts(p, n, "%PDF-", 5))
                return HF_MAGIC_PDF;
        if (starts(p, n, "\x89PNG\r\n\x1a\n", 8))
                return HF_MAGIC_PNG;
        if (starts(p, n, "\xff\xd8\xff", 3))
                return HF_MAGIC_JPEG;
        if (starts(p, n, "GIF87a", 6) || starts(p, n, "GIF89a", 6))
                return HF_MAGIC_GIF;
        if (starts(p, n, "PK\x03\x04", 4) || starts(p, n, "PK\x05\x06", 4))
                return HF_MAGIC_ZIP;
        if (starts(p, n, "\x1f\x8b", 2))
                return HF_MAGIC_GZIP;
        if (starts(p, n, "\x28\xb5\x2f\xfd", 4))
                return HF_MAGIC_ZSTD;
        if (starts(p, n,
                   "\xfd"
                   "7zXZ\x00",
                   6))
                return HF_MAGIC_XZ;
        if (starts(p, n, "BZh", 3))
                return HF_MAGIC_BZIP2;
        if (starts(p, n, "SQLite format 3\x00", 16))
                return HF_MAGIC_SQLITE;
        if (starts(p, n,
                   "\x7f"
                   "ELF",
                   4))
                return HF_MAGIC_ELF;
        if (n >= 3 && p[0] == 'P' && p[1] >= '1' && p[1] <= '7' &&
            (p[2] == '\n' || p[2] == ' ' || p[2] == '\r'))
                return HF_MAGIC_PNM;
        if (starts(p, n, "-----BEGIN PGP", 14) ||
            (n >= 2 && (p[0] == 0x8c || p[0] == 0x85) && p[1] < 0x10 && p[0] == 0x8c))
                return HF_MAGIC_PGP;
        if (starts(p, n, "PACK", 4) || starts(p, n, "\xfftOc", 4) || starts(p, n, "DIRC", 4))
                return HF_MAGIC_GIT;
        if (n >= 262 && memcmp(p + 257, "ustar", 5) == 0)
                return HF_MAGIC_TAR;
        /* git loose objects are zlib streams: 0x78 then a check byte. */
        if (n >= 2 && p[0] == 0x78 && ((p[0] << 8) | p[1]) % 31 == 0)
                return HF_MAGIC_GIT;
        size_t k = MIN(n, (size_t)4096), texty = 0;
        for (size_t i = 0; i < k; i++)
                texty += is_texty(p[i]);
        if (texty * 100 >= k * 97)
                return HF_MAGIC_TEXT;
        return HF_MAGIC_NONE;
}

static double entropy_of(const uint64_t h[256], uint64_t total)
{
        double e = 0;

        if (!total)
                return 0;
        for (int i = 0; i < 256; i++) {
                if (!h[i])
                        continue;
                double q = (double)h[i] / (double)total;
                e -= q * log2(q);
        }
        return e;
}

static bool is_b64(uint8_t c)
{
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '+' || c == '/' || c == '=' || c == '\n' || c == '\r';
}

void hf_analyze_buffers(const uint8_t *pre, size_t pre_n, uint64_t pre_size, const uint8_t *post,
                        size_t post_n, uint64_t post_size, HfFeatures *ret)
{
        uint64_t h_new[256] = { 0 }, h_old[256] = { 0 }, h_all[256] = { 0 };
        uint64_t changed = 0, b64_new = 0, b64_old = 0, printable = 0;
        uint32_t blocks = 0, blocks_changed = 0;
        int first_val = -1;
        bool uniform = true;
        HfFeatures f = { 0 };

        f.size_before = pre ? pre_size : 0;
        f.size_after = post_size;
        f.has_before = pre != NULL;
        f.magic_before = pre ? hf_magic_detect(pre, pre_n) : HF_MAGIC_EMPTY;
        f.magic_after = hf_magic_detect(post, post_n);
        if (pre && pre_size == 0)
                f.magic_before = HF_MAGIC_EMPTY;
        if (post_size == 0)
                f.magic_after = HF_MAGIC_EMPTY;

        for (size_t i = 0; i < post_n; i++)
                h_all[post[i]]++;
        if (pre)
                for (size_t i = 0; i < pre_n; i++)
                        printable += is_texty(pre[i]);

        for (size_t off = 0; off < post_n; off += 4096) {
                size_t end = MIN(post_n, off + 4096);
                bool any = false;
                for (size_t i = off; i < end; i++) {
                        uint8_t c = post[i];
                        bool diff = !pre || i >= pre_n || pre[i] != c;
                        if (!diff)
                                continue;
                        any = true;
                        changed++;
                        h_new[c]++;
                        b64_new += is_b64(c);
                        if (first_val < 0)
                                first_val = c;
                        else if (first_val != c)
                                uniform = false;
                        if (pre && i < pre_n) {
                                h_old[pre[i]]++;
                                b64_old += is_b64(pre[i]);
                        }
                }
                blocks++;
                blocks_changed += any;
        }
        f.compared = post_n;
        f.changed = changed;
        f.entropy_changed = entropy_of(h_new, changed);
        uint64_t old_total = 0;
        for (int i = 0; i < 256; i++)
                old_total += h_old[i];
        f.entropy_before = entropy_of(h_old, old_total);
        f.entropy_after = entropy_of(h_all, post_n);
        f.b64_changed = changed ? (double)b64_new / (double)changed : 0;
        f.b64_before = old_total ? (double)b64_old / (double)old_total : 0;
        f.printable_before = pre_n ? (double)printable / (double)pre_n : 0;
        f.blocks_total = blocks;
        f.blocks_changed = blocks_changed;
        f.uniform_changed = changed > 0 && uniform;
        *ret = f;
}

size_t hf_analyze_spans(uint64_t sz, uint64_t off[HF_SAMPLE_SPANS], uint64_t len[HF_SAMPLE_SPANS])
{
        if (sz <= SAMPLE_MAX) {
                off[0] = 0;
                len[0] = sz;
                return 1;
        }
        uint64_t rest = sz - SAMPLE_HEAD;
        for (unsigned c = 0; c <= SAMPLE_CHUNKS; c++) {
                off[c] = c == 0 ? 0
                                : SAMPLE_HEAD +
                                          (rest - SAMPLE_CHUNK) * (c - 1) / (SAMPLE_CHUNKS - 1);
                len[c] = c == 0 ? SAMPLE_HEAD : SAMPLE_CHUNK;
        }
        return SAMPLE_CHUNKS + 1;
}

/* Reads the spans of a file of size sz into buf (SAMPLE_MAX bytes), one after the other. */
static int read_sample(int fd, uint64_t sz, uint8_t *buf, size_t *ret_n)
{
        uint64_t off[HF_SAMPLE_SPANS], len[HF_SAMPLE_SPANS];
        size_t spans = hf_analyze_spans(sz, off, len), n = 0;

        for (size_t c = 0; c < spans; c++) {
                size_t got = 0;
                while (got < len[c]) {
                        ssize_t k = pread(fd, buf + n + got, (size_t)len[c] - got,
                                          (off_t)(off[c] + got));
                        if (k < 0)
                                return -errno;
                        if (k == 0)
                                break;
                        got += (size_t)k;
                }
                n += got;
                if (got < len[c])
                        break;
        }
        *ret_n = n;
        return 0;
}

int hf_analyze_fds(int pre_fd, int post_fd, HfFeatures *ret)
{
        _cleanup_free_ uint8_t *a = NULL, *b = NULL;
        struct stat sa = { 0 }, sb;
        size_t na = 0, nb = 0;
        int r;

        if (fstat(post_fd, &sb) < 0)
                return -errno;
        if (pre_fd >= 0 && fstat(pre_fd, &sa) < 0)
                return -errno;
        b = malloc(SAMPLE_MAX);
        if (!b)
                return -ENOMEM;
        r = read_sample(post_fd, (uint64_t)sb.st_size, b, &nb);
        if (r < 0)
                return r;
        if (pre_fd >= 0) {
                a = malloc(SAMPLE_MAX);
                if (!a)
                        return -ENOMEM;
                /* Same layout as the post sample, so offsets line up when sizes match. */
                r = read_sample(pre_fd, (uint64_t)sa.st_size, a, &na);
                if (r < 0)
                        return r;
        }
        hf_analyze_buffers(pre_fd >= 0 ? a : NULL, na, (uint64_t)sa.st_size, b, nb,
                           (uint64_t)sb.st_size, ret);
        return 0;
}

static const char *const verdict_names[] = {
        [HF_FILE_BENIGN] = "benign",         [HF_FILE_ENCRYPTED] = "encrypted",
        [HF_FILE_MASKED] = "masked",         [HF_FILE_MAGIC_DESTROYED] = "magic-destroyed",
        [HF_FILE_TRUNCATED] = "truncated",   [HF_FILE_WIPED] = "wiped",
        [HF_FILE_NEW_RANDOM] = "new-random",
};

const char *hf_file_verdict_name(HfFileVerdict v)
{
        return (unsigned)v < ELEMENTSOF(verdict_names) ? verdict_names[v] : "?";
}

/* Entropy a uniform source reaches on n samples is below 8 bits for small n; scale for it. */
static double random_threshold(uint64_t n)
{
        if (n >= 4096)
                return 7.2;
        if (n >= 1024)
                return 6.8;
        if (n >= 256)
                return 6.0;
        return 99; /* too few bytes to say */
}

HfFileVerdict hf_file_verdict(const HfFeatures *f)
{
        if (!f->has_before) {
                /* A new file: no destruction by itself; random bytes with no format are the
                 * encrypted copy of the "write new, delete original" pattern. */
                if (f->changed >= 256 && !hf_magic_is_dense(f->magic_after) &&
                    f->magic_after != HF_MAGIC_ELF &&
                    f->entropy_changed >= random_threshold(f->changed))
                        return HF_FILE_NEW_RANDOM;
                if (f->changed >= 1024 && f->magic_after == HF_MAGIC_TEXT &&
                    f->b64_changed >= 0.98 && f->entropy_changed >= 5.7)
                        return HF_FILE_NEW_RANDOM;
                return HF_FILE_BENIGN;
        }
        if (f->size_before > 0 && f->size_after == 0)
                return HF_FILE_TRUNCATED;
        if (f->changed == 0)
                return HF_FILE_BENIGN;
        /* A result in a valid dense format (image conversion, recompression) is a
         * conversion; a format that stayed is an edit. */
        bool dense_after = hf_magic_is_dense(f->magic_after);
        if (f->changed >= 4096 && f->uniform_changed)
                return HF_FILE_WIPED;
        if (!dense_after && f->entropy_changed >= random_threshold(f->changed) &&
            !(f->magic_before == f->magic_after && hf_magic_is_dense(f->magic_before)))
                return HF_FILE_ENCRYPTED;
        if (f->changed >= 512 && f->b64_changed >= 0.97 && f->entropy_changed >= 5.6 &&
            (f->b64_before < 0.9 || f->entropy_before < 5.0) && f->magic_before != f->magic_after)
                return HF_FILE_MASKED;
        if (f->changed >= 512 && f->b64_changed >= 0.97 && f->entropy_changed >= 5.7 &&
            f->entropy_before < 5.2)
                return HF_FILE_MASKED;
        if (f->magic_before != HF_MAGIC_NONE && f->magic_before != HF_MAGIC_TEXT &&
            f->magic_before != HF_MAGIC_EMPTY && f->magic_after == HF_MAGIC_NONE &&
            f->entropy_changed >= 6.0)
                return HF_FILE_MAGIC_DESTROYED;
        return HF_FILE_BENIGN;
}
