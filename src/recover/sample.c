/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The sample tree of a public service that the drill and the tests attack: documents of a few
 * departments (text, Markdown, CSV, JSON, HTML, PDF), images (PNG, PPM, PGM) with their real
 * signatures, a SQLite database, logs, a web root, configuration, and one bulk file of a few
 * MiB (for intermittent encryption). Contents are low-entropy text or structured data, as on a
 * real server, so the sentinel's scoring sees real format destruction.
 */
#include <fcntl.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/stat.h>

#include "../base/log.h"
#include "../base/util.h"
#include "recover-internal.h"

typedef struct Gen {
        uint64_t s;
        int dirfd;
        int (*add)(void *ud, const char *rel);
        void *ud;
        HfBuf b;
} Gen;

static uint64_t rnd(Gen *g)
{
        g->s ^= g->s << 13;
        g->s ^= g->s >> 7;
        g->s ^= g->s << 17;
        return g->s;
}

static const char *const words[] = {
        "invoice",   "customer", "account",  "payment", "delivery",  "contract", "service",
        "report",    "quarter",  "budget",   "order",   "support",   "ticket",   "server",
        "release",   "meeting",  "agenda",   "project", "milestone", "review",   "approved",
        "pending",   "total",    "amount",   "due",     "the",       "and",      "of",
        "for",       "with",     "to",       "in",      "on",        "by",       "is",
        "was",       "will",     "be",       "a",       "an",        "north",    "south",
        "warehouse", "shipment", "refund",   "renewal", "license",   "policy",   "employee",
        "salary",    "holiday",  "schedule", "backup",  "database",  "network",  "update",
};

static void text(Gen *g, size_t bytes)
{
        size_t col = 0;
        while (g->b.len < bytes) {
                const char *w = words[rnd(g) % ELEMENTSOF(words)];
                (void)hf_buf_puts(&g->b, w);
                col += strlen(w) + 1;
                if (rnd(g) % 11 == 0)
                        (void)hf_buf_printf(&g->b, " %llu", (unsigned long long)(rnd(g) % 100000));
                if (col > 72) {
                        (void)hf_buf_putc(&g->b, rnd(g) % 5 == 0 ? '.' : ',');
                        (void)hf_buf_putc(&g->b, '\n');
                        col = 0;
                } else
                        (void)hf_buf_putc(&g->b, ' ');
        }
        (void)hf_buf_putc(&g->b, '\n');
}

