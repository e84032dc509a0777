/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * S3 backend: s3:http(s)://host[:port]/bucket[/prefix] (or s3:host/bucket[/prefix] for HTTPS),
 * in the object layout restic's S3 backend uses: PREFIX/config, PREFIX/keys/<id>,
 * PREFIX/data/<id[0:2]>/<id>, ... Path-style URLs, SigV4 (s3-sign.c), credentials as restic
 * takes them (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_DEFAULT_REGION).
 *
 * Connections: a pool of libcurl easy handles, each keeping its connection alive, shared by
 * every thread (uploaders, restore and check workers) and by the per-repository backends that
 * holdfast serve opens on one bucket (hf_backend_s3_sub). Transient failures (transport errors,
 * 5xx, SlowDown, RequestTimeout) are retried with jittered exponential backoff; the rest are
 * final and the classes a user must act on (credentials, clock skew, missing bucket, server
 * unreachable) are explained once, in one sentence.
 *
 * Packs are built in memory files (memfd) and uploaded from them: one PUT below MULTIPART_MIN,
 * else a multipart upload whose parts go up in parallel. The payload hash SigV4 signs is the
 * object's name (every name but config is the SHA-256 of the bytes), so RGW verifies every
 * upload end to end at no hashing cost here.
 *
 * Object Lock (docs/internals/s3.md): when the bucket has a default retention, every object
 * holdfast writes carries an explicit retain-until date of now + that period, in the bucket's
 * mode; lock files instead get a GOVERNANCE retention that the owner may bypass, so they can
 * always be removed for good. retain() extends the retention of objects a new snapshot still
 * needs; remove() deletes object versions by ID and reports the ones Object Lock keeps.
 */
#include <curl/curl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#include "../base/log.h"
#include "../base/util.h"
#include "../crypto/crypto.h"
#include "backend.h"
#include "curl-pool.h"
#include "s3.h"

#define TRIES 6
#define SMALL_MAX (64ULL << 20)     /* anything not a pack */
#define ERR_BODY_MAX (64u << 10)    /* an error document */
#define LIST_PAGE_MAX (16u << 20)   /* one listing page (1000 keys is ~300 KiB) */
#define MULTIPART_MIN (48ULL << 20) /* packs this large go up in parts */
#define PART_SIZE (16ULL << 20)     /* S3 wants >= 5 MiB for every part but the last */
#define PART_THREADS 4              /* parallel parts of one upload */
#define LOCK_FILE_SECONDS 60        /* GOVERNANCE retention of lock files (bypassable) */
#define MAX_HEADERS 12

typedef struct S3Client {
        atomic_int refs;
        char *endpoint; /* "http://127.0.0.1:8000", no trailing slash */
        char *host;     /* the Host header: "127.0.0.1:8000" */
        char *bucket;
        char *access_key, *secret_key, *session_token, *region;
        char *cacert;
        int tries;
        bool tls; /* https: TLS protects the body, so uploads need not be hashed by the server */
        HfCurlPool pool;
        atomic_bool told_auth, told_skew, told_unreachable, told_bucket, told_denied;
        /* Object Lock */
        HfS3LockConfig lock_cfg;
        HfS3LockMode mode; /* of the retention given to written objects; NONE: none */
        int64_t period;    /* seconds written objects are retained; 0: none */
} S3Client;

/* What this process wrote and until when it is retained, so retain() need not ask. */
typedef struct Written {
        HfId id;       /* the object's name */
        int64_t until; /* 0: empty slot */
} Written;

typedef struct S3Backend {
        HfBackend base;
        S3Client *c;
        char *prefix; /* "" or "some/prefix/" */
        pthread_mutex_t written_lock;
        Written *written;
        size_t n_written, cap_written;
} S3Backend;

/* ---- the client ---- */

static void client_unref(S3Client *c)
{
        if (!c || atomic_fetch_sub(&c->refs, 1) != 1)
                return;
        hf_curl_pool_done(&c->pool);
        if (c->secret_key) {
                explicit_bzero(c->secret_key, strlen(c->secret_key));
                free(c->secret_key);
        }
        if (c->session_token) {
                explicit_bzero(c->session_token, strlen(c->session_token));
                free(c->session_token);
        }
        free(c->access_key);
        free(c->region);
        free(c->endpoint);
        free(c->host);
        free(c->bucket);
        free(c->cacert);
        free(c);
}

/* ---- one request ---- */

typedef struct Sink {
        CURL *curl;
        HfCurlBody body;
        bool routed, is_error;
        HfBuf err; /* the body of an error reply */
        /* headers */
        char version_id[HF_S3_TOKEN_MAX + 1];
        char etag[128];
        char lock_mode[16];
        int64_t retain_until; /* 0: none */
        int64_t date;         /* the server's Date, 0 when absent */
} Sink;

typedef struct Req {
        const char *method;
        const char *key;   /* object key (not encoded); NULL: the bucket */
        const char *query; /* canonical query string, "" for none */
        const void *body;  /* memory body, or */
        size_t body_len;
        int fd; /* file body: fd_len bytes from fd_off (fd >= 0) */
        uint64_t fd_off, fd_len;
        const char *payload_hash; /* NULL: computed (memory bodies) */
        HfS3Header extra[MAX_HEADERS];
        size_t n_extra;
        bool has_range;
        uint64_t off, len; /* len 0: to the end */
        Sink *sink;
        /* out */
        long status;
        curl_off_t content_len;
        char code[64], message[256];
        CURLcode curl_code;                /* of the last attempt that got no reply */
        char curl_detail[CURL_ERROR_SIZE]; /* curl's words for it ("SSL certificate ...") */
} Req;

typedef struct Upload {
        const uint8_t *mem;
        int fd;
        uint64_t off, len, pos;
        int error;
} Upload;

static void add_header(Req *rq, const char *name, const char *value)
{
        if (rq->n_extra < MAX_HEADERS)
                rq->extra[rq->n_extra++] = (HfS3Header){ name, value };
}

static bool retryable_reply(const Req *rq)
{
        long st = rq->status;

        if (st == 408 || st == 429 || (st >= 500 && st != 501))
                return true; /* 503 SlowDown, 500 InternalError, ... */
        return st == 400 &&
               (strcmp(rq->code, "RequestTimeout") == 0 || strcmp(rq->code, "SlowDown") == 0);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
        Sink *s = userdata;
        size_t n = size * nmemb;

        if (!s->routed) {
                long st = 0;
                curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &st);
                s->is_error = st >= 300;
                s->routed = true;
        }
        if (s->is_error) {
                (void)hf_buf_append(&s->err, data, n); /* when full, the start explains it */
                return n;
        }
        return hf_curl_body_take(&s->body, data, n) ? n : 0;
}

/* Copies a header's value (after "Name:"), trimmed, into dst. */
static bool header_value(const char *line, size_t n, const char *name, char *dst, size_t cap)
{
        size_t k = strlen(name);
        const char *v, *e;

        if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':')
                return false;
        v = line + k + 1;
        e = line + n;
        while (v < e && (*v == ' ' || *v == '\t'))
                v++;
        while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' '))
                e--;
        if ((size_t)(e - v) >= cap)
                return false;
        memcpy(dst, v, (size_t)(e - v));
        dst[e - v] = 0;
        return true;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata)
{
        Sink *s = userdata;
        size_t n = size * nmemb;
        char v[128];

        if (n > 5 && strncmp(data, "HTTP/", 5) == 0) {
                /* A new response (after 100 Continue): forget the interim one. */
                s->routed = false;
                return n;
        }
        /* Each header_value() call stores only when the name matches. */
        (void)header_value(data, n, "ETag", s->etag, sizeof(s->etag));
        (void)header_value(data, n, "x-amz-object-lock-mode", s->lock_mode, sizeof(s->lock_mode));
        if (header_value(data, n, "x-amz-version-id", v, sizeof(v)))
                (void)snprintf(s->version_id, sizeof(s->version_id), "%s", v);
        else if (header_value(data, n, "x-amz-object-lock-retain-until-date", v, sizeof(v))) {
                int64_t t;
                if (hf_s3_parse_iso_date(v, strlen(v), &t) == 0)
                        s->retain_until = t;
        } else if (header_value(data, n, "Date", v, sizeof(v))) {
                time_t t = curl_getdate(v, NULL);
                if (t > 0)
                        s->date = (int64_t)t;
        }
        return n;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *userdata)
{
        Upload *u = userdata;
        size_t want = MIN((uint64_t)size * nitems, u->len - u->pos);
        int r;

        if (want == 0)
                return 0;
        if (u->mem)
                memcpy(buf, u->mem + u->pos, want);
        else {
                r = hf_pread_all(u->fd, buf, want, u->off + u->pos);
                if (r < 0) {
                        u->error = r;
                        return CURL_READFUNC_ABORT;
                }
        }
        u->pos += want;
        return want;
}

