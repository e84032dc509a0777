/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Byte-exact encoders matching what restic 0.14 (built with Go 1.19) writes, so that tree blobs
 * hash identically (restic-format.md §6.4, §6.5), plus the matching decoders.
 */

#include <time.h>

#include "buf.h"

/*
 * Go encoding/json string (with the surrounding quotes): escapes " and \, \n \r \t, other
 * bytes < 0x20 as \u00XX, < > & as \u003c \u003e \u0026, U+2028/2029 as \u2028/\u2029, and
 * every invalid UTF-8 byte as \ufffd. Everything else raw.
 */
int hf_json_put_string(HfBuf *out, const char *s, size_t n);

/*
 * Go strconv.Quote without the surrounding quotes (how restic stores node names): \\ \" \a \b
 * \f \n \r \t \v, other control bytes, DEL and invalid UTF-8 bytes as \xHH, non-printable runes
 * (Go unicode.IsPrint, Go 1.19 tables) as \uXXXX or \UXXXXXXXX; printable runes raw.
 */
int hf_go_quote(HfBuf *out, const char *s, size_t n);
/*
 * Inverse of hf_go_quote (strconv.Unquote of '"' + s + '"'): appends the raw bytes.
 * -EINVAL for a malformed escape, a raw '"' or a raw newline.
 */
int hf_go_unquote(HfBuf *out, const char *s, size_t n);
/* Go unicode.IsPrint (letters, marks, numbers, punctuation, symbols and ASCII space). */
bool hf_go_isprint(int32_t cp);

/* A time with its UTC offset, as Go's time.Time carries it. */
typedef struct HfTime {
        int64_t sec;  /* seconds since the epoch (UTC) */
        int32_t nsec; /* 0..999999999 */
        int32_t off;  /* offset from UTC in seconds, as printed */
} HfTime;

/*
 * RFC3339Nano as Go prints it: trailing zeros of the fraction dropped (no '.' when zero),
 * "Z" when the offset is 0, otherwise ±hh:mm. Years outside 0..9999 are clamped like restic.
 * Appends without quotes.
 */
int hf_time_format(HfBuf *out, const HfTime *t);
/* Parses RFC3339 with optional fraction (1..9 digits), 'Z'/'z' or ±hh:mm. -EINVAL otherwise. */
int hf_time_parse(const char *s, size_t n, HfTime *ret);
/* The local offset in force at sec (tm_gmtoff), so times print as restic prints them. */
HfTime hf_time_local(int64_t sec, int32_t nsec);
HfTime hf_time_now(void);
