/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * REST backend client (restic-format.md §9): rest:http(s)://[user:pass@]host:port/path.
 *
 * The vault layers call a backend from several threads at once (uploaders, restore and check
 * workers), so requests take a libcurl easy handle from a small pool and give it back after;
 * each handle keeps its connection alive, so N threads use N persistent connections.
 * Transient failures (connection errors, 5xx except 501/507, 408, 429) are retried with
 * exponential backoff; 401, 403, 404, 416 and 507 are final. Credentials are handed to curl
 * separately and never appear in a message.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "../base/log.h"
#include "../base/util.h"
#include "backend.h"
#include "curl-pool.h"

#define TRIES 6
#define LIST_MAX (512ULL << 20) /* a listing of ~5M objects */
#define SMALL_MAX (64ULL << 20) /* anything not a pack: keys, config, index, snapshots */
#define V2_TYPE "application/vnd.x.restic.rest.v2"

typedef struct RestBackend {
        HfBackend base;
        int tries; /* attempts per request: TRIES, or $HOLDFAST_REST_TRIES (1..20) */
        char *url; /* scheme://host:port/path/ (ends in '/'), no credentials */
        char *user, *password;
        char *cacert;
        HfCurlPool pool;
        bool warned_auth;
        bool rclone; /* Server: rclone/... seen */
        /* holdfast serve --backend s3: with Object Lock: X-Holdfast-Retention of config */
        int64_t retention;
} RestBackend;

/* A response: its body, and the headers of interest. */
typedef struct Sink {
        HfCurlBody body;
        bool v2;
        bool rclone;
        int64_t retention; /* X-Holdfast-Retention (seconds), 0 when absent */
} Sink;

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
        Sink *s = userdata;
        size_t n = size * nmemb;

        return hf_curl_body_take(&s->body, data, n) ? n : 0;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata)
{
        Sink *s = userdata;
        size_t n = size * nmemb;

        if (n > 13 && strncasecmp(data, "Content-Type:", 13) == 0 &&
            memmem(data, n, V2_TYPE, strlen(V2_TYPE)))
                s->v2 = true;
        if (n > 14 && strncasecmp(data, "Server: rclone", 14) == 0)
                s->rclone = true;
        if (n > 21 && strncasecmp(data, "X-Holdfast-Retention:", 21) == 0) {
                char v[24];
                size_t k = strspn(data + 21, " \t"), m = strcspn(data + 21 + k, "\r\n");
                uint64_t sec;
                if (m < sizeof(v)) {
                        memcpy(v, data + 21 + k, m);
                        v[m] = 0;
                        if (hf_parse_u64(v, &sec) == 0 && sec <= 100ULL * 366 * 86400)
                                s->retention = (int64_t)sec;
                }
        }
        return n;
}

typedef struct Req {
        const char *method; /* GET HEAD POST DELETE */
        const char *path;   /* relative to the base URL ("" for the base itself) */
        const void *body;   /* POST */
        size_t body_len;
        bool has_range;
        uint64_t off, len; /* len 0: to the end */
        bool accept_v2;
        Sink *sink;
        long status;            /* out */
        curl_off_t content_len; /* out, HEAD */
} Req;

static bool retryable_status(long st)
{
        return st == 408 || st == 429 || (st >= 500 && st != 501 && st != 507);
}

static int status_errno(long st)
{
        switch (st) {
        case 401:
        case 403:
                return -EACCES;
        case 404:
                return -ENOENT;
        case 413:
                return -E2BIG;
        case 416:
                return -ENODATA;
        case 507:
                return -ENOSPC;
        case 501:
        case 405:
                return -EOPNOTSUPP;
        default:
                return st >= 400 && st < 500 ? -EINVAL : -EIO;
        }
}

/* One attempt. Returns 0 with req->status set, or a negative errno for a transport failure
 * (*ret_retry tells whether it may succeed on another try). */