static int header_cmp(const void *a, const void *b)
{
        return strcmp(((const HfS3Header *)a)->name, ((const HfS3Header *)b)->name);
}

/* The path of the bucket or of an object in it, URI-encoded (the canonical URI too). */
static int request_path(const S3Client *c, const char *key, HfBuf *out)
{
        int r = hf_buf_putc(out, '/');

        if (r >= 0)
                r = hf_s3_uri_encode(out, c->bucket, strlen(c->bucket), false);
        if (r >= 0 && key) {
                r = hf_buf_putc(out, '/');
                if (r >= 0)
                        r = hf_s3_uri_encode(out, key, strlen(key), true);
        }
        return r;
}

/* One attempt. 0 with rq->status set, or a negative errno for a transport failure. */
static int attempt(S3Client *c, CURL *h, Req *rq, bool *ret_retry)
{
        _cleanup_buf_ HfBuf path = HF_BUF_INIT(8192), url = HF_BUF_INIT(16384),
                            auth = HF_BUF_INIT(4096);
        HfS3Header hdrs[MAX_HEADERS + 4];
        size_t n = 0;
        char date[17], hash[65], range[64];
        struct curl_slist *list = NULL;
        Upload up = { .fd = -1 };
        HfSigV4 sig;
        CURLcode cc;
        int r;

        *ret_retry = false;
        rq->curl_code = CURLE_OK;
        r = request_path(c, rq->key, &path);
        if (r >= 0)
                r = hf_buf_printf(&url, "%s%s%s%s", c->endpoint, (char *)path.data,
                                  rq->query[0] ? "?" : "", rq->query);
        if (r < 0)
                return r;

        if (rq->payload_hash)
                (void)snprintf(hash, sizeof(hash), "%s", rq->payload_hash);
        else if (rq->fd >= 0)
                (void)snprintf(hash, sizeof(hash), "UNSIGNED-PAYLOAD");
        else {
                uint8_t md[32];
                unsigned len = 0;
                (void)EVP_Digest(rq->body ? rq->body : "", rq->body_len, md, &len, EVP_sha256(),
                                 NULL);
                hf_hex_encode(md, 32, hash);
        }
        hf_s3_amz_date((int64_t)time(NULL), date);
        hdrs[n++] = (HfS3Header){ "host", c->host };
        hdrs[n++] = (HfS3Header){ "x-amz-content-sha256", hash };
        hdrs[n++] = (HfS3Header){ "x-amz-date", date };
        if (c->session_token)
                hdrs[n++] = (HfS3Header){ "x-amz-security-token", c->session_token };
        if (rq->has_range) {
                if (rq->len)
                        (void)snprintf(range, sizeof(range), "bytes=%llu-%llu",
                                       (unsigned long long)rq->off,
                                       (unsigned long long)(rq->off + rq->len - 1));
                else
                        (void)snprintf(range, sizeof(range), "bytes=%llu-",
                                       (unsigned long long)rq->off);
                hdrs[n++] = (HfS3Header){ "range", range };
        }
        for (size_t i = 0; i < rq->n_extra; i++)
                hdrs[n++] = rq->extra[i];
        qsort(hdrs, n, sizeof(hdrs[0]), header_cmp);
        sig = (HfSigV4){ .method = rq->method,
                         .uri = (const char *)path.data,
                         .query = rq->query,
                         .headers = hdrs,
                         .n_headers = n,
                         .payload_hash = hash,
                         .amz_date = date,
                         .region = c->region,
                         .service = "s3",
                         .access_key = c->access_key,
                         .secret_key = c->secret_key };
        r = hf_buf_puts(&auth, "Authorization: ");
        if (r >= 0)
                r = hf_sigv4_authorization(&sig, &auth);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                char line[HF_S3_TOKEN_MAX + 128];
                if (strcmp(hdrs[i].name, "host") == 0)
                        continue; /* curl sends it from the URL */
                (void)snprintf(line, sizeof(line), "%s: %s", hdrs[i].name, hdrs[i].value);
                list = curl_slist_append(list, line);
        }
        list = curl_slist_append(list, (const char *)auth.data);
        list = curl_slist_append(list, "Expect:");
        list = curl_slist_append(list, "Accept:");
        explicit_bzero(auth.data, auth.len);
        if (!list)
                return -ENOMEM;

        curl_easy_setopt(h, CURLOPT_URL, (const char *)url.data);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 15L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 120L);
        curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(h, CURLOPT_USERAGENT, "holdfast");
        curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 512L * 1024);
        curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 2L * 1024 * 1024);
        if (c->cacert)
                curl_easy_setopt(h, CURLOPT_CAINFO, c->cacert);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, rq->sink);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, rq->sink);
        rq->curl_detail[0] = 0;
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, rq->curl_detail);

        if (strcmp(rq->method, "PUT") == 0) {
                up.mem = rq->fd >= 0 ? NULL : (rq->body ? rq->body : (const void *)"");
                up.fd = rq->fd;
                up.off = rq->fd_off;
                up.len = rq->fd >= 0 ? rq->fd_len : rq->body_len;
                curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
                curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
                curl_easy_setopt(h, CURLOPT_READDATA, &up);
                curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)up.len);
        } else if (strcmp(rq->method, "POST") == 0) {
                curl_easy_setopt(h, CURLOPT_POST, 1L);
                curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body ? rq->body : "");
                curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
        } else if (strcmp(rq->method, "HEAD") == 0)
                curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
        else if (strcmp(rq->method, "DELETE") == 0)
                curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");

        rq->sink->curl = h;
        hf_curl_body_reset(&rq->sink->body);
        rq->sink->routed = false;
        rq->sink->is_error = false;
        rq->sink->version_id[0] = rq->sink->etag[0] = rq->sink->lock_mode[0] = 0;
        rq->sink->retain_until = rq->sink->date = 0;
        hf_buf_reset(&rq->sink->err);
        rq->code[0] = rq->message[0] = 0;
        cc = curl_easy_perform(h);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL); /* rq does not outlive the request */
        curl_slist_free_all(list);
        rq->curl_code = cc;
        if (cc == CURLE_WRITE_ERROR && rq->sink->body.overflow)
                return -E2BIG;
        if (cc == CURLE_ABORTED_BY_CALLBACK && up.error < 0)
                return up.error;
        if (cc != CURLE_OK) {
                *ret_retry = hf_curl_retryable(cc);
                log_debug("%s %s: %s", rq->method, (char *)url.data, curl_easy_strerror(cc));
                return hf_curl_errno(cc);
        }
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &rq->status);
        curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &rq->content_len);
        if (rq->status >= 300 && rq->sink->err.len)
                (void)hf_s3_parse_error(rq->sink->err.data, rq->sink->err.len, rq->code,
                                        rq->message);
        *ret_retry = retryable_reply(rq);
        return 0;
}

static const char *shown_code(const Req *rq)
{
        return rq->code[0] ? rq->code : "no error code";
}

/*
 * The one sentence for a request that got no reply. A certificate the client does not trust is
 * not a server that cannot be reached: it is never retried, and the user must act on it.
 */
static void tell_no_reply(S3Client *c, const Req *rq, int r)
{
        const char *detail = rq->curl_detail[0] ? rq->curl_detail
                                                : curl_easy_strerror(rq->curl_code);

        if (atomic_exchange(&c->told_unreachable, true))
                return;
        switch (rq->curl_code) {
        case CURLE_PEER_FAILED_VERIFICATION:
                if (c->cacert)
                        log_error("the certificate of the S3 server at %s is not trusted by the CA "
                                  "certificates in %s (--cacert, HOLDFAST_CACERT): %s",
                                  c->endpoint, c->cacert, detail);
                else
                        log_error("the certificate of the S3 server at %s is not trusted (%s): set "
                                  "HOLDFAST_CACERT (or --cacert) to the file of the CA that "
                                  "signed it",
                                  c->endpoint, detail);
                return;
        case CURLE_SSL_CACERT_BADFILE:
                if (c->cacert)
                        log_error(
                                "cannot use the CA certificates in %s (--cacert, HOLDFAST_CACERT) "
                                "for the S3 server at %s: %s",
                                c->cacert, c->endpoint, detail);
                else
                        log_error("cannot use the system's CA certificates for the S3 server at "
                                  "%s: %s",
                                  c->endpoint, detail);
                return;
        case CURLE_SSL_CONNECT_ERROR:
                log_error("the TLS handshake with the S3 server at %s failed (%s)", c->endpoint,
                          detail);
                return;
        default:
                (void)log_error_errno(r, "cannot reach the S3 server at %s after %d tries (%m)",
                                      c->endpoint, c->tries);
        }
}

