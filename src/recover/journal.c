/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The recover journal and the time parser: the two small parsers of recover, both fuzzed
 * (fuzz-recover-journal, fuzz-recover-time). The journal is a text file under the state
 * folder, appended one line per finished step and synced, so a rerun after kill -9 knows what
 * is done; a line torn by a crash is skipped (the step it describes is re-checked against the
 * filesystem anyway).
 *
 *   holdfast-recover-journal 1 BEGAN
 *   D SHA256 PATH      an original is back at PATH with this content
 *   R - PATH           an attacker's file was removed
 *   K SHA256|- PATH    PATH left alone: another process changed it after the incident
 *   C TIME             the run completed
 *
 * PATH is percent-escaped: bytes outside '!'..'~' and '%' itself become %XX.
 */
#include <math.h>
#include <string.h>
#include <time.h>

#include "../base/gojson.h"
#include "../base/log.h"
#include "../base/util.h"
#include "recover.h"

#define JOURNAL_MAGIC "holdfast-recover-journal 1"
#define JOURNAL_MAX_ENTRIES (1u << 22)
#define PATH_MAX_BYTES 4096

void hf_journal_done(HfJournal *j)
{
        for (size_t i = 0; i < j->n; i++)
                free(j->v[i].path);
        free(j->v);
        *j = (HfJournal){ 0 };
}

/* Unescapes s[0..n) into a new string; -EPROTO for bad escapes, NUL bytes or over-long. */
static int unescape(const char *s, size_t n, char **ret)
{
        _cleanup_free_ char *p = NULL;
        size_t k = 0;

        if (n == 0 || n > 3 * PATH_MAX_BYTES)
                return -EPROTO;
        p = malloc(n + 1);
        if (!p)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (c == '%') {
                        if (i + 2 >= n)
                                return -EPROTO;
                        int a = hf_hex_digit((uint8_t)s[i + 1]),
                            b = hf_hex_digit((uint8_t)s[i + 2]);
                        if (a < 0 || b < 0)
                                return -EPROTO;
                        c = (char)(a * 16 + b);
                        if (c == 0)
                                return -EPROTO;
                        i += 2;
                } else if ((unsigned char)c < '!' || (unsigned char)c > '~')
                        return -EPROTO;
                p[k++] = c;
        }
        if (k > PATH_MAX_BYTES)
                return -EPROTO;
        p[k] = 0;
        *ret = TAKE_PTR(p);
        return 0;
}

static bool is_sha(const char *s, size_t n)
{
        if (n != 64)
                return false;
        for (size_t i = 0; i < n; i++)
                if (hf_hex_digit((uint8_t)s[i]) < 0 || (s[i] >= 'A' && s[i] <= 'F'))
                        return false;
        return true;
}

static int parse_line(HfJournal *j, const char *l, size_t n)
{
        const char *sp1, *sp2;
        HfJournalEntry e = { 0 };
        int r;

        if (n >= 2 && l[0] == 'C' && l[1] == ' ') {
                j->complete = true;
                return 0;
        }
        if (n < 5 || l[1] != ' ' || (l[0] != 'D' && l[0] != 'R' && l[0] != 'K'))
                return -EPROTO;
        sp1 = l + 1;
        sp2 = memchr(sp1 + 1, ' ', n - 2);
        if (!sp2)
                return -EPROTO;
        size_t shan = (size_t)(sp2 - sp1 - 1);
        if (shan == 1 && sp1[1] == '-')
                e.sha256[0] = 0;
        else if (is_sha(sp1 + 1, shan)) {
                memcpy(e.sha256, sp1 + 1, 64);
                e.sha256[64] = 0;
        } else
                return -EPROTO;
        if (l[0] == 'D' && !e.sha256[0])
                return -EPROTO;
        r = unescape(sp2 + 1, n - (size_t)(sp2 + 1 - l), &e.path);
        if (r < 0)
                return r;
        if (j->n >= JOURNAL_MAX_ENTRIES) {
                free(e.path);
                return -E2BIG;
        }
        if (j->n % 256 == 0) {
                HfJournalEntry *nv = realloc(j->v, (j->n + 256) * sizeof(*nv));
                if (!nv) {
                        free(e.path);
                        return -ENOMEM;
                }
                j->v = nv;
        }
        e.verb = (HfJournalVerb)l[0];
        j->v[j->n++] = e;
        return 0;
}