static int attempt(RestBackend *rb, CURL *c, Req *req, bool *ret_retry)
{
        _cleanup_free_ char *url = NULL;
        struct curl_slist *hdrs = NULL;
        char range[64];
        CURLcode cc;

        *ret_retry = false;
        if (asprintf(&url, "%s%s", rb->url, req->path) < 0)
                return -ENOMEM;
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 15L);
        /* A stalled transfer (no byte for two minutes) fails and is retried. */
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 120L);
        curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(c, CURLOPT_USERAGENT, "holdfast");
        if (rb->user) {
                curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
                curl_easy_setopt(c, CURLOPT_USERNAME, rb->user);
                curl_easy_setopt(c, CURLOPT_PASSWORD, rb->password ? rb->password : "");
        }
        if (rb->cacert)
                curl_easy_setopt(c, CURLOPT_CAINFO, rb->cacert);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, req->sink);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, req->sink);

        if (req->accept_v2)
                hdrs = curl_slist_append(hdrs, "Accept: " V2_TYPE);
        if (strcmp(req->method, "POST") == 0) {
                hdrs = curl_slist_append(hdrs, "Content-Type: application/octet-stream");
                hdrs = curl_slist_append(hdrs, "Expect:");
                curl_easy_setopt(c, CURLOPT_POST, 1L);
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body ? req->body : "");
                curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        } else if (strcmp(req->method, "HEAD") == 0)
                curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        else if (strcmp(req->method, "DELETE") == 0)
                curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "DELETE");
        if (req->has_range) {
                if (req->len)
                        (void)snprintf(range, sizeof(range), "Range: bytes=%llu-%llu",
                                       (unsigned long long)req->off,
                                       (unsigned long long)(req->off + req->len - 1));
                else
                        (void)snprintf(range, sizeof(range), "Range: bytes=%llu-",
                                       (unsigned long long)req->off);
                hdrs = curl_slist_append(hdrs, range);
        }
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);

        hf_curl_body_reset(&req->sink->body);
        cc = curl_easy_perform(c);
        curl_slist_free_all(hdrs);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
        if (cc == CURLE_WRITE_ERROR && req->sink->body.overflow)
                return -E2BIG;
        if (cc != CURLE_OK) {
                *ret_retry = hf_curl_retryable(cc);
                log_debug("%s %s%s: %s", req->method, rb->base.location, req->path,
                          curl_easy_strerror(cc));
                return hf_curl_errno(cc);
        }
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &req->status);
        curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &req->content_len);
        *ret_retry = retryable_status(req->status);
        return 0;
}

/* Runs a request with retries; 0 with req->status for any HTTP answer that is final. */
static int perform(RestBackend *rb, Req *req)
{
        double delay = 0.25;
        CURL *c;
        int r = -EIO;

        c = hf_curl_pool_take(&rb->pool);
        if (!c)
                return -ENOMEM;
        for (int i = 0; i < rb->tries; i++) {
                bool retry;

                r = attempt(rb, c, req, &retry);
                if (!retry)
                        break;
                if (i + 1 == rb->tries)
                        break;
                if (r == 0)
                        log_warning("%s %s/%s: HTTP %ld, retrying in %.1f s", req->method,
                                    rb->base.location, req->path, req->status, delay);
                else
                        log_warning_errno(r, "%s %s/%s: %m, retrying in %.1f s", req->method,
                                          rb->base.location, req->path, delay);
                /* A broken connection must not be reused. */
                curl_easy_cleanup(c);
                c = curl_easy_init();
                if (!c)
                        return -ENOMEM;
                hf_curl_backoff(delay);
                delay = MIN(delay * 2, 8.0);
        }
        if (req->sink->rclone)
                rb->rclone = true;
        hf_curl_pool_give(&rb->pool, c);
        if (r == 0 && req->status == 401 && !rb->warned_auth) {
                rb->warned_auth = true;
                log_error("%s: the server refused the credentials (HTTP 401): check the user "
                          "and password in the URL",
                          rb->base.location);
        }
        if (r == 0 && retryable_status(req->status))
                return -EIO;
        return r;
}

static int object_path(HfFileType t, const char *name, char *buf, size_t n)
{
        int k;

        if (t >= _HF_FILE_TYPE_MAX)
                return -EINVAL;
        if (t == HF_FILE_CONFIG)
                k = snprintf(buf, n, "config");
        else {
                if (strlen(name) != 64 || strspn(name, "0123456789abcdef") != 64)
                        return -EINVAL;
                k = snprintf(buf, n, "%s/%s", hf_file_type_dir(t), name);
        }
        return k < 0 || (size_t)k >= n ? -ENAMETOOLONG : 0;
}

