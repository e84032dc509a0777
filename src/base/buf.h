/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A growable byte buffer with a ceiling (curl's dynbuf). Appending past max fails with -E2BIG
 * and leaves the buffer as it was. The data is always followed by a NUL byte that is not
 * counted in len, so text can be used as a C string.
 */

#include <stdarg.h>

#include "macro.h"

typedef struct HfBuf {
        uint8_t *data;
        size_t len;
        size_t cap;
        size_t max;
        bool hint_huge; /* large allocations get hf_mem_hint_huge() (filled at once, soon) */
} HfBuf;

#define HF_BUF_INIT(m) ((HfBuf){ .data = NULL, .len = 0, .cap = 0, .max = (m) })

void hf_buf_init(HfBuf *b, size_t max);
void hf_buf_free(HfBuf *b);
/* Empties the buffer, keeps the allocation. */
void hf_buf_reset(HfBuf *b);
/* Makes room for n more bytes (plus the NUL). -E2BIG past max, -ENOMEM. */
int hf_buf_reserve(HfBuf *b, size_t n);
int hf_buf_append(HfBuf *b, const void *p, size_t n);
int hf_buf_putc(HfBuf *b, char c);
int hf_buf_puts(HfBuf *b, const char *s);
int hf_buf_printf(HfBuf *b, const char *fmt, ...) _printf_(2, 3);
int hf_buf_vprintf(HfBuf *b, const char *fmt, va_list ap) _printf_(2, 0);
/*
 * Empties the buffer and gives memory back when it holds more than keep bytes of capacity,
 * so one large item does not keep a buffer large for the rest of a run.
 */
void hf_buf_trim(HfBuf *b, size_t keep);
/* Decimal text of v, without printf (hot paths: tree and index encoding). */
int hf_buf_put_u64(HfBuf *b, uint64_t v);
/* key (a literal such as ",\"size\":") followed by the decimal value. */
int hf_buf_put_key_u64(HfBuf *b, const char *key, uint64_t v);
/* Hands the data to the caller (NUL-terminated, may be NULL when empty); the buffer is reset. */
uint8_t *hf_buf_steal(HfBuf *b, size_t *ret_len);

static inline void hf_buf_freep(HfBuf *b)
{
        hf_buf_free(b);
}
#define _cleanup_buf_ _cleanup_(hf_buf_freep)
