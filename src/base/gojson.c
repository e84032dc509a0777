/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "gojson.h"

#include <string.h>

#include "goprint-table.h"
#include "util.h"

/*
 * Everything here runs on names and timestamps an attacker may have written, so each reader checks
 * its bounds before it looks, and every encoder either appends its whole output or nothing: a
 * caller that hits the buffer ceiling must never see a half-escaped string it could mistake for a
 * whole one.
 */

static const char hexdigits[] = "0123456789abcdef";

/* Undo a partial append so that a failed call leaves out exactly as it found it. */
static int rollback(HfBuf *out, size_t len, int r)
{
        if (out->data && out->len > len) {
                out->len = len;
                out->data[len] = 0;
        }
        return r;
}

int hf_json_put_string(HfBuf *out, const char *s, size_t n)
{
        const uint8_t *p = (const uint8_t *)(s ? s : "");
        size_t start = 0, i = 0, len0 = out->len;
        int r;

        /* Every input byte yields at least one output byte, so this reservation never overshoots. */
        if (n > SIZE_MAX - 2)
                return -E2BIG;
        r = hf_buf_reserve(out, n + 2);
        if (r < 0)
                return r;
        r = hf_buf_putc(out, '"');
        if (r < 0)
                return rollback(out, len0, r);

        /* Each hf_utf8_decode() below runs inside while (i < n): it needs a non-empty tail. */
        while (i < n) {
                char esc[8];
                size_t esclen, step;
                uint8_t b = p[i];

                if (b < 0x80) {
                        /* Go's htmlSafeSet: printable ASCII except " \ < > &. DEL stays raw. */
                        if (b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' &&
                            b != '&') {
                                i++;
                                continue;
                        }
                        esc[0] = '\\';
                        switch (b) {
                        case '"':
                        case '\\':
                                esc[1] = (char)b;
                                esclen = 2;
                                break;
                        case '\n':
                                esc[1] = 'n';
                                esclen = 2;
                                break;
                        case '\r':
                                esc[1] = 'r';
                                esclen = 2;
                                break;
                        case '\t':
                                esc[1] = 't';
                                esclen = 2;
                                break;
                        default:
                                /* Go 1.19 has no \b or \f here; restic 0.14 trees say \u0008. */
                                memcpy(esc + 1, "u00", 3);
                                esc[4] = hexdigits[b >> 4];
                                esc[5] = hexdigits[b & 0xf];
                                esclen = 6;
                                break;
                        }
                        step = 1;
                } else {
                        int32_t cp;

                        step = hf_utf8_decode(p + i, n - i, &cp);
                        if (cp >= 0 && cp != 0x2028 && cp != 0x2029) {
                                i += step;
                                continue;
                        }
                        if (cp < 0)
                                memcpy(esc, "\\ufffd", 6);
                        else {
                                memcpy(esc, "\\u202", 5);
                                esc[5] = hexdigits[cp & 0xf];
                        }
                        esclen = 6;
                }

                r = hf_buf_append(out, p + start, i - start);
                if (r < 0)
                        return rollback(out, len0, r);
                r = hf_buf_append(out, esc, esclen);
                if (r < 0)
                        return rollback(out, len0, r);
                i += step;
                start = i;
        }

        r = hf_buf_append(out, p + start, n - start);
        if (r < 0)
                return rollback(out, len0, r);
        r = hf_buf_putc(out, '"');
        if (r < 0)
                return rollback(out, len0, r);
        return 0;
}

bool hf_go_isprint(int32_t cp)
{
        size_t lo = 0, hi;

        if (cp < 0 || cp > 0x10ffff)
                return false;
        if (cp <= 0xffff) {
                hi = ELEMENTSOF(hf_goprint_bmp);
                while (lo < hi) {
                        size_t mid = lo + (hi - lo) / 2;
                        if (cp < hf_goprint_bmp[mid][0])
                                hi = mid;
                        else if (cp > hf_goprint_bmp[mid][1])
                                lo = mid + 1;
                        else
                                return true;
                }
                return false;
        }
        hi = ELEMENTSOF(hf_goprint_astral);
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if ((uint32_t)cp < hf_goprint_astral[mid][0])
                        hi = mid;
                else if ((uint32_t)cp > hf_goprint_astral[mid][1])
                        lo = mid + 1;
                else
                        return true;
        }
        return false;
}

