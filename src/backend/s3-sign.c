/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * AWS Signature Version 4 for S3 (header-based authentication), with OpenSSL's HMAC-SHA256.
 * Checked against the examples of AWS's "Signature Calculations for the Authorization Header"
 * in tests/unit/test-s3.c.
 */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#include "../base/util.h"
#include "s3.h"

#define ALGORITHM "AWS4-HMAC-SHA256"

int hf_s3_uri_encode(HfBuf *out, const char *s, size_t n, bool keep_slash)
{
        static const char hex[] = "0123456789ABCDEF";
        int r = 0;

        for (size_t i = 0; i < n && r >= 0; i++) {
                unsigned char c = (unsigned char)s[i];
                if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.' || c == '~' || (c == '/' && keep_slash))
                        r = hf_buf_putc(out, (char)c);
                else {
                        char esc[3] = { '%', hex[c >> 4], hex[c & 15] };
                        r = hf_buf_append(out, esc, 3);
                }
        }
        return r;
}

void hf_s3_amz_date(int64_t t, char out[17])
{
        struct tm tm;
        time_t tt = (time_t)t;

        gmtime_r(&tt, &tm);
        (void)strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

void hf_s3_iso_date(int64_t t, char out[21])
{
        struct tm tm;
        time_t tt = (time_t)t;

        gmtime_r(&tt, &tm);
        (void)strftime(out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int digits(const char *s, size_t n, int *ret)
{
        int v = 0;

        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                v = v * 10 + (s[i] - '0');
        }
        *ret = v;
        return 0;
}

int hf_s3_parse_iso_date(const char *s, size_t n, int64_t *ret)
{
        static const int mdays[12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        int y, mo, d, h, mi, se;
        size_t i = 19;
        int64_t days;

        /* 2026-11-27T04:20:22[.fraction]Z */
        if (n < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
            digits(s, 4, &y) < 0 || digits(s + 5, 2, &mo) < 0 || digits(s + 8, 2, &d) < 0 ||
            digits(s + 11, 2, &h) < 0 || digits(s + 14, 2, &mi) < 0 || digits(s + 17, 2, &se) < 0)
                return -EINVAL;
        if (s[i] == '.') {
                size_t start = ++i;
                while (i < n && s[i] >= '0' && s[i] <= '9')
                        i++;
                if (i == start || i - start > 9)
                        return -EINVAL;
        }
        if (i + 1 != n || s[i] != 'Z')
                return -EINVAL;
        if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 ||
            se > 60)
                return -EINVAL;
        if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
                return -EINVAL;
        /* Days from the civil date (Howard Hinnant's algorithm). */
        {
                int yy = y - (mo <= 2);
                int era = yy / 400;
                int yoe = yy - era * 400;
                int doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
                int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
                days = (int64_t)era * 146097 + doe - 719468;
        }
        *ret = days * 86400 + h * 3600 + mi * 60 + se;
        return 0;
}

static void sha256_hex(const void *p, size_t n, char out[65])
{
        uint8_t md[32];
        unsigned len = 0;

        (void)EVP_Digest(p, n, md, &len, EVP_sha256(), NULL);
        hf_hex_encode(md, 32, out);
}

static int hmac(const void *key, size_t keylen, const void *msg, size_t n, uint8_t out[32])
{
        unsigned len = 32;

        if (!HMAC(EVP_sha256(), key, (int)keylen, msg, n, out, &len) || len != 32)
                return -EIO;
        return 0;
}

int hf_sigv4_canonical_request(const HfSigV4 *s, HfBuf *out)
{
        int r = 0;

        r |= hf_buf_printf(out, "%s\n%s\n%s\n", s->method, s->uri, s->query ? s->query : "");
        for (size_t i = 0; i < s->n_headers; i++) {
                const HfS3Header *h = &s->headers[i];
                for (const char *c = h->name; *c; c++)
                        if (*c >= 'A' && *c <= 'Z')
                                return -EINVAL;
                if (i > 0 && strcmp(s->headers[i - 1].name, h->name) >= 0)
                        return -EINVAL;
                if (strpbrk(h->value, "\r\n"))
                        return -EINVAL;
                r |= hf_buf_printf(out, "%s:%s\n", h->name, h->value);
        }
        r |= hf_buf_putc(out, '\n');
        for (size_t i = 0; i < s->n_headers; i++)
                r |= hf_buf_printf(out, "%s%s", i ? ";" : "", s->headers[i].name);
        r |= hf_buf_printf(out, "\n%s", s->payload_hash);
        return r < 0 ? -ENOMEM : 0;
}

int hf_sigv4_string_to_sign(const HfSigV4 *s, HfBuf *out)
{
        _cleanup_buf_ HfBuf creq = HF_BUF_INIT(1 << 20);
        char hash[65];
        int r;

        if (!s->amz_date || strlen(s->amz_date) != 16)
                return -EINVAL;
        r = hf_sigv4_canonical_request(s, &creq);
        if (r < 0)
                return r;
        sha256_hex(creq.data, creq.len, hash);
        return hf_buf_printf(out, ALGORITHM "\n%s\n%.8s/%s/%s/aws4_request\n%s", s->amz_date,
                             s->amz_date, s->region, s->service, hash);
}

int hf_sigv4_authorization(const HfSigV4 *s, HfBuf *out)
{
        _cleanup_buf_ HfBuf sts = HF_BUF_INIT(1 << 16), secret = HF_BUF_INIT(4096);
        uint8_t k[32], sig[32];
        char sighex[65];
        int r;

        r = hf_sigv4_string_to_sign(s, &sts);
        if (r < 0)
                return r;
        r = hf_buf_printf(&secret, "AWS4%s", s->secret_key);
        if (r < 0)
                return r;
        r = hmac(secret.data, secret.len, s->amz_date, 8, k);
        OPENSSL_cleanse(secret.data, secret.len);
        if (r >= 0)
                r = hmac(k, 32, s->region, strlen(s->region), k);
        if (r >= 0)
                r = hmac(k, 32, s->service, strlen(s->service), k);
        if (r >= 0)
                r = hmac(k, 32, "aws4_request", 12, k);
        if (r >= 0)
                r = hmac(k, 32, sts.data, sts.len, sig);
        OPENSSL_cleanse(k, sizeof(k));
        if (r < 0)
                return r;
        hf_hex_encode(sig, 32, sighex);
        r = hf_buf_printf(out, ALGORITHM " Credential=%s/%.8s/%s/%s/aws4_request, SignedHeaders=",
                          s->access_key, s->amz_date, s->region, s->service);
        for (size_t i = 0; r >= 0 && i < s->n_headers; i++)
                r = hf_buf_printf(out, "%s%s", i ? ";" : "", s->headers[i].name);
        if (r >= 0)
                r = hf_buf_printf(out, ", Signature=%s", sighex);
        return r;
}