static int rest_stat(HfBackend *b, HfFileType t, const char *name, uint64_t *ret_size)
{
        RestBackend *rb = (RestBackend *)b;
        Sink sink = { 0 };
        char path[128];
        Req req = { .method = "HEAD", .path = path, .sink = &sink, .accept_v2 = true };
        int r;

        r = object_path(t, name, path, sizeof(path));
        if (r < 0)
                return r;
        r = perform(rb, &req);
        if (r < 0)
                return r;
        if (req.status != 200)
                return status_errno(req.status);
        if (req.content_len < 0)
                return -EPROTO;
        if (t == HF_FILE_CONFIG)
                rb->retention = sink.retention;
        if (ret_size)
                *ret_size = (uint64_t)req.content_len;
        return 0;
}

static int rest_create(HfBackend *b)
{
        RestBackend *rb = (RestBackend *)b;
        Sink sink = { 0 };
        Req req = { .method = "POST", .path = "?create=true", .sink = &sink };
        int r;

        r = rest_stat(b, HF_FILE_CONFIG, "config", NULL);
        if (r == 0)
                return -EEXIST;
        if (r != -ENOENT)
                return r;
        r = perform(rb, &req);
        if (r < 0)
                return r;
        return req.status == 200 ? 0 : status_errno(req.status);
}

static int rest_save(HfBackend *b, HfFileType t, const char *name, const void *p, size_t n)
{
        RestBackend *rb = (RestBackend *)b;
        Sink sink = { 0 };
        char path[128];
        Req req = { .method = "POST", .path = path, .body = p, .body_len = n, .sink = &sink };
        uint64_t size;
        int r;

        r = object_path(t, name, path, sizeof(path));
        if (r < 0)
                return r;
        r = perform(rb, &req);
        if (r < 0)
                return r;
        if (req.status == 200)
                return 0;
        /* Servers answer 403 for an existing object (never overwritten); tell that apart
         * from a refusal, as the vault layers treat -EEXIST for identical content as done. */
        if (req.status == 403 && rest_stat(b, t, name, &size) == 0)
                return -EEXIST;
        return status_errno(req.status);
}

static int get_range(RestBackend *rb, HfFileType t, const char *name, uint64_t off, size_t len,
                     Sink *sink)
{
        char path[128];
        Req req = { .method = "GET",
                    .path = path,
                    .sink = sink,
                    .accept_v2 = true,
                    .has_range = true,
                    .off = off,
                    .len = len };
        int r;

        r = object_path(t, name, path, sizeof(path));
        if (r < 0)
                return r;
        r = perform(rb, &req);
        if (r < 0)
                return r;
        if (req.status == 200 && off > 0)
                return -EPROTO; /* the server ignored the range; never seen from restic's */
        if (req.status != 200 && req.status != 206)
                return status_errno(req.status);
        if (len && sink->body.got != len)
                return -ENODATA;
        return 0;
}

static int rest_load(HfBackend *b, HfFileType t, const char *name, uint64_t off, size_t len,
                     HfBuf *out)
{
        RestBackend *rb = (RestBackend *)b;
        HfBuf tmp = HF_BUF_INIT(out->max > out->len ? out->max - out->len : 0);
        Sink sink = { .body.buf = &tmp };
        int r;

        r = get_range(rb, t, name, off, len, &sink);
        if (r >= 0)
                r = hf_buf_append(out, tmp.data, tmp.len);
        hf_buf_free(&tmp);
        return r;
}

static int rest_read_at(HfBackend *b, HfFileType t, const char *name, uint64_t off, size_t len,
                        void *p)
{
        Sink sink = { .body.p = p, .body.cap = len };

        if (len == 0)
                return 0;
        return get_range((RestBackend *)b, t, name, off, len, &sink);
}

static int rest_remove(HfBackend *b, HfFileType t, const char *name)
{
        RestBackend *rb = (RestBackend *)b;
        Sink sink = { 0 };
        char path[128];
        Req req = { .method = "DELETE", .path = path, .sink = &sink, .accept_v2 = true };
        int r;

        r = object_path(t, name, path, sizeof(path));
        if (r < 0)
                return r;
        r = perform(rb, &req);
        if (r < 0)
                return r;
        return req.status == 200 || req.status == 204 ? 0 : status_errno(req.status);
}