/* Appends \xHH, \uHHHH or \UHHHHHHHH (lowercase hex, as strconv writes it). */
static int put_hex_escape(HfBuf *out, char kind, uint32_t v, int digits)
{
        char esc[10];

        esc[0] = '\\';
        esc[1] = kind;
        for (int k = 0; k < digits; k++)
                esc[2 + k] = hexdigits[(v >> (4 * (digits - 1 - k))) & 0xf];
        return hf_buf_append(out, esc, 2 + (size_t)digits);
}

int hf_go_quote(HfBuf *out, const char *s, size_t n)
{
        const uint8_t *p = (const uint8_t *)(s ? s : "");
        size_t start = 0, i = 0, len0 = out->len;
        int r;

        r = hf_buf_reserve(out, n);
        if (r < 0)
                return r;

        while (i < n) {
                uint8_t b = p[i];
                int32_t cp;
                size_t step;
                char shortesc = 0;

                if (b < 0x80) {
                        if (b >= 0x20 && b < 0x7f && b != '"' && b != '\\') {
                                i++;
                                continue;
                        }
                        cp = b;
                        step = 1;
                } else {
                        step = hf_utf8_decode(p + i, n - i, &cp);
                        if (cp >= 0 && hf_go_isprint(cp)) {
                                i += step;
                                continue;
                        }
                }

                r = hf_buf_append(out, p + start, i - start);
                if (r < 0)
                        return rollback(out, len0, r);

                switch (cp) {
                case '"':
                case '\\':
                        shortesc = (char)cp;
                        break;
                case '\a':
                        shortesc = 'a';
                        break;
                case '\b':
                        shortesc = 'b';
                        break;
                case '\f':
                        shortesc = 'f';
                        break;
                case '\n':
                        shortesc = 'n';
                        break;
                case '\r':
                        shortesc = 'r';
                        break;
                case '\t':
                        shortesc = 't';
                        break;
                case '\v':
                        shortesc = 'v';
                        break;
                default:
                        break;
                }

                if (shortesc) {
                        char esc[2] = { '\\', shortesc };
                        r = hf_buf_append(out, esc, 2);
                } else if (cp < 0)
                        /* An invalid byte keeps its value, so unquoting restores the raw name. */
                        r = put_hex_escape(out, 'x', b, 2);
                else if (cp < 0x20 || cp == 0x7f)
                        r = put_hex_escape(out, 'x', (uint32_t)cp, 2);
                else if (cp < 0x10000)
                        r = put_hex_escape(out, 'u', (uint32_t)cp, 4);
                else
                        r = put_hex_escape(out, 'U', (uint32_t)cp, 8);
                if (r < 0)
                        return rollback(out, len0, r);

                i += step;
                start = i;
        }

        r = hf_buf_append(out, p + start, n - start);
        if (r < 0)
                return rollback(out, len0, r);
        return 0;
}

