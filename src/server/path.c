/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Request paths and Range headers: the two things in a request line an attacker fully
 * controls. Both parsers are strict and work on raw bytes with explicit lengths.
 */
#include <string.h>

#include "server.h"

static bool unreserved(unsigned char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '.' || c == '_' || c == '~';
}

static int hexval(unsigned char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* A folder or host name: letters, digits, '.', '_', '-', not starting with '.' or '-'. */
static bool segment_ok(const char *s, size_t n, size_t max)
{
        if (n == 0 || n > max || s[0] == '.' || s[0] == '-')
                return false;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '.' || c == '_'))
                        return false;
        }
        return true;
}

static bool name_is_id(const char *s, size_t n)
{
        if (n != HF_ID_HEX_LEN)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

static int type_of(const char *s, size_t n, HfFileType *ret)
{
        for (HfFileType t = HF_FILE_KEY; t < _HF_FILE_TYPE_MAX; t++) {
                const char *d = hf_file_type_dir(t);
                if (strlen(d) == n && memcmp(d, s, n) == 0) {
                        *ret = t;
                        return 0;
                }
        }
        return -ENOENT;
}

static bool seg_eq(const char *s, size_t n, const char *lit)
{
        return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

int hf_server_parse_path(const char *raw, size_t n, HfRequestPath *ret)
{
        char dec[HF_URL_MAX + 1];
        const char *seg[HF_REPO_DEPTH_MAX + 3];
        size_t seglen[HF_REPO_DEPTH_MAX + 3];
        size_t m = 0, nseg = 0, repo_segs;
        bool trailing;
        HfRequestPath p = { 0 };
        HfFileType t;

        if (!raw || n == 0 || n > HF_URL_MAX || raw[0] != '/')
                return -EINVAL;
        /* Decode; '/' only ever comes from the raw bytes, never from an escape. */
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)raw[i];
                if (c == '%') {
                        int hi, lo;
                        if (i + 2 >= n)
                                return -EINVAL;
                        hi = hexval((unsigned char)raw[i + 1]);
                        lo = hexval((unsigned char)raw[i + 2]);
                        if (hi < 0 || lo < 0)
                                return -EINVAL;
                        c = (unsigned char)(hi * 16 + lo);
                        if (!unreserved(c))
                                return -EINVAL;
                        i += 2;
                } else if (c != '/' && !unreserved(c))
                        return -EINVAL;
                dec[m++] = (char)c;
        }
        dec[m] = 0;

        trailing = m > 1 && dec[m - 1] == '/';
        for (size_t i = 1; i < m;) {
                size_t j = i;
                while (j < m && dec[j] != '/')
                        j++;
                if (j == i)
                        return -EINVAL; /* "//" */
                if (nseg == ELEMENTSOF(seg))
                        return -EINVAL;
                seg[nseg] = dec + i;
                seglen[nseg++] = j - i;
                i = j + 1;
        }

        /* Server endpoints first: their names start with '.', which no repository may. */
        if (nseg == 1 && !trailing && seg_eq(seg[0], seglen[0], "metrics")) {
                p.kind = HF_PATH_METRICS;
                *ret = p;
                return 0;
        }
        if (nseg >= 1 && seg_eq(seg[0], seglen[0], ".holdfast")) {
                if (nseg != 3 || trailing || !seg_eq(seg[1], seglen[1], "heartbeat") ||
                    !segment_ok(seg[2], seglen[2], HF_HOST_NAME_MAX))
                        return -EINVAL;
                p.kind = HF_PATH_HEARTBEAT;
                memcpy(p.name, seg[2], seglen[2]);
                p.name[seglen[2]] = 0;
                *ret = p;
                return 0;
        }

        if (nseg >= 1 && !trailing && seg_eq(seg[nseg - 1], seglen[nseg - 1], "config")) {
                p.kind = HF_PATH_CONFIG;
                p.type = HF_FILE_CONFIG;
                (void)snprintf(p.name, sizeof(p.name), "config");
                repo_segs = nseg - 1;
        } else if (nseg >= 1 && trailing && type_of(seg[nseg - 1], seglen[nseg - 1], &t) == 0) {
                p.kind = HF_PATH_LIST;
                p.type = t;
                repo_segs = nseg - 1;
        } else if (nseg >= 2 && !trailing && type_of(seg[nseg - 2], seglen[nseg - 2], &t) == 0) {
                if (!name_is_id(seg[nseg - 1], seglen[nseg - 1]))
                        return -EINVAL;
                p.kind = HF_PATH_OBJECT;
                p.type = t;
                memcpy(p.name, seg[nseg - 1], seglen[nseg - 1]);
                p.name[seglen[nseg - 1]] = 0;
                repo_segs = nseg - 2;
        } else {
                p.kind = HF_PATH_REPO;
                repo_segs = nseg;
        }
        if (repo_segs > HF_REPO_DEPTH_MAX)
                return -EINVAL;

        for (size_t k = 0; k < repo_segs; k++) {
                size_t l = strlen(p.repo);
                if (!segment_ok(seg[k], seglen[k], HF_SEGMENT_MAX) ||
                    type_of(seg[k], seglen[k], &t) == 0 || seg_eq(seg[k], seglen[k], "config") ||
                    seg_eq(seg[k], seglen[k], "metrics"))
                        return -EINVAL;
                if (l + 1 + seglen[k] + 1 > sizeof(p.repo))
                        return -EINVAL;
                if (l)
                        p.repo[l++] = '/';
                memcpy(p.repo + l, seg[k], seglen[k]);
                p.repo[l + seglen[k]] = 0;
                if (k == 0) {
                        memcpy(p.first, seg[0], seglen[0]);
                        p.first[seglen[0]] = 0;
                }
        }
        *ret = p;
        return 0;
}

/* Digits only, at most 18 of them (no overflow), at least one. */
static int parse_num(const char *s, size_t n, uint64_t *ret)
{
        uint64_t v = 0;

        if (n == 0 || n > 18)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                v = v * 10 + (uint64_t)(s[i] - '0');
        }
        *ret = v;
        return 0;
}

int hf_server_parse_range(const char *v, size_t n, uint64_t size, uint64_t *ret_off,
                          uint64_t *ret_len)
{
        const char *dash;
        uint64_t a, b;

        if (!v || n < 7 || n > 64 || strncasecmp(v, "bytes=", 6) != 0)
                return -EINVAL;
        v += 6;
        n -= 6;
        if (memchr(v, ',', n))
                return -EINVAL; /* several ranges: never sent by restic */
        dash = memchr(v, '-', n);
        if (!dash)
                return -EINVAL;
        if (dash == v) {
                /* Suffix: the last N bytes. */
                if (parse_num(dash + 1, n - 1, &b) < 0)
                        return -EINVAL;
                if (b == 0 || size == 0)
                        return -ERANGE;
                *ret_len = MIN(b, size);
                *ret_off = size - *ret_len;
                return 0;
        }
        if (parse_num(v, (size_t)(dash - v), &a) < 0)
                return -EINVAL;
        if ((size_t)(dash - v) + 1 == n)
                b = UINT64_MAX; /* "A-" */
        else if (parse_num(dash + 1, n - (size_t)(dash - v) - 1, &b) < 0 || b < a)
                return -EINVAL;
        if (a >= size)
                return -ERANGE;
        *ret_off = a;
        *ret_len = MIN(b, size - 1) - a + 1;
        return 0;
}