int hf_journal_parse(const char *text, size_t n, HfJournal *ret)
{
        HfJournal j = { 0 };
        const char *p = text, *end = text + n, *nl;
        size_t ml = strlen(JOURNAL_MAGIC);

        nl = memchr(p, '\n', n);
        if (!nl || (size_t)(nl - p) < ml || memcmp(p, JOURNAL_MAGIC, ml) != 0 ||
            (nl - p > (ptrdiff_t)ml && p[ml] != ' '))
                return -EPROTO;
        if (nl - p > (ptrdiff_t)ml + 1) {
                char num[32];
                size_t k = (size_t)(nl - p) - ml - 1;
                if (k < sizeof(num)) {
                        memcpy(num, p + ml + 1, k);
                        num[k] = 0;
                        char *e = NULL;
                        double d = strtod(num, &e);
                        if (e && !*e && isfinite(d))
                                j.began = d;
                }
        }
        for (p = nl + 1; p < end; p = nl + 1) {
                nl = memchr(p, '\n', (size_t)(end - p));
                if (!nl)
                        break; /* torn last line */
                int r = parse_line(&j, p, (size_t)(nl - p));
                if (r == -ENOMEM || r == -E2BIG) {
                        hf_journal_done(&j);
                        return r;
                }
        }
        *ret = j;
        return 0;
}

int hf_journal_format(HfBuf *out, HfJournalVerb verb, const char *sha, const char *path)
{
        int r = hf_buf_printf(out, "%c %s ", (char)verb, sha && *sha ? sha : "-");
        for (const unsigned char *s = (const unsigned char *)path; r >= 0 && *s; s++) {
                if (*s < '!' || *s > '~' || *s == '%')
                        r = hf_buf_printf(out, "%%%02X", *s);
                else
                        r = hf_buf_putc(out, (char)*s);
        }
        if (r >= 0)
                r = hf_buf_putc(out, '\n');
        return r;
}

const HfJournalEntry *hf_journal_find(const HfJournal *j, const char *path)
{
        for (size_t i = j->n; i > 0; i--)
                if (strcmp(j->v[i - 1].path, path) == 0)
                        return &j->v[i - 1];
        return NULL;
}

/* ---- times ---- */

static bool all_digits(const char *s, size_t n)
{
        if (!n)
                return false;
        for (size_t i = 0; i < n; i++)
                if (s[i] < '0' || s[i] > '9')
                        return false;
        return true;
}

int hf_recover_parse_time(const char *s, size_t n, double now, double *ret)
{
        char buf[64];
        HfTime t;

        if (n == 0 || n >= sizeof(buf) || memchr(s, 0, n))
                return -EINVAL;
        memcpy(buf, s, n);
        buf[n] = 0;

        /* Relative: -N[smhd]. */
        if (buf[0] == '-') {
                size_t k = n - 1;
                double mult = 1;
                if (k >= 2) {
                        switch (buf[n - 1]) {
                        case 's':
                                mult = 1;
                                k--;
                                break;
                        case 'm':
                                mult = 60;
                                k--;
                                break;
                        case 'h':
                                mult = 3600;
                                k--;
                                break;
                        case 'd':
                                mult = 86400;
                                k--;
                                break;
                        default:
                                break;
                        }
                }
                if (!all_digits(buf + 1, k) || k > 9)
                        return -EINVAL;
                uint64_t v = 0;
                for (size_t i = 0; i < k; i++)
                        v = v * 10 + (uint64_t)(buf[1 + i] - '0');
                *ret = now - (double)v * mult;
                return 0;
        }
        /* Unix seconds, optionally with a fraction. */
        {
                const char *dot = strchr(buf, '.');
                size_t ip = dot ? (size_t)(dot - buf) : n;
                if (all_digits(buf, ip) && ip <= 12 &&
                    (!dot || (all_digits(dot + 1, n - ip - 1) && n - ip - 1 <= 9))) {
                        char *e = NULL;
                        double d = strtod(buf, &e);
                        if (!e || *e || !isfinite(d))
                                return -EINVAL;
                        *ret = d;
                        return 0;
                }
        }
        /* RFC 3339. */
        if (hf_time_parse(buf, n, &t) == 0) {
                *ret = (double)t.sec + (double)t.nsec / 1e9;
                return 0;
        }
        /* "YYYY-MM-DD HH:MM[:SS]" in local time. */
        {
                struct tm tm = { 0 };
                int y, mo, d, h, mi, sec = 0, consumed = 0;
                if ((sscanf(buf, "%4d-%2d-%2d %2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec,
                            &consumed) == 6 &&
                     (size_t)consumed == n) ||
                    (sec = 0, consumed = 0,
                     sscanf(buf, "%4d-%2d-%2d %2d:%2d%n", &y, &mo, &d, &h, &mi, &consumed) == 5 &&
                             (size_t)consumed == n)) {
                        if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 ||
                            h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 60)
                                return -EINVAL;
                        tm.tm_year = y - 1900;
                        tm.tm_mon = mo - 1;
                        tm.tm_mday = d;
                        tm.tm_hour = h;
                        tm.tm_min = mi;
                        tm.tm_sec = sec;
                        tm.tm_isdst = -1;
                        time_t tt = mktime(&tm);
                        if (tt == (time_t)-1)
                                return -EINVAL;
                        *ret = (double)tt;
                        return 0;
                }
        }
        return -EINVAL;
}