/* Encodes a valid scalar value (checked by the caller) as UTF-8; returns the length. */
static size_t encode_utf8(uint32_t cp, uint8_t buf[4])
{
        if (cp < 0x80) {
                buf[0] = (uint8_t)cp;
                return 1;
        }
        if (cp < 0x800) {
                buf[0] = (uint8_t)(0xc0 | cp >> 6);
                buf[1] = (uint8_t)(0x80 | (cp & 0x3f));
                return 2;
        }
        if (cp < 0x10000) {
                buf[0] = (uint8_t)(0xe0 | cp >> 12);
                buf[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
                buf[2] = (uint8_t)(0x80 | (cp & 0x3f));
                return 3;
        }
        buf[0] = (uint8_t)(0xf0 | cp >> 18);
        buf[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
        buf[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        buf[3] = (uint8_t)(0x80 | (cp & 0x3f));
        return 4;
}

/*
 * Decodes the escape after the backslash at s[0] (n bytes available, n >= 1). Returns the number
 * of bytes consumed after the backslash and fills bytes/ret_len, or -EINVAL. Mirrors Go 1.19's
 * strconv.UnquoteChar with quote '"': \' is an error there, so it is an error here too.
 */
static int unquote_escape(const uint8_t *s, size_t n, uint8_t bytes[4], size_t *ret_len)
{
        uint32_t v = 0;
        size_t digits;

        switch (s[0]) {
        case 'a':
                v = '\a';
                break;
        case 'b':
                v = '\b';
                break;
        case 'f':
                v = '\f';
                break;
        case 'n':
                v = '\n';
                break;
        case 'r':
                v = '\r';
                break;
        case 't':
                v = '\t';
                break;
        case 'v':
                v = '\v';
                break;
        case '\\':
        case '"':
                v = s[0];
                break;
        case 'x':
        case 'u':
        case 'U':
                digits = s[0] == 'x' ? 2 : s[0] == 'u' ? 4 : 8;
                if (n - 1 < digits)
                        return -EINVAL;
                for (size_t k = 1; k <= digits; k++) {
                        int h = hf_hex_digit(s[k]);
                        if (h < 0)
                                return -EINVAL;
                        v = v << 4 | (uint32_t)h;
                }
                if (s[0] == 'x') {
                        /* A single raw byte, possibly not UTF-8 on its own. */
                        bytes[0] = (uint8_t)v;
                        *ret_len = 1;
                } else {
                        if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
                                return -EINVAL;
                        *ret_len = encode_utf8(v, bytes);
                }
                return (int)digits + 1;
        case '0':
        case '1':
        case '2':
        case '3':
        case '4':
        case '5':
        case '6':
        case '7':
                if (n < 3)
                        return -EINVAL;
                for (size_t k = 0; k < 3; k++) {
                        if (s[k] < '0' || s[k] > '7')
                                return -EINVAL;
                        v = v << 3 | (uint32_t)(s[k] - '0');
                }
                if (v > 255)
                        return -EINVAL;
                bytes[0] = (uint8_t)v;
                *ret_len = 1;
                return 3;
        default:
                return -EINVAL;
        }
        bytes[0] = (uint8_t)v;
        *ret_len = 1;
        return 1;
}

int hf_go_unquote(HfBuf *out, const char *s, size_t n)
{
        static const uint8_t replacement[3] = { 0xef, 0xbf, 0xbd };
        const uint8_t *p = (const uint8_t *)(s ? s : "");
        size_t start = 0, i = 0, len0 = out->len;
        int r;

        while (i < n) {
                uint8_t b = p[i], bytes[4];
                size_t blen;
                int32_t cp;
                int used;

                if (b == '"' || b == '\n')
                        return rollback(out, len0, -EINVAL);
                if (b >= 0x80) {
                        size_t step = hf_utf8_decode(p + i, n - i, &cp);
                        if (cp >= 0) {
                                i += step;
                                continue;
                        }
                        /* Go's Unquote turns a raw invalid byte into U+FFFD; so do we. */
                        r = hf_buf_append(out, p + start, i - start);
                        if (r >= 0)
                                r = hf_buf_append(out, replacement, sizeof(replacement));
                        if (r < 0)
                                return rollback(out, len0, r);
                        i++;
                        start = i;
                        continue;
                }
                if (b != '\\') {
                        i++;
                        continue;
                }

                /* A backslash as the last byte would escape the closing quote. */
                if (i + 1 >= n)
                        return rollback(out, len0, -EINVAL);
                used = unquote_escape(p + i + 1, n - i - 1, bytes, &blen);
                if (used < 0)
                        return rollback(out, len0, used);
                r = hf_buf_append(out, p + start, i - start);
                if (r >= 0)
                        r = hf_buf_append(out, bytes, blen);
                if (r < 0)
                        return rollback(out, len0, r);
                i += 1 + (size_t)used;
                start = i;
        }

        r = hf_buf_append(out, p + start, n - start);
        if (r < 0)
                return rollback(out, len0, r);
        return 0;
}

/*
 * Civil calendar <-> days since 1970-01-01 in the proleptic Gregorian calendar (what Go uses for
 * every year), via 400-year eras so that negative and far-away days need no special cases.
 */
static int64_t floor_div(int64_t a, int64_t b)
{
        int64_t q = a / b;
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
        int64_t era, yoe, doy, doe;

        y -= m <= 2;
        era = floor_div(y, 400);
        yoe = y - era * 400;
        doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
        doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *ret_y, unsigned *ret_m, unsigned *ret_d)
{
        int64_t era, doe, yoe, y, doy, mp;

        z += 719468;
        era = floor_div(z, 146097);
        doe = z - era * 146097;
        yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        y = yoe + era * 400;
        doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        mp = (5 * doy + 2) / 153;
        *ret_d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
        *ret_m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
        *ret_y = y + (*ret_m <= 2);
}

static bool is_leap(int64_t y)
{
        return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(int64_t y, unsigned m)
{
        static const uint8_t days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* Brings nsec into 0..999999999 by carrying whole seconds, saturating instead of overflowing. */
static void normalize(int64_t *sec, int32_t *nsec)
{
        int64_t carry = floor_div(*nsec, 1000000000);

        *nsec = (int32_t)(*nsec - carry * 1000000000);
        if (__builtin_add_overflow(*sec, carry, sec))
                *sec = carry < 0 ? INT64_MIN : INT64_MAX;
}

/* Writes v in exactly `width` decimal digits (v < 10^width) and returns the end. */
static char *put_digits(char *q, unsigned v, int width)
{
        for (int i = width - 1; i >= 0; i--) {
                q[i] = (char)('0' + v % 10);
                v /= 10;
        }
        return q + width;
}

int hf_time_format(HfBuf *out, const HfTime *t)
{
        int64_t sec = t->sec, local, days, y;
        int32_t nsec = t->nsec, zone;
        unsigned m, d, sod;
        char buf[64], *q;

        normalize(&sec, &nsec);
        if (__builtin_add_overflow(sec, (int64_t)t->off, &local))
                local = sec < 0 ? INT64_MIN : INT64_MAX;
        /* Split with the remainder: days * 86400 could overflow near INT64_MIN. */
        days = local / 86400;
        if (local % 86400 < 0) {
                days--;
                sod = (unsigned)(local % 86400 + 86400);
        } else
                sod = (unsigned)(local % 86400);
        civil_from_days(days, &y, &m, &d);

        /*
         * restic's FixTime moves an out-of-range year to 0 or 9999 with AddDate, which keeps month,
         * day and clock and lets Go normalise Feb 29 of a non-leap year to Mar 1.
         */
        if (y < 0 || y > 9999) {
                y = y < 0 ? 0 : 9999;
                if (m == 2 && d == 29 && !is_leap(y)) {
                        m = 3;
                        d = 1;
                }
        }

        /* Written digit by digit: a backup formats three of these per file. */
        q = put_digits(buf, (unsigned)y, 4);
        *q++ = '-';
        q = put_digits(q, m, 2);
        *q++ = '-';
        q = put_digits(q, d, 2);
        *q++ = 'T';
        q = put_digits(q, sod / 3600, 2);
        *q++ = ':';
        q = put_digits(q, sod / 60 % 60, 2);
        *q++ = ':';
        q = put_digits(q, sod % 60, 2);

        if (nsec != 0) {
                /* Nine digits, then drop the trailing zeros as Go's ".999999999" does. */
                char frac[9];
                int digits = 9;
                uint32_t v = (uint32_t)nsec;

                for (int j = 8; j >= 0; j--) {
                        frac[j] = (char)('0' + v % 10);
                        v /= 10;
                }
                while (digits > 0 && frac[digits - 1] == '0')
                        digits--;
                *q++ = '.';
                memcpy(q, frac, (size_t)digits);
                q += digits;
        }

        /*
         * Go prints whole minutes only, truncating towards zero, and picks the sign from the
         * truncated value: -75 s prints "-00:01" and -30 s prints "+00:00". Only an offset of
         * exactly 0 becomes "Z".
         */
        if (t->off == 0)
                *q++ = 'Z';
        else {
                zone = t->off / 60;
                if (zone < 0) {
                        *q++ = '-';
                        zone = -zone;
                } else
                        *q++ = '+';
                /* Two digits at least, all of them when more (up to six: 2^31 s). */
                unsigned hours = (unsigned)(zone / 60);
                int width = 2;
                for (unsigned h = hours / 100; h; h /= 10)
                        width++;
                q = put_digits(q, hours, width);
                *q++ = ':';
                q = put_digits(q, (unsigned)(zone % 60), 2);
        }
        return hf_buf_append(out, buf, (size_t)(q - buf));
}

/* Reads exactly `digits` decimal digits at s; -1 if any is not a digit. */
static int parse_digits(const char *s, size_t digits)
{
        int v = 0;

        for (size_t k = 0; k < digits; k++) {
                if (s[k] < '0' || s[k] > '9')
                        return -1;
                v = v * 10 + (s[k] - '0');
        }
        return v;
}

int hf_time_parse(const char *s, size_t n, HfTime *ret)
{
        int year, month, day, hour, min, secs, nsec = 0, off;
        int64_t tod;
        size_t i;

        /* "YYYY-MM-DDTHH:MM:SS" and at least a one-byte zone. */
        if (!s || n < 20)
                return -EINVAL;
        if (s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':')
                return -EINVAL;
        year = parse_digits(s, 4);
        month = parse_digits(s + 5, 2);
        day = parse_digits(s + 8, 2);
        hour = parse_digits(s + 11, 2);
        min = parse_digits(s + 14, 2);
        secs = parse_digits(s + 17, 2);
        if (year < 0 || month < 1 || month > 12 || day < 1 ||
            (unsigned)day > days_in_month(year, (unsigned)month) || hour < 0 || hour > 23 ||
            min < 0 || min > 59 || secs < 0 || secs > 59)
                return -EINVAL;

        i = 19;
        if (s[i] == '.') {
                size_t digits = 0;

                i++;
                while (i < n && s[i] >= '0' && s[i] <= '9' && digits < 9) {
                        nsec = nsec * 10 + (s[i] - '0');
                        i++;
                        digits++;
                }
                if (digits == 0 || (i < n && s[i] >= '0' && s[i] <= '9'))
                        return -EINVAL;
                while (digits++ < 9)
                        nsec *= 10;
        }

        if (i >= n)
                return -EINVAL;
        if (s[i] == 'Z' || s[i] == 'z') {
                off = 0;
                i++;
        } else if (s[i] == '+' || s[i] == '-') {
                int oh, om;

                if (n - i != 6 || s[i + 3] != ':')
                        return -EINVAL;
                oh = parse_digits(s + i + 1, 2);
                om = parse_digits(s + i + 4, 2);
                /* RFC 3339's ranges; Go 1.19 checks none, but nothing real goes beyond them. */
                if (oh < 0 || oh > 23 || om < 0 || om > 59)
                        return -EINVAL;
                off = (oh * 60 + om) * 60;
                if (s[i] == '-')
                        off = -off;
                i += 6;
        } else
                return -EINVAL;
        if (i != n)
                return -EINVAL;

        tod = (int64_t)hour * 3600 + (int64_t)min * 60 + secs - off;
        *ret = (HfTime){
                .sec = days_from_civil(year, (unsigned)month, (unsigned)day) * 86400 + tod,
                .nsec = nsec,
                .off = off,
        };
        return 0;
}

HfTime hf_time_local(int64_t sec, int32_t nsec)
{
        struct tm tm;
        time_t tt;
        int32_t off = 0;

        /* localtime_r() is costly (a backup asks for three times per file). Zone offsets
         * change at most on quarter hours, so one lookup per 15-minute bucket suffices. */
        static __thread int64_t cached_bucket = INT64_MIN;
        static __thread int32_t cached_off;
        int64_t bucket;

        normalize(&sec, &nsec);
        bucket = sec >= 0 ? sec / 900 : (sec - 899) / 900;
        if (bucket == cached_bucket)
                return (HfTime){ .sec = sec, .nsec = nsec, .off = cached_off };
        tt = (time_t)sec;
        /* Out of localtime's range (year overflowing int): print it as UTC rather than fail. */
        if ((int64_t)tt == sec && localtime_r(&tt, &tm))
                off = (int32_t)tm.tm_gmtoff;
        cached_bucket = bucket;
        cached_off = off;
        return (HfTime){ .sec = sec, .nsec = nsec, .off = off };
}

HfTime hf_time_now(void)
{
        struct timespec ts;

        if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
                return hf_time_local(0, 0);
        return hf_time_local((int64_t)ts.tv_sec, (int32_t)ts.tv_nsec);
}
