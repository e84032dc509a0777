/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "buf.h"

#include <string.h>

#include "util.h"

void hf_buf_init(HfBuf *b, size_t max)
{
        *b = HF_BUF_INIT(max);
}

void hf_buf_free(HfBuf *b)
{
        free(b->data);
        b->data = NULL;
        b->len = b->cap = 0;
}

void hf_buf_reset(HfBuf *b)
{
        b->len = 0;
        if (b->data)
                b->data[0] = 0;
}

/*
 * The allocation of a buffer growing to ncap bytes. A hint_huge buffer of HF_HUGE_HINT_MIN or
 * more moves to a new 2 MiB-aligned block rather than being realloc()ed: a block that mremap()
 * moves keeps its 4 KiB pages and its unaligned start, so the hint would gain nothing. Copying
 * what is there costs far less than the faults saved (growing to 16 MiB by 1000-byte appends:
 * 3940 page faults with realloc(), 4937 with realloc() and the hint, 532 this way).
 */
static uint8_t *buf_grow(HfBuf *b, size_t ncap)
{
        uint8_t *p;

        if (!b->hint_huge || ncap < HF_HUGE_HINT_MIN)
                return realloc(b->data, ncap);
        p = hf_alloc_huge(ncap);
        if (p && b->data) {
                memcpy(p, b->data, b->len + 1);
                free(b->data);
        }
        return p;
}

int hf_buf_reserve(HfBuf *b, size_t n)
{
        size_t need, ncap;
        uint8_t *p;

        /* The last test keeps len + n + 1 from wrapping when max is SIZE_MAX ("no limit"). */
        if (n > b->max || b->len > b->max - n || b->len + n == SIZE_MAX)
                return -E2BIG;
        need = b->len + n + 1;
        if (need <= b->cap)
                return 0;
        ncap = b->cap ? b->cap : 64;
        while (ncap < need)
                ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
        if (ncap - 1 > b->max) /* not ncap > max + 1, which wraps for SIZE_MAX */
                ncap = b->max + 1;
        p = buf_grow(b, ncap);
        if (!p)
                return -ENOMEM;
        if (!b->data)
                p[0] = 0; /* the data is always a C string, even before the first append */
        b->data = p;
        b->cap = ncap;
        return 0;
}

int hf_buf_append(HfBuf *b, const void *p, size_t n)
{
        int r = hf_buf_reserve(b, n);
        if (r < 0)
                return r;
        if (n)
                memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = 0;
        return 0;
}

int hf_buf_putc(HfBuf *b, char c)
{
        return hf_buf_append(b, &c, 1);
}

int hf_buf_puts(HfBuf *b, const char *s)
{
        return hf_buf_append(b, s, strlen(s));
}

int hf_buf_vprintf(HfBuf *b, const char *fmt, va_list ap)
{
        va_list aq;
        int n, r;

        va_copy(aq, ap);
        n = vsnprintf(NULL, 0, fmt, aq);
        va_end(aq);
        if (n < 0)
                return -EINVAL;
        r = hf_buf_reserve(b, (size_t)n);
        if (r < 0)
                return r;
        (void)vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
        b->len += (size_t)n;
        return 0;
}

int hf_buf_printf(HfBuf *b, const char *fmt, ...)
{
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = hf_buf_vprintf(b, fmt, ap);
        va_end(ap);
        return r;
}

uint8_t *hf_buf_steal(HfBuf *b, size_t *ret_len)
{
        uint8_t *p = b->data;

        if (ret_len)
                *ret_len = b->len;
        b->data = NULL;
        b->len = b->cap = 0;
        return p;
}

int hf_buf_put_u64(HfBuf *b, uint64_t v)
{
        char tmp[20];
        size_t n = 0;

        do {
                tmp[sizeof(tmp) - 1 - n++] = (char)('0' + v % 10);
                v /= 10;
        } while (v);
        return hf_buf_append(b, tmp + sizeof(tmp) - n, n);
}

int hf_buf_put_key_u64(HfBuf *b, const char *key, uint64_t v)
{
        int r = hf_buf_puts(b, key);
        return r < 0 ? r : hf_buf_put_u64(b, v);
}

void hf_buf_trim(HfBuf *b, size_t keep)
{
        hf_buf_reset(b);
        if (b->cap > keep + 1) {
                uint8_t *p = realloc(b->data, keep + 1);
                if (p) {
                        b->data = p;
                        b->cap = keep + 1;
                        b->data[0] = 0;
                }
        }
}