static int mkdirs(Gen *g, const char *rel)
{
        char p[512];
        (void)snprintf(p, sizeof(p), "%s", rel);
        for (char *s = p; (s = strchr(s, '/')); s++) {
                *s = 0;
                if (mkdirat(g->dirfd, p, 0755) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        return 0;
}

static int emit(Gen *g, const char *rel, mode_t mode)
{
        int r = mkdirs(g, rel);
        if (r < 0)
                return r;
        _cleanup_close_ int fd = openat(g->dirfd, rel,
                                        O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return log_error_errno(errno, "%s: cannot create: %m", rel);
        r = hf_write_all(fd, g->b.data, g->b.len);
        if (r < 0)
                return r;
        hf_buf_reset(&g->b);
        /* A plausible past mtime, so restores are checked for it. */
        struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT },
                                  { .tv_sec = 1700000000 + (time_t)(rnd(g) % 20000000),
                                    .tv_nsec = (long)(rnd(g) % 1000000000) } };
        (void)futimens(fd, ts);
        return g->add(g->ud, rel);
}

/* ---- PNG (stored deflate blocks, valid CRCs and Adler-32) ---- */

static uint32_t crc_table[256];

static void crc_init(void)
{
        for (uint32_t n = 0; n < 256; n++) {
                uint32_t c = n;
                for (int k = 0; k < 8; k++)
                        c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
                crc_table[n] = c;
        }
}

static uint32_t crc32_of(const uint8_t *p, size_t n)
{
        uint32_t c = 0xffffffffu;
        for (size_t i = 0; i < n; i++)
                c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
        return c ^ 0xffffffffu;
}

static void put_be32(HfBuf *b, uint32_t v)
{
        uint8_t x[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
        (void)hf_buf_append(b, x, 4);
}

static void chunk(HfBuf *b, const char *type, const uint8_t *data, size_t n)
{
        put_be32(b, (uint32_t)n);
        size_t start = b->len;
        (void)hf_buf_append(b, type, 4);
        if (n)
                (void)hf_buf_append(b, data, n);
        put_be32(b, crc32_of(b->data + start, n + 4));
}

static int png(Gen *g, unsigned w, unsigned h)
{
        _cleanup_buf_ HfBuf raw = HF_BUF_INIT(64 << 20), z = HF_BUF_INIT(64 << 20);
        uint8_t ihdr[13] = { 0 };
        uint32_t a = 1, bsum = 0;
        unsigned phase = (unsigned)(rnd(g) % 256);

        if (w == 0 || h == 0)
                return -EINVAL;

        for (unsigned y = 0; y < h; y++) {
                (void)hf_buf_putc(&raw, 0);
                for (unsigned x = 0; x < w; x++) {
                        uint8_t px[3] = { (uint8_t)(x * 255 / w + phase), (uint8_t)(y * 255 / h),
                                          (uint8_t)(((x / 8 + y / 8) % 2) * 128 + (rnd(g) % 4)) };
                        (void)hf_buf_append(&raw, px, 3);
                }
        }
        (void)hf_buf_putc(&z, 0x78);
        (void)hf_buf_putc(&z, 0x01);
        for (size_t off = 0; off < raw.len;) {
                size_t n = MIN((size_t)65535, raw.len - off);
                uint8_t hdr[5] = { (uint8_t)(off + n == raw.len), (uint8_t)n, (uint8_t)(n >> 8),
                                   (uint8_t)~n, (uint8_t)(~n >> 8) };
                (void)hf_buf_append(&z, hdr, 5);
                (void)hf_buf_append(&z, raw.data + off, n);
                off += n;
        }
        for (size_t i = 0; i < raw.len; i++) {
                a = (a + raw.data[i]) % 65521;
                bsum = (bsum + a) % 65521;
        }
        put_be32(&z, (bsum << 16) | a);
        (void)hf_buf_append(&g->b, "\x89PNG\r\n\x1a\n", 8);
        ihdr[0] = (uint8_t)(w >> 24);
        ihdr[1] = (uint8_t)(w >> 16);
        ihdr[2] = (uint8_t)(w >> 8);
        ihdr[3] = (uint8_t)w;
        ihdr[4] = (uint8_t)(h >> 24);
        ihdr[5] = (uint8_t)(h >> 16);
        ihdr[6] = (uint8_t)(h >> 8);
        ihdr[7] = (uint8_t)h;
        ihdr[8] = 8;
        ihdr[9] = 2;
        chunk(&g->b, "IHDR", ihdr, sizeof(ihdr));
        chunk(&g->b, "IDAT", z.data, z.len);
        chunk(&g->b, "IEND", NULL, 0);
        return 0;
}

static void pnm(Gen *g, bool color, unsigned w, unsigned h)
{
        (void)hf_buf_printf(&g->b, "%s\n%u %u\n255\n", color ? "P6" : "P5", w, h);
        for (unsigned y = 0; y < h; y++)
                for (unsigned x = 0; x < w; x++) {
                        uint8_t v = (uint8_t)((x ^ y) + (rnd(g) % 3));
                        (void)hf_buf_putc(&g->b, (char)v);
                        if (color) {
                                (void)hf_buf_putc(&g->b, (char)(uint8_t)(x * 2));
                                (void)hf_buf_putc(&g->b, (char)(uint8_t)(y * 2));
                        }
                }
}

static void pdf(Gen *g, size_t bytes)
{
        _cleanup_buf_ HfBuf body = HF_BUF_INIT(16 << 20);
        HfBuf saved = g->b;

        g->b = body;
        text(g, bytes);
        body = g->b;
        g->b = saved;
        (void)hf_buf_printf(&g->b,
                            "%%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
                            "2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n"
                            "3 0 obj << /Type /Page /Parent 2 0 R /Contents 4 0 R >> endobj\n"
                            "4 0 obj << /Length %zu >>\nstream\n",
                            body.len);
        (void)hf_buf_append(&g->b, body.data, body.len);
        (void)hf_buf_puts(&g->b, "\nendstream\nendobj\ntrailer << /Root 1 0 R >>\n%%EOF\n");
}

static int database(Gen *g, const char *rel, unsigned scale)
{
        char path[512];
        sqlite3 *db = NULL;
        int r = 0;

        if (scale == 0)
                scale = 1;
        r = mkdirs(g, rel);
        if (r < 0)
                return r;
        (void)snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", g->dirfd, rel);
        if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
            SQLITE_OK) {
                sqlite3_close(db);
                return log_error_errno(EIO, "%s: cannot create the sample database", rel);
        }
        if (sqlite3_exec(db,
                         "PRAGMA journal_mode=DELETE;"
                         "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, email TEXT,"
                         " city TEXT, created INTEGER);"
                         "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER,"
                         " item TEXT, amount REAL, status TEXT);"
                         "BEGIN;",
                         NULL, NULL, NULL) != SQLITE_OK) {
                r = -EIO;
                goto out;
        }
        sqlite3_stmt *c = NULL, *o = NULL;
        sqlite3_prepare_v2(db, "INSERT INTO customers VALUES (?,?,?,?,?)", -1, &c, NULL);
        sqlite3_prepare_v2(db, "INSERT INTO orders VALUES (?,?,?,?,?)", -1, &o, NULL);
        for (unsigned i = 1; c && i <= 1500 * scale; i++) {
                char name[64], mail[96];
                (void)snprintf(name, sizeof(name), "%s %s", words[rnd(g) % ELEMENTSOF(words)],
                               words[rnd(g) % ELEMENTSOF(words)]);
                (void)snprintf(mail, sizeof(mail), "user%u@example.org", i);
                sqlite3_bind_int(c, 1, (int)i);
                sqlite3_bind_text(c, 2, name, -1, SQLITE_TRANSIENT);
                sqlite3_bind_text(c, 3, mail, -1, SQLITE_TRANSIENT);
                sqlite3_bind_text(c, 4, words[rnd(g) % ELEMENTSOF(words)], -1, SQLITE_STATIC);
                sqlite3_bind_int64(c, 5, 1600000000 + (int64_t)(rnd(g) % 100000000));
                (void)sqlite3_step(c);
                sqlite3_reset(c);
        }
        for (unsigned i = 1; o && i <= 8000 * scale; i++) {
                sqlite3_bind_int(o, 1, (int)i);
                sqlite3_bind_int(o, 2, (int)(rnd(g) % (1500ULL * scale)) + 1);
                sqlite3_bind_text(o, 3, words[rnd(g) % ELEMENTSOF(words)], -1, SQLITE_STATIC);
                sqlite3_bind_double(o, 4, (double)(rnd(g) % 100000) / 100.0);
                sqlite3_bind_text(o, 5, rnd(g) % 3 ? "shipped" : "pending", -1, SQLITE_STATIC);
                (void)sqlite3_step(o);
                sqlite3_reset(o);
        }
        sqlite3_finalize(c);
        sqlite3_finalize(o);
        if (sqlite3_exec(db, "COMMIT;", NULL, NULL, NULL) != SQLITE_OK)
                r = -EIO;
out:
        sqlite3_close(db);
        if (r < 0)
                return log_error_errno(r, "%s: cannot fill the sample database", rel);
        return g->add(g->ud, rel);
}

int hf_sample_tree(int dirfd, unsigned scale, int (*add)(void *ud, const char *rel), void *ud)
{
        static const char *const depts[] = { "finance", "hr",      "legal",
                                             "sales",   "support", "projects" };
        static const char *const exts[] = { "txt", "md", "csv", "json", "html", "pdf" };
        Gen g = { .dirfd = dirfd, .add = add, .ud = ud, .b = HF_BUF_INIT(256 << 20) };
        char rel[256];
        int r = 0;

        if (scale == 0)
                scale = 1;
        (void)hf_random_bytes(&g.s, sizeof(g.s));
        g.s |= 1;
        crc_init();

        for (size_t d = 0; d < ELEMENTSOF(depts); d++)
                for (unsigned i = 0; i < 10 * scale; i++) {
                        const char *e = exts[(d + i) % ELEMENTSOF(exts)];
                        size_t size = 2048 + rnd(&g) % (48 * 1024);
                        (void)snprintf(rel, sizeof(rel), "docs/%s/%s-%03u.%s", depts[d],
                                       words[rnd(&g) % 18], i, e);
                        if (strcmp(e, "pdf") == 0)
                                pdf(&g, size);
                        else if (strcmp(e, "csv") == 0) {
                                (void)hf_buf_puts(&g.b, "id,customer,item,amount,status\n");
                                for (unsigned k = 0; g.b.len < size; k++)
                                        (void)hf_buf_printf(&g.b, "%u,%llu,%s,%llu.%02llu,%s\n", k,
                                                            (unsigned long long)(rnd(&g) % 5000),
                                                            words[rnd(&g) % ELEMENTSOF(words)],
                                                            (unsigned long long)(rnd(&g) % 9999),
                                                            (unsigned long long)(rnd(&g) % 100),
                                                            rnd(&g) % 2 ? "paid" : "open");
                        } else if (strcmp(e, "json") == 0) {
                                (void)hf_buf_puts(&g.b, "{\"records\":[\n");
                                for (unsigned k = 0; g.b.len < size; k++)
                                        (void)hf_buf_printf(&g.b,
                                                            "%s{\"id\":%u,\"name\":\"%s\","
                                                            "\"value\":%llu}\n",
                                                            k ? "," : "", k,
                                                            words[rnd(&g) % ELEMENTSOF(words)],
                                                            (unsigned long long)(rnd(&g) % 1000));
                                (void)hf_buf_puts(&g.b, "]}\n");
                        } else if (strcmp(e, "html") == 0) {
                                (void)hf_buf_puts(&g.b, "<!DOCTYPE html>\n<html><body><p>\n");
                                text(&g, size);
                                (void)hf_buf_puts(&g.b, "</p></body></html>\n");
                        } else
                                text(&g, size);
                        r = emit(&g, rel, 0644);
                        if (r < 0)
                                goto out;
                }
        for (unsigned i = 0; i < 8 * scale; i++) {
                (void)snprintf(rel, sizeof(rel), "images/photo-%03u.png", i);
                png(&g, 64 + (unsigned)(rnd(&g) % 192), 48 + (unsigned)(rnd(&g) % 96));
                r = emit(&g, rel, 0644);
                if (r < 0)
                        goto out;
                (void)snprintf(rel, sizeof(rel), "images/scan-%03u.%s", i, i % 2 ? "pgm" : "ppm");
                pnm(&g, i % 2 == 0, 96 + (unsigned)(rnd(&g) % 96), 64 + (unsigned)(rnd(&g) % 64));
                r = emit(&g, rel, 0644);
                if (r < 0)
                        goto out;
        }
        r = database(&g, "db/shop.sqlite", scale);
        if (r < 0)
                goto out;
        static const char *const logs[] = { "logs/access.log", "logs/error.log", "logs/app.log",
                                            "logs/access.log.1" };
        for (size_t i = 0; i < ELEMENTSOF(logs); i++) {
                for (unsigned k = 0; g.b.len < (i == 0 ? 256 * 1024u : 64 * 1024u) * scale; k++)
                        (void)hf_buf_printf(&g.b,
                                            "2026-11-%02llu 10:%02u:%02u 10.0.%llu.%llu \"GET "
                                            "/%s/%s HTTP/1.1\" %s %llu\n",
                                            (unsigned long long)(1 + rnd(&g) % 27), k / 60 % 60,
                                            k % 60, (unsigned long long)(rnd(&g) % 255),
                                            (unsigned long long)(rnd(&g) % 255),
                                            words[rnd(&g) % ELEMENTSOF(words)],
                                            words[rnd(&g) % ELEMENTSOF(words)],
                                            rnd(&g) % 9 ? "200" : "404",
                                            (unsigned long long)(rnd(&g) % 50000));
                r = emit(&g, logs[i], 0640);
                if (r < 0)
                        goto out;
        }
        static const char *const www[] = { "www/index.html", "www/about.html", "www/style.css",
                                           "www/app.js" };
        for (size_t i = 0; i < ELEMENTSOF(www); i++) {
                (void)hf_buf_puts(&g.b, i < 2 ? "<!DOCTYPE html>\n<html><body>\n" : "/* site */\n");
                text(&g, 4096 + rnd(&g) % 8192);
                r = emit(&g, www[i], 0644);
                if (r < 0)
                        goto out;
        }
        static const char *const etc[] = { "etc/app.conf", "etc/db.ini", "etc/users.yaml" };
        for (size_t i = 0; i < ELEMENTSOF(etc); i++) {
                for (unsigned k = 0; k < 40; k++)
                        (void)hf_buf_printf(&g.b, "%s_%u = %s\n", words[rnd(&g) % 18], k,
                                            words[rnd(&g) % ELEMENTSOF(words)]);
                r = emit(&g, etc[i], i == 2 ? 0600 : 0644);
                if (r < 0)
                        goto out;
        }
        /* One bulk file over several MiB: intermittent encryption skips every other MiB. */
        text(&g, (size_t)(3 * scale) << 20);
        r = emit(&g, "data/archive-2025.txt", 0644);
out:
        hf_buf_free(&g.b);
        return r;
}

int hf_sample_flat(int dirfd, unsigned n, unsigned size, int (*add)(void *ud, const char *rel),
                   void *ud)
{
        Gen g = { .dirfd = dirfd, .add = add, .ud = ud, .b = HF_BUF_INIT(256 << 20) };
        char rel[64];
        int r = 0;

        (void)hf_random_bytes(&g.s, sizeof(g.s));
        g.s |= 1;
        for (unsigned i = 0; i < n && r == 0; i++) {
                (void)snprintf(rel, sizeof(rel), "docs/d%03u/f%06u.txt", i / 100, i);
                text(&g, size > 1 ? size - 1 : 1);
                r = emit(&g, rel, 0644);
        }
        hf_buf_free(&g.b);
        return r;
}