/* Runs a request with retries: 0 with rq->status for any final HTTP answer. */
static int perform(S3Client *c, Req *rq)
{
        double delay = 0.25;
        CURL *h;
        int r = -EIO;

        h = hf_curl_pool_take(&c->pool);
        if (!h)
                return -ENOMEM;
        for (int i = 0; i < c->tries; i++) {
                bool retry;

                r = attempt(c, h, rq, &retry);
                if (!retry || i + 1 == c->tries)
                        break;
                if (r == 0)
                        log_info("%s %s/%s: HTTP %ld (%s), retrying in %.1f s", rq->method,
                                 c->bucket, rq->key ? rq->key : "", rq->status, shown_code(rq),
                                 delay);
                else
                        (void)log_full_errno(HF_LOG_INFO, r, "%s %s/%s: %m, retrying in %.1f s",
                                             rq->method, c->bucket, rq->key ? rq->key : "", delay);
                /* A broken connection is not reused. */
                curl_easy_cleanup(h);
                h = curl_easy_init();
                if (!h)
                        return -ENOMEM;
                {
                        uint8_t j = 0;
                        (void)hf_random_bytes(&j, 1);
                        hf_curl_backoff(delay * (0.5 + (double)j / 255.0));
                }
                delay = MIN(delay * 2, 8.0);
        }
        hf_curl_pool_give(&c->pool, h);
        if (r < 0 && r != -ENOMEM && r != -E2BIG)
                tell_no_reply(c, rq, r);
        if (r == 0 && retryable_reply(rq)) {
                if (!atomic_exchange(&c->told_unreachable, true))
                        log_error("the S3 server at %s kept failing (HTTP %ld, %s) after %d "
                                  "tries",
                                  c->endpoint, rq->status, shown_code(rq), c->tries);
                return rq->status == 503 ? -EAGAIN : -EIO;
        }
        return r;
}

static int64_t now_sec(void)
{
        return (int64_t)time(NULL);
}

/*
 * Turns a final error reply into an errno; explains, once per process, the ones a user must act
 * on. what names the object or operation for other errors.
 */