static bool name_ok(const char *s, size_t n)
{
        if (n != 64)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

int hf_rest_parse_list(const void *json, size_t n, bool v2, HfListFn fn, void *userdata)
{
        json_t *root;
        size_t i;
        json_t *e;
        int r = 0;

        root = json_loadb(json, n, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_array(root)) {
                json_decref(root);
                return -EPROTO;
        }
        json_array_foreach(root, i, e)
        {
                const char *name;
                size_t len;
                uint64_t size = 0;

                if (v2) {
                        json_t *jn = json_object_get(e, "name"), *js = json_object_get(e, "size");
                        if (!json_is_object(e) || !json_is_string(jn) || !json_is_integer(js) ||
                            json_integer_value(js) < 0) {
                                r = -EPROTO;
                                break;
                        }
                        name = json_string_value(jn);
                        len = json_string_length(jn);
                        size = (uint64_t)json_integer_value(js);
                } else {
                        if (!json_is_string(e)) {
                                r = -EPROTO;
                                break;
                        }
                        name = json_string_value(e);
                        len = json_string_length(e);
                }
                if (!name_ok(name, len))
                        continue; /* like the local backend: foreign names are not ours */
                r = fn(userdata, name, size);
                if (r < 0)
                        break;
        }
        json_decref(root);
        return r;
}

typedef struct V1Ctx {
        RestBackend *rb;
        HfFileType t;
        HfListFn fn;
        void *userdata;
} V1Ctx;

/* v1 listings carry names only: each size comes from a HEAD, as restic does. */
static int v1_size(void *userdata, const char *name, uint64_t unused)
{
        V1Ctx *v = userdata;
        uint64_t size = 0;
        int r = rest_stat(&v->rb->base, v->t, name, &size);

        if (r == -ENOENT)
                return 0; /* removed meanwhile */
        if (r < 0)
                return r;
        return v->fn(v->userdata, name, size);
}

static int rest_list(HfBackend *b, HfFileType t, HfListFn fn, void *userdata)
{
        RestBackend *rb = (RestBackend *)b;
        HfBuf body = HF_BUF_INIT(LIST_MAX);
        Sink sink = { .body.buf = &body };
        char path[32];
        Req req = { .method = "GET", .path = path, .sink = &sink, .accept_v2 = true };
        V1Ctx v1 = { rb, t, fn, userdata };
        int r;

        if (t == HF_FILE_CONFIG) {
                uint64_t size = 0;
                r = rest_stat(b, t, "config", &size);
                if (r == -ENOENT)
                        return 0;
                return r < 0 ? r : fn(userdata, "config", size);
        }
        if (t >= _HF_FILE_TYPE_MAX)
                return -EINVAL;
        (void)snprintf(path, sizeof(path), "%s/", hf_file_type_dir(t));
        r = perform(rb, &req);
        if (r < 0)
                goto out;
        if (req.status == 404 && !sink.rclone) {
                r = 0; /* no folder yet: nothing of that type */
                goto out;
        }
        if (req.status != 200) {
                r = status_errno(req.status);
                goto out;
        }
        if (sink.v2)
                r = hf_rest_parse_list(body.data, body.len, true, fn, userdata);
        else
                r = hf_rest_parse_list(body.data, body.len, false, v1_size, &v1);
        if (r == -EPROTO)
                log_error("%s/%s/: the server's listing is not valid JSON of the REST protocol",
                          b->location, hf_file_type_dir(t));
out:
        hf_buf_free(&body);
        return r;
}

/* Object Lock through holdfast serve --backend s3: (docs/internals/s3.md). */
static int64_t rest_retention(HfBackend *b)
{
        return ((RestBackend *)b)->retention;
}

static int rest_retain(HfBackend *b, HfFileType t, const char *name, int64_t until)
{
        RestBackend *rb = (RestBackend *)b;
        Sink sink = { 0 };
        char path[160];
        Req req = { .method = "POST", .path = path, .sink = &sink };
        int r;

        if (rb->retention <= 0 || t == HF_FILE_LOCK)
                return 0;
        r = object_path(t, name, path, 128);
        if (r < 0)
                return r;
        (void)snprintf(path + strlen(path), sizeof(path) - strlen(path), "?retain=%lld",
                       (long long)until);
        r = perform(rb, &req);
        if (r < 0)
                return r;
        return req.status == 200 ? 0 : status_errno(req.status);
}

static void rest_free(HfBackend *b)
{
        RestBackend *rb = (RestBackend *)b;

        hf_curl_pool_done(&rb->pool);
        if (rb->password) {
                explicit_bzero(rb->password, strlen(rb->password));
                free(rb->password);
        }
        free(rb->user);
        free(rb->url);
        free(rb->cacert);
        free(rb->base.location);
        free(rb);
}

static const HfBackendOps rest_ops = {
        .create = rest_create,
        .save = rest_save,
        .load = rest_load,
        .read_at = rest_read_at,
        .stat = rest_stat,
        .remove = rest_remove,
        .list = rest_list,
        .free = rest_free,
        .retention = rest_retention,
        .retain = rest_retain,
};

/* Percent-decodes userinfo (restic's URLs carry it escaped). */
static char *unescape(const char *s, size_t n)
{
        char *out = malloc(n + 1);
        size_t m = 0;

        if (!out)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                uint8_t byte;
                size_t got;

                if (s[i] == '%' && i + 2 < n && hf_hex_decode(s + i + 1, 2, &byte, 1, &got) == 0) {
                        out[m++] = (char)byte;
                        i += 2;
                        continue;
                }
                out[m++] = s[i];
        }
        out[m] = 0;
        return out;
}