static int reply_errno(S3Client *c, const Req *rq, const char *what)
{
        const char *code = rq->code;
        long st = rq->status;

        if (strcmp(code, "InvalidAccessKeyId") == 0 || strcmp(code, "SignatureDoesNotMatch") == 0 ||
            strcmp(code, "InvalidToken") == 0 || strcmp(code, "ExpiredToken") == 0 ||
            (st == 403 && !code[0] && strcmp(rq->method, "HEAD") == 0 && !rq->key)) {
                if (!atomic_exchange(&c->told_auth, true))
                        log_error("the S3 server at %s refused the credentials (%s): check "
                                  "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                                  c->endpoint, code[0] ? code : "HTTP 403");
                return -EACCES;
        }
        if (strcmp(code, "RequestTimeTooSkewed") == 0) {
                if (!atomic_exchange(&c->told_skew, true)) {
                        int64_t d = rq->sink->date ? now_sec() - rq->sink->date : 0;
                        if (d)
                                log_error("the S3 server at %s refused the request because this "
                                          "machine's clock is %lld s %s the server's "
                                          "(RequestTimeTooSkewed): set the clock right (NTP)",
                                          c->endpoint, (long long)(d < 0 ? -d : d),
                                          d < 0 ? "behind" : "ahead of");
                        else
                                log_error("the S3 server at %s refused the request because this "
                                          "machine's clock differs too much from the server's "
                                          "(RequestTimeTooSkewed): set the clock right (NTP)",
                                          c->endpoint);
                }
                return -ETIME;
        }
        if (strcmp(code, "NoSuchBucket") == 0) {
                if (!atomic_exchange(&c->told_bucket, true))
                        log_error("the bucket \"%s\" does not exist on the S3 server at %s: "
                                  "check the name, or create the vault with \"holdfast init\"",
                                  c->bucket, c->endpoint);
                return -ENXIO;
        }
        switch (st) {
        case 404:
                return -ENOENT;
        case 416:
                return -ENODATA;
        case 403:
                if (!atomic_exchange(&c->told_denied, true))
                        log_error("the S3 server at %s denied %s %s (%s%s%s)", c->endpoint,
                                  rq->method, what, shown_code(rq), rq->message[0] ? ": " : "",
                                  rq->message);
                return -EACCES;
        case 409:
                return -EBUSY;
        case 411:
        case 413:
                return -E2BIG;
        case 501:
                return -EOPNOTSUPP;
        default:
                log_debug("%s %s: HTTP %ld (%s%s%s)", rq->method, what, st, shown_code(rq),
                          rq->message[0] ? ": " : "", rq->message);
                return st >= 400 && st < 500 ? -EINVAL : -EIO;
        }
}

/* ---- keys and names ---- */

static bool hex_name(const char *s, size_t n)
{
        if (n != HF_ID_HEX_LEN)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

/* The object key of (t, name): PREFIX/config, PREFIX/keys/<id>, PREFIX/data/<xx>/<id>. */
static int object_key(const S3Backend *sb, HfFileType t, const char *name, char *buf, size_t n)
{
        int k;

        if (t >= _HF_FILE_TYPE_MAX)
                return -EINVAL;
        if (t == HF_FILE_CONFIG)
                k = snprintf(buf, n, "%sconfig", sb->prefix);
        else if (!name || !hex_name(name, strlen(name)))
                return -EINVAL;
        else if (t == HF_FILE_PACK)
                k = snprintf(buf, n, "%sdata/%.2s/%s", sb->prefix, name, name);
        else
                k = snprintf(buf, n, "%s%s/%s", sb->prefix, hf_file_type_dir(t), name);
        return k < 0 || (size_t)k >= n ? -ENAMETOOLONG : 0;
}

#define KEY_MAX (HF_S3_KEY_MAX + 1)

static void written_put_locked(S3Backend *sb, const HfId *id, int64_t until)
{
        size_t i;

        if (2 * (sb->n_written + 1) > sb->cap_written) {
                size_t ncap = sb->cap_written ? sb->cap_written * 2 : 1024;
                Written *nv = calloc(ncap, sizeof(Written)), *old = sb->written;
                size_t oldcap = sb->cap_written;
                if (!nv)
                        return; /* only an optimisation */
                sb->written = nv;
                sb->cap_written = ncap;
                sb->n_written = 0;
                for (size_t j = 0; j < oldcap; j++)
                        if (old[j].until)
                                written_put_locked(sb, &old[j].id, old[j].until);
                free(old);
        }
        for (i = hf_id_hash(id) & (sb->cap_written - 1); sb->written[i].until;
             i = (i + 1) & (sb->cap_written - 1))
                if (hf_id_eq(&sb->written[i].id, id)) {
                        sb->written[i].until = MAX(sb->written[i].until, until);
                        return;
                }
        sb->written[i] = (Written){ .id = *id, .until = until };
        sb->n_written++;
}

static void written_put(S3Backend *sb, HfFileType t, const char *name, int64_t until)
{
        HfId id;

        if (t == HF_FILE_CONFIG || t == HF_FILE_LOCK || until <= 0 ||
            hf_id_parse(name, strlen(name), &id) < 0)
                return;
        pthread_mutex_lock(&sb->written_lock);
        written_put_locked(sb, &id, until);
        pthread_mutex_unlock(&sb->written_lock);
}

static int64_t written_get(S3Backend *sb, HfFileType t, const char *name)
{
        int64_t until = 0;
        HfId id;

        if (t == HF_FILE_CONFIG || hf_id_parse(name, strlen(name), &id) < 0)
                return 0;
        pthread_mutex_lock(&sb->written_lock);
        for (size_t i = sb->cap_written ? hf_id_hash(&id) & (sb->cap_written - 1) : 0;
             sb->cap_written && sb->written[i].until; i = (i + 1) & (sb->cap_written - 1))
                if (hf_id_eq(&sb->written[i].id, &id)) {
                        until = sb->written[i].until;
                        break;
                }
        pthread_mutex_unlock(&sb->written_lock);
        return until;
}

static void sink_done(Sink *s)
{
        hf_buf_free(&s->err);
}

#define SINK_INIT ((Sink){ .err = HF_BUF_INIT(ERR_BODY_MAX) })

/* ---- Object Lock headers ---- */

/* Adds the retention headers a new object of type t gets (until holds the value); returns the
 * retain-until time, 0 for none. */
static int64_t lock_headers(S3Client *c, HfFileType t, Req *rq, char until[21])
{
        int64_t when;

        if (c->period <= 0 || c->mode == HF_S3_LOCK_NONE)
                return 0;
        if (t == HF_FILE_LOCK) {
                /* Lock files must stay removable: a short retention the owner may bypass
                 * (an explicit retention replaces the bucket's default). */
                when = now_sec() + LOCK_FILE_SECONDS;
                add_header(rq, "x-amz-object-lock-mode", "GOVERNANCE");
        } else {
                when = now_sec() + c->period + 1;
                add_header(rq, "x-amz-object-lock-mode",
                           c->mode == HF_S3_LOCK_COMPLIANCE ? "COMPLIANCE" : "GOVERNANCE");
        }
        hf_s3_iso_date(when, until);
        add_header(rq, "x-amz-object-lock-retain-until-date", until);
        return when;
}

/* base64 of the MD5 of a small body (S3 wants Content-MD5 on lock and retention requests). */
static void content_md5(const void *p, size_t n, char out[32])
{
        uint8_t md[16];
        unsigned len = 0;
        HfBuf b = HF_BUF_INIT(64);

        (void)EVP_Digest(p, n, md, &len, EVP_md5(), NULL);
        out[0] = 0;
        if (hf_base64_encode(&b, md, 16) >= 0)
                (void)snprintf(out, 32, "%s", (char *)b.data);
        hf_buf_free(&b);
}

/* ---- backend operations ---- */

static int s3_stat_key(S3Backend *sb, const char *key, uint64_t *ret_size, Sink *out_sink)
{
        Sink sink = SINK_INIT;
        Req rq = { .method = "HEAD", .key = key, .query = "", .fd = -1, .sink = &sink };
        int r;

        r = perform(sb->c, &rq);
        if (r >= 0 && rq.status != 200)
                r = rq.status == 404 ? -ENOENT : reply_errno(sb->c, &rq, key);
        if (r >= 0 && rq.content_len < 0)
                r = -EPROTO;
        if (r >= 0 && ret_size)
                *ret_size = (uint64_t)rq.content_len;
        if (r >= 0 && out_sink) {
                out_sink->retain_until = sink.retain_until;
                memcpy(out_sink->lock_mode, sink.lock_mode, sizeof(sink.lock_mode));
        }
        sink_done(&sink);
        return r;
}

static int s3_stat(HfBackend *b, HfFileType t, const char *name, uint64_t *ret_size)
{
        S3Backend *sb = (S3Backend *)b;
        char key[KEY_MAX];
        int r = object_key(sb, t, name, key, sizeof(key));

        return r < 0 ? r : s3_stat_key(sb, key, ret_size, NULL);
}

static int s3_create(HfBackend *b)
{
        int r = s3_stat(b, HF_FILE_CONFIG, "config", NULL);

        if (r == 0)
                return -EEXIST;
        return r == -ENOENT ? 0 : r;
}

static int put_object(S3Backend *sb, HfFileType t, const char *name, const void *p, size_t n,
                      int fd)
{
        S3Client *c = sb->c;
        Sink sink = SINK_INIT;
        char key[KEY_MAX], until[21], hash[65];
        Req rq = { .method = "PUT", .query = "", .key = key, .fd = -1, .sink = &sink };
        int64_t when;
        int r;

        r = object_key(sb, t, name, key, sizeof(key));
        if (r < 0)
                return r;
        if (fd >= 0) {
                struct stat st;
                if (fstat(fd, &st) < 0)
                        return -errno;
                rq.fd = fd;
                rq.fd_len = (uint64_t)st.st_size;
        } else {
                rq.body = p;
                rq.body_len = n;
        }
        /* Every name but config is the SHA-256 of the bytes: over plain HTTP the server checks
         * it at no hashing cost here; over HTTPS, TLS already protects the body and the server
         * is spared a hash of every pack (AWS's SDKs do the same). */
        if (t != HF_FILE_CONFIG) {
                (void)snprintf(hash, sizeof(hash), "%s", c->tls ? "UNSIGNED-PAYLOAD" : name);
                rq.payload_hash = hash;
        }
        add_header(&rq, "content-type", "application/octet-stream");
        when = lock_headers(c, t, &rq, until);
        r = perform(c, &rq);
        if (r >= 0 && rq.status != 200)
                r = reply_errno(c, &rq, key);
        sink_done(&sink);
        if (r >= 0)
                written_put(sb, t, name, when);
        if (r == -EINVAL && strcmp(rq.code, "XAmzContentSHA256Mismatch") == 0)
                return log_error_errno(EBADMSG,
                                       "%s: the upload arrived damaged (the server's "
                                       "SHA-256 of it differs from its name)",
                                       key);
        return r;
}

static int s3_save(HfBackend *b, HfFileType t, const char *name, const void *p, size_t n)
{
        S3Backend *sb = (S3Backend *)b;

        /* Only config is not named by its content: never replace it. Other names carry their
         * content, so writing one again writes the same bytes (S3 has no exclusive create). */
        if (t == HF_FILE_CONFIG) {
                int r = s3_stat(b, t, "config", NULL);
                if (r == 0)
                        return -EEXIST;
                if (r != -ENOENT)
                        return r;
        }
        return put_object(sb, t, name, p, n, -1);
}

static int get_range(S3Backend *sb, HfFileType t, const char *name, uint64_t off, size_t len,
                     Sink *sink)
{
        char key[KEY_MAX];
        Req rq = { .method = "GET", .query = "", .key = key, .fd = -1, .sink = sink };
        int r;

        r = object_key(sb, t, name, key, sizeof(key));
        if (r < 0)
                return r;
        /* A Range on an empty object is unsatisfiable: whole files go without one. */
        if (off || len) {
                rq.has_range = true;
                rq.off = off;
                rq.len = len;
        }
        r = perform(sb->c, &rq);
        if (r < 0)
                return r;
        if (rq.status == 200 && off > 0)
                return -EPROTO;
        if (rq.status != 200 && rq.status != 206)
                return reply_errno(sb->c, &rq, key);
        if (len && sink->body.got != len)
                return -ENODATA;
        return 0;
}

static int s3_load(HfBackend *b, HfFileType t, const char *name, uint64_t off, size_t len,
                   HfBuf *out)
{
        HfBuf tmp = HF_BUF_INIT(out->max > out->len ? out->max - out->len : 0);
        Sink sink = SINK_INIT;
        int r;

        sink.body.buf = &tmp;
        r = get_range((S3Backend *)b, t, name, off, len, &sink);
        if (r >= 0)
                r = hf_buf_append(out, tmp.data, tmp.len);
        hf_buf_free(&tmp);
        sink_done(&sink);
        return r;
}

static int s3_read_at(HfBackend *b, HfFileType t, const char *name, uint64_t off, size_t len,
                      void *p)
{
        Sink sink = SINK_INIT;
        int r;

        if (len == 0)
                return 0;
        sink.body.p = p;
        sink.body.cap = len;
        r = get_range((S3Backend *)b, t, name, off, len, &sink);
        sink_done(&sink);
        return r;
}

/* ---- listing ---- */

typedef struct ListCtx {
        S3Backend *sb;
        HfFileType t;
        size_t skip; /* bytes of PREFIX/type/ */
        HfListFn fn;
        void *userdata;
        char last[KEY_MAX];
} ListCtx;

static int on_object(void *userdata, const HfS3Object *o)
{
        ListCtx *l = userdata;
        const char *rest;
        size_t n;

        if (o->key_len <= l->skip)
                return 0;
        (void)snprintf(l->last, sizeof(l->last), "%s", o->key);
        rest = o->key + l->skip;
        n = o->key_len - l->skip;
        if (l->t == HF_FILE_PACK) {
                /* data/<xx>/<id>, with xx the id's first two characters */
                if (n != 3 + HF_ID_HEX_LEN || rest[2] != '/' || rest[0] != rest[3] ||
                    rest[1] != rest[4])
                        return 0;
                rest += 3;
                n -= 3;
        }
        if (!hex_name(rest, n))
                return 0; /* foreign names are not ours (like the local backend) */
        return l->fn(l->userdata, rest, o->size);
}

/* Appends "name=value" (value URI-encoded) to a canonical query being built. */
static int query_add(HfBuf *q, const char *name, const char *value)
{
        int r = hf_buf_printf(q, "%s%s=", q->len ? "&" : "", name);

        if (r >= 0)
                r = hf_s3_uri_encode(q, value, strlen(value), false);
        return r;
}

static int s3_list(HfBackend *b, HfFileType t, HfListFn fn, void *userdata)
{
        S3Backend *sb = (S3Backend *)b;
        _cleanup_free_ ListCtx *l = NULL;
        _cleanup_free_ char *token = NULL;
        char prefix[KEY_MAX];
        int r;

        if (t == HF_FILE_CONFIG) {
                uint64_t size = 0;
                r = s3_stat(b, t, "config", &size);
                if (r == -ENOENT)
                        return 0;
                return r < 0 ? r : fn(userdata, "config", size);
        }
        if (t >= _HF_FILE_TYPE_MAX)
                return -EINVAL;
        l = calloc(1, sizeof(*l));
        token = calloc(1, HF_S3_TOKEN_MAX + 1);
        if (!l || !token)
                return -ENOMEM;
        (void)snprintf(prefix, sizeof(prefix), "%s%s/", sb->prefix, hf_file_type_dir(t));
        *l = (ListCtx){ .sb = sb, .t = t, .skip = strlen(prefix), .fn = fn, .userdata = userdata };
        for (;;) {
                HfBuf body = HF_BUF_INIT(LIST_PAGE_MAX), q = HF_BUF_INIT(8192);
                Sink sink = SINK_INIT;
                Req rq = { .method = "GET", .fd = -1, .sink = &sink };
                bool truncated = false;

                sink.body.buf = &body;
                /* The canonical query: names sorted. */
                r = token[0] ? query_add(&q, "continuation-token", token) : 0;
                if (r >= 0)
                        r = query_add(&q, "list-type", "2");
                if (r >= 0)
                        r = query_add(&q, "max-keys", "1000");
                if (r >= 0)
                        r = query_add(&q, "prefix", prefix);
                rq.query = q.data ? (const char *)q.data : "";
                if (r >= 0)
                        r = perform(sb->c, &rq);
                if (r >= 0 && rq.status != 200)
                        r = reply_errno(sb->c, &rq, prefix);
                if (r >= 0) {
                        r = hf_s3_parse_list(body.data, body.len, on_object, l, &truncated, token);
                        if (r == -EPROTO)
                                log_error("%s/%s/: the S3 server's listing is malformed",
                                          b->location, hf_file_type_dir(t));
                }
                hf_buf_free(&body);
                hf_buf_free(&q);
                sink_done(&sink);
                if (r < 0 || !truncated)
                        return r;
        }
}

/* ---- streaming creation (packs): memory files, one PUT or a multipart upload ---- */

static int s3_temp_open(HfBackend *b, HfFileType t, int *ret_fd)
{
        int fd = memfd_create("holdfast-pack", MFD_CLOEXEC);

        if (fd < 0)
                return -errno;
        *ret_fd = fd;
        return 0;
}

static void s3_temp_abort(HfBackend *b, HfFileType t, int fd)
{
        if (fd >= 0)
                close(fd);
}

typedef struct Part {
        uint64_t off, len;
        char etag[128];
        int error;
} Part;

typedef struct Multipart {
        S3Backend *sb;
        const char *key;
        const char *upload_id; /* URI-encoded */
        int fd;
        Part *parts;
        size_t n_parts;
        atomic_size_t next;
} Multipart;

static int upload_part(Multipart *m, size_t i)
{
        S3Client *c = m->sb->c;
        Part *p = &m->parts[i];
        _cleanup_free_ uint8_t *buf = malloc(p->len ? p->len : 1);
        Sink sink = SINK_INIT;
        char query[HF_S3_TOKEN_MAX * 3 + 64], hash[65], md5[32];
        Req rq = { .method = "PUT", .key = m->key, .query = query, .fd = -1, .sink = &sink };
        uint8_t md[32];
        unsigned len = 0;
        int r;

        if (!buf)
                return -ENOMEM;
        r = hf_pread_all(m->fd, buf, p->len, p->off);
        if (r < 0)
                return r;
        (void)snprintf(query, sizeof(query), "partNumber=%zu&uploadId=%s", i + 1, m->upload_id);
        if (c->tls)
                (void)snprintf(hash, sizeof(hash), "UNSIGNED-PAYLOAD");
        else {
                (void)EVP_Digest(buf, p->len, md, &len, EVP_sha256(), NULL);
                hf_hex_encode(md, 32, hash);
        }
        rq.payload_hash = hash;
        rq.body = buf;
        rq.body_len = p->len;
        if (c->period > 0) {
                content_md5(buf, p->len, md5);
                add_header(&rq, "content-md5", md5);
        }
        r = perform(c, &rq);
        if (r >= 0 && rq.status != 200)
                r = reply_errno(c, &rq, m->key);
        if (r >= 0 && !sink.etag[0])
                r = -EPROTO;
        if (r >= 0)
                (void)snprintf(p->etag, sizeof(p->etag), "%s", sink.etag);
        sink_done(&sink);
        return r;
}

static void *part_worker(void *arg)
{
        Multipart *m = arg;

        for (;;) {
                size_t i = atomic_fetch_add(&m->next, 1);
                if (i >= m->n_parts)
                        break;
                m->parts[i].error = upload_part(m, i);
                if (m->parts[i].error < 0)
                        atomic_store(&m->next, m->n_parts); /* stop the others early */
        }
        return NULL;
}

static int multipart_request(S3Backend *sb, const char *method, const char *key, const char *query,
                             const char *body, Req *rq, Sink *sink)
{
        *rq = (Req){ .method = method, .key = key, .query = query, .fd = -1, .sink = sink };
        if (body) {
                rq->body = body;
                rq->body_len = strlen(body);
        }
        return perform(sb->c, rq);
}

static int put_multipart(S3Backend *sb, HfFileType t, const char *name, int fd, uint64_t size)
{
        S3Client *c = sb->c;
        _cleanup_buf_ HfBuf uid = HF_BUF_INIT(HF_S3_TOKEN_MAX * 3 + 1), xml = HF_BUF_INIT(1 << 20),
                            q = HF_BUF_INIT(HF_S3_TOKEN_MAX * 3 + 64);
        _cleanup_free_ Part *parts = NULL;
        char key[KEY_MAX], until[21], id[HF_S3_TOKEN_MAX + 1];
        HfBuf body = HF_BUF_INIT(1 << 20);
        Sink sink = SINK_INIT;
        pthread_t threads[PART_THREADS];
        unsigned n_threads = 0;
        Multipart m;
        Req rq;
        int64_t when;
        size_t n_parts = (size_t)((size + PART_SIZE - 1) / PART_SIZE);
        int r;

        r = object_key(sb, t, name, key, sizeof(key));
        if (r < 0)
                goto out;
        parts = calloc(n_parts, sizeof(Part));
        if (!parts) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < n_parts; i++) {
                parts[i].off = (uint64_t)i * PART_SIZE;
                parts[i].len = MIN(PART_SIZE, size - parts[i].off);
        }

        /* Initiate, with the retention the object gets. */
        sink.body.buf = &body;
        rq = (Req){ .method = "POST", .key = key, .query = "uploads=", .fd = -1, .sink = &sink };
        add_header(&rq, "content-type", "application/octet-stream");
        when = lock_headers(c, t, &rq, until);
        r = perform(c, &rq);
        if (r >= 0 && rq.status != 200)
                r = reply_errno(c, &rq, key);
        if (r >= 0)
                r = hf_s3_parse_upload_id(body.data, body.len, id);
        if (r < 0)
                goto out;
        r = hf_s3_uri_encode(&uid, id, strlen(id), false);
        if (r < 0)
                goto abort;

        m = (Multipart){ .sb = sb,
                         .key = key,
                         .upload_id = (const char *)uid.data,
                         .fd = fd,
                         .parts = parts,
                         .n_parts = n_parts };
        for (unsigned i = 0; i < MIN((size_t)PART_THREADS, n_parts); i++) {
                if (pthread_create(&threads[i], NULL, part_worker, &m) != 0)
                        break;
                n_threads++;
        }
        if (n_threads == 0)
                part_worker(&m);
        for (unsigned i = 0; i < n_threads; i++)
                pthread_join(threads[i], NULL);
        for (size_t i = 0; i < n_parts; i++)
                if (parts[i].error < 0 || !parts[i].etag[0]) {
                        r = parts[i].error < 0 ? parts[i].error : -EIO;
                        goto abort;
                }

        /* Complete. A 200 reply may still carry an error document. */
        r = hf_buf_puts(&xml, "<CompleteMultipartUpload>");
        for (size_t i = 0; r >= 0 && i < n_parts; i++)
                r = hf_buf_printf(&xml, "<Part><PartNumber>%zu</PartNumber><ETag>%s</ETag></Part>",
                                  i + 1, parts[i].etag);
        if (r >= 0)
                r = hf_buf_puts(&xml, "</CompleteMultipartUpload>");
        if (r >= 0)
                r = query_add(&q, "uploadId", id);
        if (r < 0)
                goto abort;
        r = multipart_request(sb, "POST", key, (const char *)q.data, (const char *)xml.data, &rq,
                              &sink);
        if (r >= 0 && rq.status != 200)
                r = reply_errno(c, &rq, key);
        if (r >= 0) {
                char code[64], msg[256];
                if (hf_s3_parse_error(body.data, body.len, code, msg) == 0) {
                        log_error("%s: the S3 server could not complete the upload (%s: %s)", key,
                                  code, msg);
                        r = -EIO;
                }
        }
        if (r >= 0) {
                written_put(sb, t, name, when);
                goto out;
        }
abort : {
        Sink s2 = SINK_INIT;
        Req ab;
        hf_buf_reset(&q);
        if (query_add(&q, "uploadId", id) >= 0)
                (void)multipart_request(sb, "DELETE", key, (const char *)q.data, NULL, &ab, &s2);
        sink_done(&s2);
}
out:
        hf_buf_free(&body);
        sink_done(&sink);
        return r;
}

static int s3_temp_commit(HfBackend *b, HfFileType t, int fd, const char *name)
{
        S3Backend *sb = (S3Backend *)b;
        struct stat st;
        int r;

        if (fstat(fd, &st) < 0)
                r = -errno;
        else if (t != HF_FILE_CONFIG && (uint64_t)st.st_size >= MULTIPART_MIN)
                r = put_multipart(sb, t, name, fd, (uint64_t)st.st_size);
        else if (t == HF_FILE_CONFIG) {
                HfBuf data = HF_BUF_INIT(SMALL_MAX);
                r = lseek(fd, 0, SEEK_SET) < 0 ? -errno : hf_read_fd(fd, SMALL_MAX, &data);
                if (r >= 0)
                        r = s3_save(b, t, name, data.data, data.len);
                hf_buf_free(&data);
        } else
                r = put_object(sb, t, name, NULL, 0, fd);
        close(fd);
        return r;
}

/* ---- removal: versions by ID, locked ones reported ---- */

typedef struct VersionList {
        const char *key;
        char (*ids)[HF_S3_TOKEN_MAX + 1];
        size_t n, cap;
} VersionList;

static int on_version(void *userdata, const HfS3Version *v)
{
        VersionList *l = userdata;

        if (strlen(l->key) != v->key_len || memcmp(l->key, v->key, v->key_len) != 0)
                return 0;
        if (l->n == l->cap) {
                size_t ncap = l->cap ? l->cap * 2 : 4;
                void *nv;
                if (ncap > 100000)
                        return -E2BIG;
                nv = realloc(l->ids, ncap * sizeof(*l->ids));
                if (!nv)
                        return -ENOMEM;
                l->ids = nv;
                l->cap = ncap;
        }
        (void)snprintf(l->ids[l->n++], HF_S3_TOKEN_MAX + 1, "%s", v->version_id);
        return 0;
}

static int list_versions(S3Backend *sb, const char *key, VersionList *l)
{
        _cleanup_free_ char *km = calloc(1, HF_S3_TOKEN_MAX + 1),
                            *vm = calloc(1, HF_S3_TOKEN_MAX + 1);
        int r;

        if (!km || !vm)
                return -ENOMEM;
        for (;;) {
                HfBuf body = HF_BUF_INIT(LIST_PAGE_MAX), q = HF_BUF_INIT(8192);
                Sink sink = SINK_INIT;
                Req rq = { .method = "GET", .fd = -1, .sink = &sink };
                bool truncated = false;

                sink.body.buf = &body;
                r = km[0] ? query_add(&q, "key-marker", km) : 0;
                if (r >= 0)
                        r = query_add(&q, "prefix", key);
                if (r >= 0 && vm[0])
                        r = query_add(&q, "version-id-marker", vm);
                if (r >= 0)
                        r = hf_buf_printf(&q, "&versions=");
                rq.query = (const char *)q.data;
                if (r >= 0)
                        r = perform(sb->c, &rq);
                if (r >= 0 && rq.status != 200)
                        r = reply_errno(sb->c, &rq, key);
                if (r >= 0)
                        r = hf_s3_parse_versions(body.data, body.len, on_version, l, &truncated, km,
                                                 vm);
                hf_buf_free(&body);
                hf_buf_free(&q);
                sink_done(&sink);
                if (r < 0 || !truncated)
                        return r;
        }
}

static int delete_key(S3Backend *sb, const char *key, const char *version, bool bypass, Req *rq,
                      Sink *sink)
{
        _cleanup_buf_ HfBuf q = HF_BUF_INIT(HF_S3_TOKEN_MAX * 3 + 32);
        int r = version ? query_add(&q, "versionId", version) : 0;

        if (r < 0)
                return r;
        *rq = (Req){ .method = "DELETE",
                     .key = key,
                     .query = q.data ? (const char *)q.data : "",
                     .fd = -1,
                     .sink = sink };
        if (bypass)
                add_header(rq, "x-amz-bypass-governance-retention", "true");
        return perform(sb->c, rq);
}

static int s3_remove(HfBackend *b, HfFileType t, const char *name)
{
        S3Backend *sb = (S3Backend *)b;
        S3Client *c = sb->c;
        VersionList l = { 0 };
        char key[KEY_MAX];
        int r, kept = 0;

        r = object_key(sb, t, name, key, sizeof(key));
        if (r < 0)
                return r;
        if (!c->lock_cfg.enabled) {
                Sink sink = SINK_INIT;
                Req rq;
                r = delete_key(sb, key, NULL, false, &rq, &sink);
                if (r >= 0 && rq.status != 204 && rq.status != 200)
                        r = reply_errno(c, &rq, key);
                sink_done(&sink);
                return r;
        }
        /* A versioned (Object Lock) bucket: a plain DELETE would only hide the object behind a
         * delete marker. Remove every version for good, or say which ones the lock keeps. */
        l.key = key;
        r = list_versions(sb, key, &l);
        if (r >= 0 && l.n == 0)
                r = -ENOENT;
        for (size_t i = 0; r >= 0 && i < l.n; i++) {
                Sink sink = SINK_INIT;
                Req rq;
                int k = delete_key(sb, key, l.ids[i], t == HF_FILE_LOCK, &rq, &sink);
                if (k >= 0 && rq.status != 204 && rq.status != 200) {
                        if (rq.status == 403 && strcmp(rq.code, "AccessDenied") == 0)
                                kept++;
                        else
                                k = reply_errno(c, &rq, key);
                }
                sink_done(&sink);
                if (k < 0)
                        r = k;
        }
        free(l.ids);
        if (r >= 0 && kept && t == HF_FILE_LOCK) {
                /* A lock written by another program under the bucket's retention: hide it
                 * behind a delete marker, which is all a lock needs. */
                Sink sink = SINK_INIT;
                Req rq;
                r = delete_key(sb, key, NULL, false, &rq, &sink);
                if (r >= 0 && rq.status != 204 && rq.status != 200)
                        r = reply_errno(c, &rq, key);
                sink_done(&sink);
                return r;
        }
        if (r >= 0 && kept) {
                Sink info = SINK_INIT;
                char when[21] = "";
                if (s3_stat_key(sb, key, NULL, &info) == 0 && info.retain_until)
                        hf_s3_iso_date(info.retain_until, when);
                sink_done(&info);
                log_notice("s3:%s/%s/%s: kept by Object Lock%s%s; not removed", c->endpoint,
                           c->bucket, key, when[0] ? " until " : "", when);
                return -EPERM;
        }
        return r;
}

/* ---- retention ---- */

static int64_t s3_retention(HfBackend *b)
{
        S3Client *c = ((S3Backend *)b)->c;

        return c->mode != HF_S3_LOCK_NONE ? c->period : 0;
}

static int put_retention(S3Backend *sb, const char *key, const char *mode, int64_t until)
{
        char body[512], md5[32], date[21];
        Sink sink = SINK_INIT;
        Req rq = { .method = "PUT", .key = key, .query = "retention=", .fd = -1, .sink = &sink };
        int r;

        hf_s3_iso_date(until, date);
        (void)snprintf(body, sizeof(body),
                       "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>%s"
                       "</Mode><RetainUntilDate>%s</RetainUntilDate></Retention>",
                       mode, date);
        rq.body = body;
        rq.body_len = strlen(body);
        content_md5(body, rq.body_len, md5);
        add_header(&rq, "content-md5", md5);
        add_header(&rq, "content-type", "application/xml");
        r = perform(sb->c, &rq);
        if (r >= 0 && rq.status != 200)
                r = reply_errno(sb->c, &rq, key);
        sink_done(&sink);
        return r;
}

static int s3_retain(HfBackend *b, HfFileType t, const char *name, int64_t until)
{
        S3Backend *sb = (S3Backend *)b;
        S3Client *c = sb->c;
        Sink info = SINK_INIT;
        char key[KEY_MAX];
        const char *mode;
        int64_t target;
        int r;

        if (c->mode == HF_S3_LOCK_NONE || t == HF_FILE_LOCK)
                return 0;
        if (written_get(sb, t, name) >= until)
                return 0; /* written by this process with a long enough retention */
        r = object_key(sb, t, name, key, sizeof(key));
        if (r < 0)
                return r;
        r = s3_stat_key(sb, key, NULL, &info);
        if (r < 0) {
                sink_done(&info);
                return r;
        }
        if (info.retain_until >= until) {
                sink_done(&info);
                return 0;
        }
        /* A little beyond what is needed, so that the next backups find most objects already
         * retained long enough and only read their headers. */
        target = until + MIN(c->period / 4, (int64_t)7 * 86400);
        /* The mode stays what it is (COMPLIANCE cannot become GOVERNANCE). */
        mode = strcmp(info.lock_mode, "COMPLIANCE") == 0   ? "COMPLIANCE"
               : strcmp(info.lock_mode, "GOVERNANCE") == 0 ? "GOVERNANCE"
               : c->mode == HF_S3_LOCK_COMPLIANCE          ? "COMPLIANCE"
                                                           : "GOVERNANCE";
        sink_done(&info);
        r = put_retention(sb, key, mode, target);
        if (r >= 0)
                written_put(sb, t, name, target);
        return r;
}

static void s3_free(HfBackend *b)
{
        S3Backend *sb = (S3Backend *)b;

        client_unref(sb->c);
        pthread_mutex_destroy(&sb->written_lock);
        free(sb->written);
        free(sb->prefix);
        free(sb->base.location);
        free(sb);
}

static const HfBackendOps s3_ops = {
        .create = s3_create,
        .save = s3_save,
        .load = s3_load,
        .read_at = s3_read_at,
        .stat = s3_stat,
        .remove = s3_remove,
        .list = s3_list,
        .free = s3_free,
        .temp_open = s3_temp_open,
        .temp_commit = s3_temp_commit,
        .temp_abort = s3_temp_abort,
        .retention = s3_retention,
        .retain = s3_retain,
};

/* ---- opening: the bucket, its Object Lock, creation ---- */

static int bucket_request(S3Client *c, const char *method, const char *query, const char *body,
                          Req *rq, Sink *sink)
{
        *rq = (Req){ .method = method, .key = NULL, .query = query, .fd = -1, .sink = sink };
        if (body) {
                rq->body = body;
                rq->body_len = strlen(body);
        }
        return perform(c, rq);
}

/* Reads the bucket's Object Lock configuration: 0, -ENXIO (no bucket, not yet explained when
 * quiet_missing), or another error (explained). */
static int read_lock_config(S3Client *c, bool quiet_missing)
{
        HfBuf body = HF_BUF_INIT(1 << 20);
        Sink sink = SINK_INIT;
        Req rq;
        int r;

        sink.body.buf = &body;
        r = bucket_request(c, "GET", "object-lock=", NULL, &rq, &sink);
        c->lock_cfg = (HfS3LockConfig){ 0 };
        if (r < 0)
                goto out;
        if (rq.status == 200) {
                r = hf_s3_parse_lock_config(body.data, body.len, &c->lock_cfg);
                if (r < 0)
                        log_error("%s: the S3 server's Object Lock configuration of bucket "
                                  "\"%s\" is malformed",
                                  c->endpoint, c->bucket);
        } else if (strcmp(rq.code, "NoSuchBucket") == 0 && quiet_missing)
                r = -ENXIO;
        else if (rq.status == 404 || rq.status == 501 || rq.status == 400)
                r = 0; /* ObjectLockConfigurationNotFoundError, or no Object Lock at all */
        else
                r = reply_errno(c, &rq, "the bucket's Object Lock configuration");
out:
        hf_buf_free(&body);
        sink_done(&sink);
        return r;
}

static int create_bucket(S3Client *c, bool with_lock)
{
        _cleanup_buf_ HfBuf body = HF_BUF_INIT(4096);
        Sink sink = SINK_INIT;
        Req rq;
        int r = 0;

        /* us-east-1 is the default location and must not be named. */
        if (strcmp(c->region, "us-east-1") != 0)
                r = hf_buf_printf(&body,
                                  "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/"
                                  "doc/2006-03-01/\"><LocationConstraint>%s</LocationConstraint>"
                                  "</CreateBucketConfiguration>",
                                  c->region);
        if (r < 0)
                return r;
        rq = (Req){ .method = "PUT", .query = "", .fd = -1, .sink = &sink };
        rq.body = body.data;
        rq.body_len = body.len;
        if (with_lock)
                add_header(&rq, "x-amz-bucket-object-lock-enabled", "true");
        r = perform(c, &rq);
        if (r >= 0 && rq.status != 200) {
                if (strcmp(rq.code, "BucketAlreadyOwnedByYou") == 0)
                        r = 0;
                else
                        r = reply_errno(c, &rq, "the bucket");
        }
        sink_done(&sink);
        if (r >= 0)
                log_info("created bucket \"%s\"%s on %s", c->bucket,
                         with_lock ? " with Object Lock" : "", c->endpoint);
        return r;
}

static int put_lock_config(S3Client *c, const HfBackendS3Lock *lock)
{
        char body[512], md5[32];
        Sink sink = SINK_INIT;
        Req rq;
        int r;

        (void)snprintf(body, sizeof(body),
                       "<ObjectLockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                       "<ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>"
                       "<Mode>%s</Mode><Days>%u</Days></DefaultRetention></Rule>"
                       "</ObjectLockConfiguration>",
                       lock->governance ? "GOVERNANCE" : "COMPLIANCE", lock->days);
        rq = (Req){ .method = "PUT", .query = "object-lock=", .fd = -1, .sink = &sink };
        rq.body = body;
        rq.body_len = strlen(body);
        content_md5(body, rq.body_len, md5);
        add_header(&rq, "content-md5", md5);
        add_header(&rq, "content-type", "application/xml");
        r = perform(c, &rq);
        if (r >= 0 && rq.status != 200) {
                if (strcmp(rq.code, "InvalidBucketState") == 0) {
                        log_error("the bucket \"%s\" on %s was created without Object Lock, and "
                                  "S3 cannot turn it on afterwards: use a new bucket for a vault "
                                  "under Object Lock",
                                  c->bucket, c->endpoint);
                        r = -EOPNOTSUPP;
                } else
                        r = reply_errno(c, &rq, "the bucket's Object Lock configuration");
        }
        sink_done(&sink);
        return r;
}

static int parse_url(const char *url, S3Client *c, char **ret_prefix)
{
        const char *p = url, *host, *slash, *bucket, *bend;
        bool https = true;
        size_t plen;

        if (strncmp(p, "https://", 8) == 0)
                p += 8;
        else if (strncmp(p, "http://", 7) == 0) {
                p += 7;
                https = false;
        }
        host = p;
        slash = strchr(host, '/');
        if (!slash || slash == host || memchr(host, '@', (size_t)(slash - host)))
                return -EINVAL;
        bucket = slash + 1;
        bend = strchr(bucket, '/');
        if (!bend)
                bend = bucket + strlen(bucket);
        if (bend - bucket < 3 || bend - bucket > 63)
                return -EINVAL;
        for (const char *q = bucket; q < bend; q++)
                if (!((*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '-' ||
                      *q == '.' || *q == '_' || (*q >= 'A' && *q <= 'Z')))
                        return -EINVAL;
        c->tls = https;
        c->host = strndup(host, (size_t)(slash - host));
        c->bucket = strndup(bucket, (size_t)(bend - bucket));
        if (!c->host || !c->bucket ||
            asprintf(&c->endpoint, "%s://%s", https ? "https" : "http", c->host) < 0) {
                c->endpoint = NULL;
                return -ENOMEM;
        }
        /* The prefix: no empty segments, no dot segments; stored with a trailing '/'. */
        p = *bend ? bend + 1 : bend;
        plen = strlen(p);
        while (plen && p[plen - 1] == '/')
                plen--;
        if (plen > 512)
                return -EINVAL;
        for (size_t i = 0; i < plen; i++)
                if ((unsigned char)p[i] < 0x20 || p[i] == '\\' || p[i] == 0x7f)
                        return -EINVAL;
        if (plen && (strstr(p, "//") || p[0] == '/'))
                return -EINVAL;
        if (asprintf(ret_prefix, "%.*s%s", (int)plen, p, plen ? "/" : "") < 0) {
                *ret_prefix = NULL;
                return -ENOMEM;
        }
        return 0;
}

static int backend_new(S3Client *c, const char *prefix, HfBackend **ret)
{
        S3Backend *sb = calloc(1, sizeof(*sb));

        if (!sb)
                return -ENOMEM;
        sb->base.ops = &s3_ops;
        pthread_mutex_init(&sb->written_lock, NULL);
        sb->prefix = strdup(prefix);
        if (!sb->prefix ||
            asprintf(&sb->base.location, "s3:%s/%s%s%.*s", c->endpoint, c->bucket,
                     *prefix ? "/" : "", (int)MAX(strlen(prefix), 1) - 1, prefix) < 0) {
                pthread_mutex_destroy(&sb->written_lock);
                free(sb->prefix);
                free(sb);
                return -ENOMEM;
        }
        atomic_fetch_add(&c->refs, 1);
        sb->c = c;
        *ret = &sb->base;
        return 0;
}

static char *env_dup(const char *a, const char *b)
{
        const char *v = getenv(a);

        if ((!v || !*v) && b)
                v = getenv(b);
        return v && *v ? strdup(v) : NULL;
}

int hf_backend_s3_open(const char *url, bool create, const HfBackendS3Lock *lock, HfBackend **ret)
{
        _cleanup_free_ char *prefix = NULL;
        S3Client *c;
        const char *v;
        int r;

        if (!url || strlen(url) > 2048 || strpbrk(url, " \t\r\n"))
                return -EINVAL;
        if (hf_curl_global_init() < 0)
                return -EIO;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        atomic_init(&c->refs, 1);
        hf_curl_pool_init(&c->pool);
        r = parse_url(url, c, &prefix);
        if (r < 0) {
                if (r == -EINVAL)
                        log_error("s3:%s: not an S3 location: use "
                                  "s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX]",
                                  url);
                goto fail;
        }
        c->access_key = env_dup("AWS_ACCESS_KEY_ID", NULL);
        c->secret_key = env_dup("AWS_SECRET_ACCESS_KEY", NULL);
        c->session_token = env_dup("AWS_SESSION_TOKEN", NULL);
        c->region = env_dup("AWS_DEFAULT_REGION", "AWS_REGION");
        if (!c->region)
                c->region = strdup("us-east-1");
        if (!c->access_key || !c->secret_key) {
                log_error("s3:%s: no S3 credentials: set AWS_ACCESS_KEY_ID and "
                          "AWS_SECRET_ACCESS_KEY",
                          url);
                r = -ENOKEY;
                goto fail;
        }
        c->cacert = env_dup("HOLDFAST_CACERT", "RESTIC_CACERT");
        c->tries = TRIES;
        if ((v = getenv("HOLDFAST_S3_TRIES")) && *v) {
                uint64_t t;
                if (hf_parse_u64(v, &t) == 0 && t >= 1 && t <= 20)
                        c->tries = (int)t;
        }
        if (!c->region) {
                r = -ENOMEM;
                goto fail;
        }

        r = read_lock_config(c, true);
        if (r == -ENXIO) {
                if (!create) {
                        log_error("the bucket \"%s\" does not exist on the S3 server at %s: "
                                  "check the name, or create the vault with \"holdfast init\"",
                                  c->bucket, c->endpoint);
                        goto fail;
                }
                r = create_bucket(c, lock != NULL);
                if (r >= 0)
                        r = read_lock_config(c, false);
        }
        if (r < 0)
                goto fail;
        if (lock) {
                if (!c->lock_cfg.enabled) {
                        log_error("the bucket \"%s\" on %s has no Object Lock (it was created "
                                  "without it, and S3 cannot turn it on afterwards): use a new "
                                  "bucket for a vault under Object Lock",
                                  c->bucket, c->endpoint);
                        r = -EOPNOTSUPP;
                        goto fail;
                }
                /* Not over a vault that is there already: init fails on it, and its bucket's
                 * promise stays as it was. */
                {
                        S3Backend probe = { .c = c, .prefix = prefix };
                        char key[KEY_MAX];
                        r = object_key(&probe, HF_FILE_CONFIG, "config", key, sizeof(key));
                        if (r >= 0)
                                r = s3_stat_key(&probe, key, NULL, NULL);
                }
                if (r == -ENOENT)
                        r = put_lock_config(c, lock);
                if (r >= 0)
                        r = read_lock_config(c, false);
                if (r < 0)
                        goto fail;
        }
        if (c->lock_cfg.enabled && c->lock_cfg.mode != HF_S3_LOCK_NONE) {
                c->mode = c->lock_cfg.mode;
                c->period = (int64_t)c->lock_cfg.days * 86400;
                /* Tests and drills: a retention of seconds (the bucket's default stays). */
                if ((v = getenv("HOLDFAST_S3_LOCK_SECONDS")) && *v) {
                        uint64_t s;
                        if (hf_parse_u64(v, &s) == 0 && s >= 1 && s <= (uint64_t)c->period)
                                c->period = (int64_t)s;
                }
        }
        r = backend_new(c, prefix, ret);
fail:
        client_unref(c);
        return r;
}

int hf_backend_s3_sub(HfBackend *b, const char *sub, HfBackend **ret)
{
        S3Backend *sb = (S3Backend *)b;
        _cleanup_free_ char *prefix = NULL;

        if (b->ops != &s3_ops)
                return -EINVAL;
        if (asprintf(&prefix, "%s%s%s", sb->prefix, sub, *sub ? "/" : "") < 0)
                return -ENOMEM;
        if (strlen(prefix) > 512)
                return -ENAMETOOLONG;
        return backend_new(sb->c, prefix, ret);
}

bool hf_backend_is_s3(const HfBackend *b)
{
        return b && b->ops == &s3_ops;
}

int hf_backend_s3_info(HfBackend *b, HfBackendS3Info *ret)
{
        S3Backend *sb = (S3Backend *)b;

        if (!hf_backend_is_s3(b))
                return -EINVAL;
        *ret = (HfBackendS3Info){
                .bucket = sb->c->bucket,
                .endpoint = sb->c->endpoint,
                .lock_enabled = sb->c->lock_cfg.enabled,
                .governance = sb->c->mode == HF_S3_LOCK_GOVERNANCE,
                .default_days = sb->c->lock_cfg.days,
                .retention_seconds = sb->c->mode != HF_S3_LOCK_NONE ? sb->c->period : 0,
        };
        return 0;
}