int hf_backend_rest_open(const char *url, bool create, HfBackend **ret)
{
        RestBackend *rb;
        const char *scheme_end, *host, *slash, *at;
        const char *v;
        int r = -ENOMEM;

        (void)create;
        if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0))
                return -EINVAL;
        if (strlen(url) > 2048 || strpbrk(url, " \t\r\n"))
                return -EINVAL;
        if (hf_curl_global_init() < 0)
                return -EIO;
        rb = calloc(1, sizeof(*rb));
        if (!rb)
                return -ENOMEM;
        hf_curl_pool_init(&rb->pool);
        rb->base.ops = &rest_ops;

        scheme_end = strstr(url, "://") + 3;
        slash = strchr(scheme_end, '/');
        if (!slash)
                slash = scheme_end + strlen(scheme_end);
        at = memrchr(scheme_end, '@', (size_t)(slash - scheme_end));
        host = at ? at + 1 : scheme_end;
        if (at) {
                const char *colon = memchr(scheme_end, ':', (size_t)(at - scheme_end));
                rb->user = unescape(scheme_end, (size_t)((colon ? colon : at) - scheme_end));
                if (colon)
                        rb->password = unescape(colon + 1, (size_t)(at - colon - 1));
                if (!rb->user || (colon && !rb->password))
                        goto fail;
        }
        {
                size_t plen = strlen(slash);
                bool need_slash = plen == 0 || slash[plen - 1] != '/';
                if (asprintf(&rb->url, "%.*s%s%s", (int)(scheme_end - url), url, host,
                             need_slash ? "/" : "") < 0) {
                        rb->url = NULL;
                        goto fail;
                }
                /* Messages name the URL without credentials and without the final '/'. */
                if (asprintf(&rb->base.location, "rest:%.*s%.*s", (int)(scheme_end - url), url,
                             (int)(strlen(host) - (need_slash ? 0 : 1)), host) < 0) {
                        rb->base.location = NULL;
                        goto fail;
                }
        }
        if (!*host || *host == '/') {
                r = -EINVAL;
                goto fail;
        }
        rb->tries = TRIES;
        if ((v = getenv("HOLDFAST_REST_TRIES")) && *v) {
                uint64_t t;
                if (hf_parse_u64(v, &t) == 0 && t >= 1 && t <= 20)
                        rb->tries = (int)t;
        }
        if (((v = getenv("HOLDFAST_CACERT")) && *v) || ((v = getenv("RESTIC_CACERT")) && *v)) {
                rb->cacert = strdup(v);
                if (!rb->cacert)
                        goto fail;
        }
        *ret = &rb->base;
        return 0;
fail:
        rest_free(&rb->base);
        return r;
}
