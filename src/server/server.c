/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * holdfast serve: the HTTP side. libmicrohttpd runs one thread per connection (uploads end
 * in fsyncs, which would stall an event loop), bounded by --max-connections, with an idle
 * timeout and a fixed per-connection memory pool that also bounds the request headers.
 *
 * A request is decided when its headers are complete (path, authentication, permission,
 * Content-Length); an upload then streams into an unnamed temp file (O_TMPFILE) next to its
 * destination while its SHA-256 is computed, and becomes visible only by linkat() after the
 * hash matched its name and the data were fsynced. linkat() never replaces a name, so no
 * object is ever overwritten. A crash at any point leaves either nothing or the complete
 * object.
 */
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "../base/log.h"
#include "../crypto/crypto.h"
#include "internal.h"

#define DEFAULT_MAX_OBJECT (256ULL << 20)
#define LISTING_MAX (1ULL << 30)
#define CONN_MEMORY (256 * 1024)
#define HOSTS_MAX 10000
#define V2_TYPE "application/vnd.x.restic.rest.v2"
#define V1_TYPE "application/vnd.x.restic.rest.v1"

enum {
        M_GET,
        M_HEAD,
        M_POST,
        M_DELETE,
        M_OTHER,
        _M_MAX
};
static const char *const method_names[_M_MAX] = { "GET", "HEAD", "POST", "DELETE", "OTHER" };
static const unsigned codes[] = { 200, 206, 400, 401, 403, 404, 405, 411, 413, 416, 500, 507 };
#define N_CODES (ELEMENTSOF(codes) + 1) /* + "other" */

typedef struct Host {
        char name[HF_HOST_NAME_MAX + 1];
        double last; /* CLOCK_REALTIME seconds */
        bool warned; /* silent and already reported */
} Host;

struct HfServer {
        HfServerOptions o;
        int rootfd, statefd, lockfd, listen_fd;
        char addr[160];
        HfReceiptLog *log;
        HfAuth *auth;
        struct MHD_Daemon *mhd;
        char *tls_cert, *tls_key;
        uint64_t max_object;
        double retention;
        /* --backend s3:...: objects live in a bucket, one backend per repository */
        HfBackend *remote;
        pthread_mutex_t remote_lock;
        struct RemoteRepo *remote_repos;
        size_t n_remote_repos;

        pthread_mutex_t hb_lock;
        pthread_cond_t hb_cond;
        Host *hosts;
        size_t n_hosts;
        pthread_t watchdog;
        bool watchdog_running, stopping;

        atomic_ullong requests[_M_MAX][N_CODES];
        atomic_ullong bytes_received, objects_stored, rejected_hash, rejected_exists,
                rejected_policy, rejected_auth;
};

typedef struct Request {
        HfServer *s;
        int method;
        HfRequestPath path;
        char user[HF_USER_NAME_MAX + 1];
        bool decided;
        bool bad_path; /* already logged */
        /* uploads */
        bool upload;
        int fd, dirfd;
        char tmpname[48]; /* named temp file when O_TMPFILE is not available */
        HfSha256 *sha;
        HfBackend *rb; /* --backend: the repository's backend (owned by the server) */
        uint64_t received, expected;
        unsigned fail_status; /* refused while the body was arriving */
        const char *fail_text;
} Request;

static double now_real(void)
{
        struct timespec ts;

        (void)clock_gettime(CLOCK_REALTIME, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void count(HfServer *s, int method, unsigned status)
{
        size_t i = 0;

        while (i < ELEMENTSOF(codes) && codes[i] != status)
                i++;
        atomic_fetch_add(&s->requests[method][i], 1);
}

static const char *repo_shown(const Request *rq)
{
        return rq->path.repo[0] ? rq->path.repo : "(root)";
}

static enum MHD_Result reply_response(struct MHD_Connection *c, Request *rq, unsigned status,
                                      struct MHD_Response *resp)
{
        enum MHD_Result ret;

        if (!resp)
                return MHD_NO;
        count(rq->s, rq->method, status);
        if (status == 401)
                ret = MHD_queue_basic_auth_fail_response(c, "holdfast", resp);
        else
                ret = MHD_queue_response(c, status, resp);
        MHD_destroy_response(resp);
        return ret;
}

static enum MHD_Result reply(struct MHD_Connection *c, Request *rq, unsigned status,
                             const char *text)
{
        char body[512];
        int n = snprintf(body, sizeof(body), "%s\n", text);
        struct MHD_Response *resp = MHD_create_response_from_buffer(
                (size_t)MIN(MAX(n, 0), (int)sizeof(body) - 1), body, MHD_RESPMEM_MUST_COPY);

        if (!resp)
                return MHD_NO;
        (void)MHD_add_response_header(resp, "Content-Type", "text/plain; charset=utf-8");
        if (status == 405)
                (void)MHD_add_response_header(resp, "Allow",
                                              rq->path.kind == HF_PATH_REPO ? "POST" : "GET, HEAD");
        if (status >= 400 && !rq->bad_path)
                log_full_errno(
                        status == 401 || status == 403 ? HF_LOG_NOTICE : HF_LOG_INFO, 0,
                        "%s %s%s%s%s%s: %u %s", method_names[rq->method], repo_shown(rq),
                        rq->path.kind == HF_PATH_OBJECT || rq->path.kind == HF_PATH_LIST ? "/" : "",
                        rq->path.kind == HF_PATH_OBJECT || rq->path.kind == HF_PATH_LIST
                                ? hf_file_type_dir(rq->path.type)
                                : "",
                        rq->path.kind == HF_PATH_OBJECT ? "/" : "",
                        rq->path.kind == HF_PATH_OBJECT ? rq->path.name : "", status, text);
        return reply_response(c, rq, status, resp);
}

/* ---- objects ---- */

static int object_path(const Request *rq, char *buf, size_t n)
{
        return hf_store_object_path(rq->path.repo, rq->path.type, rq->path.name, buf, n);
}

static bool repo_exists(HfServer *s, const char *repo)
{
        struct stat st;

        return fstatat(s->rootfd, *repo ? repo : ".", &st, 0) == 0 && S_ISDIR(st.st_mode);
}

static enum MHD_Result serve_object(struct MHD_Connection *c, Request *rq)
{
        HfServer *s = rq->s;
        char path[HF_REPO_PATH_MAX + 160];
        const char *range;
        uint64_t off = 0, len;
        struct MHD_Response *resp;
        unsigned status = 200;
        struct stat st;
        int64_t recv_sec;
        int fd;

        if (object_path(rq, path, sizeof(path)) < 0)
                return reply(c, rq, 400, "path too long");
        fd = openat(s->rootfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0)
                return reply(c, rq, errno == ENOENT || errno == ENOTDIR ? 404 : 500,
                             errno == ENOENT || errno == ENOTDIR ? "not found" : "cannot open");
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                close(fd);
                return reply(c, rq, 404, "not found");
        }
        len = (uint64_t)st.st_size;
        range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Range");
        if (range && rq->method == M_GET && len > 0) {
                int r = hf_server_parse_range(range, strlen(range), len, &off, &len);
                if (r < 0) {
                        char cr[64];
                        close(fd);
                        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
                        if (!resp)
                                return MHD_NO;
                        (void)snprintf(cr, sizeof(cr), "bytes */%llu",
                                       (unsigned long long)st.st_size);
                        (void)MHD_add_response_header(resp, "Content-Range", cr);
                        log_info("GET %s/%s/%s: 416 bad range \"%.64s\"", repo_shown(rq),
                                 hf_file_type_dir(rq->path.type), rq->path.name, range);
                        return reply_response(c, rq, 416, resp);
                }
                status = 206;
        }
        resp = MHD_create_response_from_fd_at_offset64(len, fd, off);
        if (!resp) {
                close(fd);
                return MHD_NO;
        }
        (void)MHD_add_response_header(resp, "Content-Type", "application/octet-stream");
        (void)MHD_add_response_header(resp, "Accept-Ranges", "bytes");
        if (status == 206) {
                char cr[96];
                (void)snprintf(cr, sizeof(cr), "bytes %llu-%llu/%llu", (unsigned long long)off,
                               (unsigned long long)(off + len - 1), (unsigned long long)st.st_size);
                (void)MHD_add_response_header(resp, "Content-Range", cr);
        }
        if (hf_receipt_log_lookup(s->log, rq->path.repo, rq->path.type, rq->path.name, &recv_sec) ==
            0) {
                HfBuf b = HF_BUF_INIT(64);
                HfTime t = { .sec = recv_sec };
                if (hf_time_format(&b, &t) >= 0)
                        (void)MHD_add_response_header(resp, "X-Holdfast-Received",
                                                      (const char *)b.data);
                hf_buf_free(&b);
        }
        return reply_response(c, rq, status, resp);
}

typedef struct Listing {
        HfBuf *out;
        bool v2;
        bool first;
} Listing;

static int list_one(void *userdata, const char *repo, HfFileType t, const char *name, int dirfd,
                    uint64_t size)
{
        Listing *l = userdata;
        int r = hf_buf_puts(l->out, l->first ? "" : ",");

        l->first = false;
        if (r < 0)
                return r;
        if (l->v2)
                return hf_buf_printf(l->out, "{\"name\":\"%s\",\"size\":%llu}", name,
                                     (unsigned long long)size);
        return hf_buf_printf(l->out, "\"%s\"", name);
}

static enum MHD_Result serve_listing(struct MHD_Connection *c, Request *rq)
{
        HfServer *s = rq->s;
        const char *accept = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Accept");
        HfBuf out = HF_BUF_INIT(LISTING_MAX);
        Listing l = { .out = &out, .first = true };
        struct MHD_Response *resp;
        size_t len;
        uint8_t *data;
        int r;

        if (!repo_exists(s, rq->path.repo))
                return reply(c, rq, 404, "no such repository");
        l.v2 = accept && strstr(accept, V2_TYPE);
        r = hf_buf_putc(&out, '[');
        if (r >= 0)
                r = hf_store_walk_type(s->rootfd, rq->path.repo, rq->path.type, list_one, &l);
        if (r >= 0)
                r = hf_buf_putc(&out, ']');
        if (r < 0) {
                hf_buf_free(&out);
                return reply(c, rq, r == -E2BIG ? 507 : 500,
                             r == -E2BIG ? "listing too large" : "cannot list");
        }
        len = out.len;
        data = hf_buf_steal(&out, &len);
        resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(data);
                return MHD_NO;
        }
        (void)MHD_add_response_header(resp, "Content-Type", l.v2 ? V2_TYPE : V1_TYPE);
        return reply_response(c, rq, 200, resp);
}

static enum MHD_Result create_repo(struct MHD_Connection *c, Request *rq)
{
        HfServer *s = rq->s;
        const char *create = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "create");
        const char *repo = rq->path.repo;
        char rel[HF_REPO_PATH_MAX + 32];
        _cleanup_close_ int dfd = -1;

        if (!create || strcmp(create, "true") != 0)
                return reply(c, rq, 400, "POST on a repository needs ?create=true");
        /* mkdir -p below the root, one checked segment at a time (the path parser allowed
         * only plain names). */
        for (const char *p = repo; *p;) {
                const char *slash = strchr(p, '/');
                size_t upto = slash ? (size_t)(slash - repo) : strlen(repo);
                (void)snprintf(rel, sizeof(rel), "%.*s", (int)upto, repo);
                if (mkdirat(s->rootfd, rel, 0700) < 0 && errno != EEXIST)
                        return reply(c, rq, errno == ENOSPC || errno == EDQUOT ? 507 : 500,
                                     "cannot create the repository");
                p = slash ? slash + 1 : p + strlen(p);
        }
        dfd = openat(s->rootfd, *repo ? repo : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return reply(c, rq, 500, "cannot open the repository");
        for (HfFileType t = HF_FILE_KEY; t < _HF_FILE_TYPE_MAX; t++)
                if (mkdirat(dfd, hf_file_type_dir(t), 0700) < 0 && errno != EEXIST)
                        return reply(c, rq, 500, "cannot create the repository");
        for (int i = 0; i < 256; i++) {
                (void)snprintf(rel, sizeof(rel), "data/%02x", i);
                if (mkdirat(dfd, rel, 0700) < 0 && errno != EEXIST)
                        return reply(c, rq, 500, "cannot create the repository");
        }
        (void)hf_fsync_dirfd(dfd);
        log_info("repository %s created by %s", repo_shown(rq), rq->user[0] ? rq->user : "-");
        return reply(c, rq, 200, "created");
}

static enum MHD_Result delete_object(struct MHD_Connection *c, Request *rq)
{
        HfServer *s = rq->s;
        char path[HF_REPO_PATH_MAX + 160], msg[256];
        struct stat st;
        int64_t recv_sec;
        HfId sha = { { 0 } };
        int r;

        if (rq->path.type != HF_FILE_LOCK) {
                if (s->o.append_only) {
                        atomic_fetch_add(&s->rejected_policy, 1);
                        return reply(c, rq, 403, "append-only: only locks may be deleted");
                }
        }
        if (object_path(rq, path, sizeof(path)) < 0)
                return reply(c, rq, 400, "path too long");
        if (fstatat(s->rootfd, path, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return reply(c, rq, 200, "not found (nothing to delete)");
        /* Locks are not data: restic must be able to release them, whatever the retention. */
        if (s->retention > 0 && rq->path.type != HF_FILE_LOCK) {
                r = hf_receipt_log_lookup(s->log, rq->path.repo, rq->path.type, rq->path.name,
                                          &recv_sec);
                if (r < 0) {
                        atomic_fetch_add(&s->rejected_policy, 1);
                        return reply(c, rq, 403, "retention: the object has no receipt");
                }
                if (now_real() - (double)recv_sec < s->retention) {
                        double left = s->retention - (now_real() - (double)recv_sec);
                        atomic_fetch_add(&s->rejected_policy, 1);
                        (void)snprintf(msg, sizeof(msg),
                                       "retention: received %.0f s ago, may be deleted in %.0f s",
                                       now_real() - (double)recv_sec, left);
                        return reply(c, rq, 403, msg);
                }
        }
        if (unlinkat(s->rootfd, path, 0) < 0)
                return reply(c, rq, errno == ENOENT ? 200 : 500,
                             errno == ENOENT ? "not found" : "cannot delete");
        {
                char *slash = strrchr(path, '/');
                if (slash) {
                        _cleanup_close_ int dfd = -1;
                        *slash = 0;
                        dfd = openat(s->rootfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                        if (dfd >= 0)
                                (void)hf_fsync_dirfd(dfd);
                }
        }
        r = hf_receipt_log_append(s->log, HF_RECEIPT_DELETE, rq->path.repo, rq->path.type,
                                  rq->path.name, (uint64_t)st.st_size, &sha, rq->user, NULL);
        if (r < 0)
                log_error_errno(r, "%s/%s: cannot record the deletion of %s/%s: %m",
                                HF_SERVER_STATE_DIR, HF_RECEIPT_LOG, repo_shown(rq), rq->path.name);
        log_info("DELETE %s/%s/%s by %s", repo_shown(rq), hf_file_type_dir(rq->path.type),
                 rq->path.name, rq->user[0] ? rq->user : "-");
        return reply(c, rq, 200, "deleted");
}

/* Opens the folder an object goes to, creating type and fan-out folders as needed. */
static int open_target_dir(HfServer *s, const Request *rq)
{
        char rel[HF_REPO_PATH_MAX + 32];
        const char *pre = *rq->path.repo ? rq->path.repo : ".";
        int fd;

        if (rq->path.type == HF_FILE_CONFIG) {
                fd = openat(s->rootfd, pre, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                return fd < 0 ? -errno : fd;
        }
        (void)snprintf(rel, sizeof(rel), "%s/%s", pre, hf_file_type_dir(rq->path.type));
        if (mkdirat(s->rootfd, rel, 0700) < 0 && errno != EEXIST)
                return -errno;
        if (rq->path.type == HF_FILE_PACK) {
                (void)snprintf(rel, sizeof(rel), "%s/data/%.2s", pre, rq->path.name);
                if (mkdirat(s->rootfd, rel, 0700) < 0 && errno != EEXIST)
                        return -errno;
        }
        fd = openat(s->rootfd, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        return fd < 0 ? -errno : fd;
}

/*
 * The length an upload announces (rq->expected, UINT64_MAX without Content-Length). False when
 * it cannot be accepted; the reply is then queued in *ret.
 */
static bool upload_length(struct MHD_Connection *c, Request *rq, enum MHD_Result *ret)
{
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");

        rq->expected = UINT64_MAX;
        if (!cl)
                return true;
        if (hf_parse_u64(cl, &rq->expected) < 0) {
                *ret = reply(c, rq, 400, "bad Content-Length");
                return false;
        }
        if (rq->expected > rq->s->max_object) {
                *ret = reply(c, rq, 413, "object larger than the server accepts");
                return false;
        }
        return true;
}

/*
 * A received body: as long as announced, and its SHA-256 is its name (config excepted). False
 * when not; the reply is then queued in *ret.
 */
static bool upload_complete(struct MHD_Connection *c, Request *rq, HfId *sha, enum MHD_Result *ret)
{
        char hex[HF_ID_HEX_LEN + 1];

        if (rq->fail_status) {
                *ret = reply(c, rq, rq->fail_status, rq->fail_text);
                return false;
        }
        if (rq->expected != UINT64_MAX && rq->received != rq->expected) {
                *ret = reply(c, rq, 400, "body shorter than its Content-Length");
                return false;
        }
        hf_sha256_final(rq->sha, sha);
        hf_id_hex(sha, hex);
        if (rq->path.type != HF_FILE_CONFIG && strcmp(hex, rq->path.name) != 0) {
                atomic_fetch_add(&rq->s->rejected_hash, 1);
                *ret = reply(c, rq, 400, "the body's SHA-256 does not match its name");
                return false;
        }
        return true;
}

/* An upload is stored: count it, log it, tell the client. */
static enum MHD_Result upload_stored(struct MHD_Connection *c, Request *rq)
{
        atomic_fetch_add(&rq->s->objects_stored, 1);
        log_info("POST %s/%s/%s: stored %llu bytes for %s", repo_shown(rq),
                 hf_file_type_dir(rq->path.type), rq->path.name, (unsigned long long)rq->received,
                 rq->user[0] ? rq->user : "-");
        return reply(c, rq, 200, "stored");
}

static enum MHD_Result begin_upload(struct MHD_Connection *c, Request *rq)
{
        HfServer *s = rq->s;
        char path[HF_REPO_PATH_MAX + 160];
        enum MHD_Result ret;
        struct stat st;
        int r;

        if (!repo_exists(s, rq->path.repo))
                return reply(c, rq, 404, "no such repository (create it with ?create=true)");
        if (object_path(rq, path, sizeof(path)) < 0)
                return reply(c, rq, 400, "path too long");
        if (fstatat(s->rootfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0) {
                atomic_fetch_add(&s->rejected_exists, 1);
                return reply(c, rq, 403, "exists: objects are never overwritten");
        }
        if (!upload_length(c, rq, &ret))
                return ret;
        r = open_target_dir(s, rq);
        if (r < 0)
                return reply(c, rq, r == -ENOSPC || r == -EDQUOT ? 507 : 500,
                             "cannot create the folder");
        rq->dirfd = r;
        rq->fd = openat(rq->dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0400);
        if (rq->fd < 0) {
                /* Filesystems without O_TMPFILE: a named temp, removed at the next start if
                 * a crash leaves it (names that are not IDs are never listed). */
                uint8_t rnd[8];
                char hex[17];
                if (hf_random_bytes(rnd, sizeof(rnd)) < 0)
                        return reply(c, rq, 500, "no randomness");
                hf_hex_encode(rnd, sizeof(rnd), hex);
                (void)snprintf(rq->tmpname, sizeof(rq->tmpname), ".hf-upload-%s", hex);
                rq->fd = openat(rq->dirfd, rq->tmpname, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                                0400);
                if (rq->fd < 0) {
                        rq->tmpname[0] = 0;
                        return reply(c, rq, errno == ENOSPC || errno == EDQUOT ? 507 : 500,
                                     "cannot create a temp file");
                }
        }
        r = hf_sha256_new(&rq->sha);
        if (r < 0)
                return reply(c, rq, 500, "out of memory");
        rq->upload = true;
        return MHD_YES;
}

static void upload_data(Request *rq, const char *data, size_t n)
{
        HfServer *s = rq->s;
        int r;

        if (rq->fail_status)
                return;
        if (rq->received + n > s->max_object || rq->received + n > rq->expected) {
                rq->fail_status = 413;
                rq->fail_text = "object larger than the server accepts";
                return;
        }
        r = hf_write_all(rq->fd, data, n);
        if (r < 0) {
                rq->fail_status = r == -ENOSPC || r == -EDQUOT ? 507 : 500;
                rq->fail_text = r == -ENOSPC || r == -EDQUOT ? "no space left" : "write error";
                return;
        }
        hf_sha256_update(rq->sha, data, n);
        rq->received += n;
        atomic_fetch_add(&s->bytes_received, n);
}

static enum MHD_Result finish_upload(struct MHD_Connection *c, Request *rq)
{
        HfServer *s = rq->s;
        enum MHD_Result ret;
        char proc[64];
        HfId sha;
        int r;

        if (!upload_complete(c, rq, &sha, &ret))
                return ret;
        r = hf_fsync_drop(rq->fd);
        if (r < 0)
                return reply(c, rq, r == -ENOSPC || r == -EDQUOT ? 507 : 500, "cannot write");
        {
                const char *name = rq->path.type == HF_FILE_CONFIG ? "config" : rq->path.name;
                if (rq->tmpname[0])
                        r = linkat(rq->dirfd, rq->tmpname, rq->dirfd, name, 0);
                else {
                        (void)snprintf(proc, sizeof(proc), "/proc/self/fd/%d", rq->fd);
                        r = linkat(AT_FDCWD, proc, rq->dirfd, name, AT_SYMLINK_FOLLOW);
                }
        }
        if (r < 0) {
                if (errno == EEXIST) {
                        atomic_fetch_add(&s->rejected_exists, 1);
                        return reply(c, rq, 403, "exists: objects are never overwritten");
                }
                return reply(c, rq, errno == ENOSPC || errno == EDQUOT ? 507 : 500, "cannot store");
        }
        if (rq->tmpname[0]) {
                (void)unlinkat(rq->dirfd, rq->tmpname, 0);
                rq->tmpname[0] = 0;
        }
        if (hf_fsync_dirfd(rq->dirfd) < 0)
                return reply(c, rq, 500, "cannot sync");
        r = hf_receipt_log_append(s->log, HF_RECEIPT_PUT, rq->path.repo, rq->path.type,
                                  rq->path.name, rq->received, &sha, rq->user, NULL);
        if (r < 0) {
                log_error_errno(r, "%s/%s: cannot record %s/%s/%s: %m", HF_SERVER_STATE_DIR,
                                HF_RECEIPT_LOG, repo_shown(rq), hf_file_type_dir(rq->path.type),
                                rq->path.name);
                return reply(c, rq, 500, "cannot record the receipt");
        }
        return upload_stored(c, rq);
}

/* ---- objects in a bucket (--backend s3:...) ---- */

#define REMOTE_REPOS_MAX 4096
#define REMOTE_BLOCK (4u << 20) /* GETs stream from the bucket in blocks of this size */

typedef struct RemoteRepo {
        char repo[HF_REPO_PATH_MAX];
        HfBackend *b;
} RemoteRepo;

/* The backend of a repository: PREFIX/<repo>/ in the bucket (cached, owned by the server). */
static HfBackend *remote_repo(HfServer *s, const char *repo)
{
        HfBackend *b = NULL;

        if (!*repo)
                return s->remote;
        pthread_mutex_lock(&s->remote_lock);
        for (size_t i = 0; i < s->n_remote_repos && !b; i++)
                if (strcmp(s->remote_repos[i].repo, repo) == 0)
                        b = s->remote_repos[i].b;
        if (!b && s->n_remote_repos < REMOTE_REPOS_MAX) {
                RemoteRepo *nv = realloc(s->remote_repos,
                                         (s->n_remote_repos + 1) * sizeof(RemoteRepo));
                if (nv) {
                        s->remote_repos = nv;
                        if (hf_backend_s3_sub(s->remote, repo, &b) >= 0) {
                                RemoteRepo *e = &nv[s->n_remote_repos++];
                                (void)snprintf(e->repo, sizeof(e->repo), "%s", repo);
                                e->b = b;
                        }
                }
        }
        pthread_mutex_unlock(&s->remote_lock);
        return b;
}

static unsigned remote_status(int r)
{
        switch (r) {
        case -ENOENT:
                return 404;
        case -EEXIST:
        case -EACCES:
        case -EPERM:
                return 403;
        case -ENOSPC:
        case -E2BIG:
                return 507;
        default:
                return 500;
        }
}

typedef struct RemoteRead {
        HfBackend *b;
        HfFileType t;
        char name[HF_HOST_NAME_MAX + 1]; /* as in HfRequestPath */
        uint64_t off, len;
        uint8_t *block;
        uint64_t block_off; /* of block[0], relative to off */
        size_t block_len;
} RemoteRead;

static ssize_t remote_read(void *cls, uint64_t pos, char *buf, size_t max)
{
        RemoteRead *rr = cls;
        size_t n;

        if (pos >= rr->len)
                return MHD_CONTENT_READER_END_OF_STREAM;
        if (pos < rr->block_off || pos >= rr->block_off + rr->block_len) {
                size_t want = (size_t)MIN((uint64_t)REMOTE_BLOCK, rr->len - pos);
                if (!rr->block && !(rr->block = malloc(REMOTE_BLOCK)))
                        return MHD_CONTENT_READER_END_WITH_ERROR;
                if (hf_backend_read_at(rr->b, rr->t, rr->name, rr->off + pos, want, rr->block) < 0)
                        return MHD_CONTENT_READER_END_WITH_ERROR;
                rr->block_off = pos;
                rr->block_len = want;
        }
        n = MIN(max, (size_t)(rr->block_off + rr->block_len - pos));
        memcpy(buf, rr->block + (pos - rr->block_off), n);
        return (ssize_t)n;
}

static void remote_read_free(void *cls)
{
        RemoteRead *rr = cls;

        free(rr->block);
        free(rr);
}

static enum MHD_Result remote_serve_object(struct MHD_Connection *c, Request *rq)
{
        HfBackend *b = remote_repo(rq->s, rq->path.repo);
        const char *name = rq->path.type == HF_FILE_CONFIG ? "config" : rq->path.name;
        const char *range;
        uint64_t size = 0, off = 0, len;
        struct MHD_Response *resp;
        RemoteRead *rr;
        unsigned status = 200;
        int r;

        if (!b)
                return reply(c, rq, 500, "cannot reach the bucket");
        r = hf_backend_stat(b, rq->path.type, name, &size);
        if (r < 0)
                return reply(c, rq, remote_status(r), r == -ENOENT ? "not found" : "cannot read");
        len = size;
        range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Range");
        if (range && rq->method == M_GET && size > 0) {
                if (hf_server_parse_range(range, strlen(range), size, &off, &len) < 0) {
                        char cr[64];
                        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
                        if (!resp)
                                return MHD_NO;
                        (void)snprintf(cr, sizeof(cr), "bytes */%llu", (unsigned long long)size);
                        (void)MHD_add_response_header(resp, "Content-Range", cr);
                        return reply_response(c, rq, 416, resp);
                }
                status = 206;
        }
        rr = calloc(1, sizeof(*rr));
        if (!rr)
                return MHD_NO;
        *rr = (RemoteRead){ .b = b, .t = rq->path.type, .off = off, .len = len };
        (void)snprintf(rr->name, sizeof(rr->name), "%s", name);
        resp = MHD_create_response_from_callback(len, 256 * 1024, remote_read, rr,
                                                 remote_read_free);
        if (!resp) {
                remote_read_free(rr);
                return MHD_NO;
        }
        (void)MHD_add_response_header(resp, "Content-Type", "application/octet-stream");
        (void)MHD_add_response_header(resp, "Accept-Ranges", "bytes");
        if (status == 206) {
                char cr[96];
                (void)snprintf(cr, sizeof(cr), "bytes %llu-%llu/%llu", (unsigned long long)off,
                               (unsigned long long)(off + len - 1), (unsigned long long)size);
                (void)MHD_add_response_header(resp, "Content-Range", cr);
        }
        if (rq->path.type == HF_FILE_CONFIG && hf_backend_retention(b) > 0) {
                /* Tells holdfast clients that backups should extend retention (?retain=). */
                char v[32];
                (void)snprintf(v, sizeof(v), "%lld", (long long)hf_backend_retention(b));
                (void)MHD_add_response_header(resp, "X-Holdfast-Retention", v);
        }
        return reply_response(c, rq, status, resp);
}

/*
 * POST /<repo>/<type>/<name>?retain=UNIX: keep the object at least until then (a backup's
 * retention extension, docs/internals/s3.md). Never past twice the bucket's period from now, so
 * a compromised client cannot lock data for a century.
 */
static enum MHD_Result remote_retain(struct MHD_Connection *c, Request *rq, const char *v)
{
        HfBackend *b = remote_repo(rq->s, rq->path.repo);
        const char *name = rq->path.type == HF_FILE_CONFIG ? "config" : rq->path.name;
        int64_t period, now = (int64_t)now_real();
        uint64_t until;
        int r;

        if (!b)
                return reply(c, rq, 500, "cannot reach the bucket");
        period = hf_backend_retention(b);
        if (hf_parse_u64(v, &until) < 0 || until > (uint64_t)INT64_MAX)
                return reply(c, rq, 400, "bad retain time");
        if (period <= 0)
                return reply(c, rq, 200, "no retention here");
        if ((int64_t)until > now + 2 * period)
                return reply(c, rq, 400, "retain time too far ahead");
        r = hf_backend_retain(b, rq->path.type, name, (int64_t)until);
        if (r < 0)
                return reply(c, rq, remote_status(r), "cannot extend the retention");
        return reply(c, rq, 200, "retained");
}

static int remote_list_one(void *userdata, const char *name, uint64_t size)
{
        return list_one(userdata, "", HF_FILE_CONFIG, name, -1, size);
}

static enum MHD_Result remote_listing(struct MHD_Connection *c, Request *rq)
{
        HfBackend *b = remote_repo(rq->s, rq->path.repo);
        const char *accept = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Accept");
        HfBuf out = HF_BUF_INIT(LISTING_MAX);
        Listing l = { .out = &out, .first = true };
        struct MHD_Response *resp;
        uint8_t *data;
        size_t len;
        int r;

        if (!b)
                return reply(c, rq, 500, "cannot reach the bucket");
        l.v2 = accept && strstr(accept, V2_TYPE);
        r = hf_buf_putc(&out, '[');
        if (r >= 0)
                r = hf_backend_list(b, rq->path.type, remote_list_one, &l);
        if (r >= 0)
                r = hf_buf_putc(&out, ']');
        if (r < 0) {
                hf_buf_free(&out);
                return reply(c, rq, r == -E2BIG ? 507 : 500,
                             r == -E2BIG ? "listing too large" : "cannot list");
        }
        len = out.len;
        data = hf_buf_steal(&out, &len);
        resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(data);
                return MHD_NO;
        }
        (void)MHD_add_response_header(resp, "Content-Type", l.v2 ? V2_TYPE : V1_TYPE);
        return reply_response(c, rq, 200, resp);
}

static enum MHD_Result remote_delete(struct MHD_Connection *c, Request *rq)
{
        HfServer *s = rq->s;
        HfBackend *b = remote_repo(s, rq->path.repo);
        const char *name = rq->path.type == HF_FILE_CONFIG ? "config" : rq->path.name;
        HfId zero = { { 0 } };
        int r;

        if (rq->path.type != HF_FILE_LOCK && s->o.append_only) {
                atomic_fetch_add(&s->rejected_policy, 1);
                return reply(c, rq, 403, "append-only: only locks may be deleted");
        }
        if (!b)
                return reply(c, rq, 500, "cannot reach the bucket");
        r = hf_backend_remove(b, rq->path.type, name);
        if (r == -ENOENT)
                return reply(c, rq, 200, "not found (nothing to delete)");
        if (r == -EPERM) {
                atomic_fetch_add(&s->rejected_policy, 1);
                return reply(c, rq, 403, "kept by S3 Object Lock");
        }
        if (r < 0)
                return reply(c, rq, remote_status(r), "cannot delete");
        if (s->log)
                (void)hf_receipt_log_append(s->log, HF_RECEIPT_DELETE, rq->path.repo, rq->path.type,
                                            rq->path.name, 0, &zero, rq->user, NULL);
        log_info("DELETE %s/%s/%s by %s", repo_shown(rq), hf_file_type_dir(rq->path.type),
                 rq->path.name, rq->user[0] ? rq->user : "-");
        return reply(c, rq, 200, "deleted");
}

static enum MHD_Result remote_begin_upload(struct MHD_Connection *c, Request *rq)
{
        HfServer *s = rq->s;
        const char *name = rq->path.type == HF_FILE_CONFIG ? "config" : rq->path.name;
        enum MHD_Result ret;
        int r;

        rq->rb = remote_repo(s, rq->path.repo);
        if (!rq->rb)
                return reply(c, rq, 500, "cannot reach the bucket");
        if (!upload_length(c, rq, &ret))
                return ret;
        r = hf_backend_stat(rq->rb, rq->path.type, name, NULL);
        if (r == 0) {
                atomic_fetch_add(&s->rejected_exists, 1);
                return reply(c, rq, 403, "exists: objects are never overwritten");
        }
        if (r != -ENOENT)
                return reply(c, rq, remote_status(r), "cannot reach the bucket");
        /* The body waits on disk, in this instance's state folder (not in memory: up to
         * --max-connections uploads of --max-object-size each may arrive at once). */
        rq->fd = openat(s->statefd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        r = rq->fd < 0 ? hf_backend_temp_open(rq->rb, rq->path.type, &rq->fd) : 0;
        if (r >= 0)
                r = hf_sha256_new(&rq->sha);
        if (r < 0)
                return reply(c, rq, 500, "cannot buffer the upload");
        rq->upload = true;
        return MHD_YES;
}

static enum MHD_Result remote_finish_upload(struct MHD_Connection *c, Request *rq)
{
        HfServer *s = rq->s;
        const char *name = rq->path.type == HF_FILE_CONFIG ? "config" : rq->path.name;
        enum MHD_Result ret;
        HfId sha;
        int r;

        if (!upload_complete(c, rq, &sha, &ret))
                return ret;
        r = hf_backend_temp_commit(rq->rb, rq->path.type, TAKE_FD(rq->fd), name);
        if (r == -EEXIST) {
                atomic_fetch_add(&s->rejected_exists, 1);
                return reply(c, rq, 403, "exists: objects are never overwritten");
        }
        if (r < 0)
                return reply(c, rq, remote_status(r), "cannot store in the bucket");
        if (s->log) {
                r = hf_receipt_log_append(s->log, HF_RECEIPT_PUT, rq->path.repo, rq->path.type,
                                          rq->path.name, rq->received, &sha, rq->user, NULL);
                if (r < 0)
                        log_error_errno(r, "%s/%s: cannot record %s/%s/%s: %m", HF_SERVER_STATE_DIR,
                                        HF_RECEIPT_LOG, repo_shown(rq),
                                        hf_file_type_dir(rq->path.type), rq->path.name);
        }
        return upload_stored(c, rq);
}

/* ---- heartbeats and metrics ---- */

static enum MHD_Result heartbeat(struct MHD_Connection *c, Request *rq)
{
        HfServer *s = rq->s;
        Host *h = NULL;
        bool resumed = false;

        pthread_mutex_lock(&s->hb_lock);
        for (size_t i = 0; i < s->n_hosts; i++)
                if (strcmp(s->hosts[i].name, rq->path.name) == 0)
                        h = &s->hosts[i];
        if (!h) {
                if (s->n_hosts == HOSTS_MAX) {
                        pthread_mutex_unlock(&s->hb_lock);
                        return reply(c, rq, 507, "too many hosts");
                }
                Host *nh = realloc(s->hosts, (s->n_hosts + 1) * sizeof(Host));
                if (!nh) {
                        pthread_mutex_unlock(&s->hb_lock);
                        return reply(c, rq, 500, "out of memory");
                }
                s->hosts = nh;
                h = &s->hosts[s->n_hosts++];
                memset(h, 0, sizeof(*h));
                memcpy(h->name, rq->path.name, strlen(rq->path.name) + 1);
                log_info("heartbeat: new host %s", h->name);
        }
        h->last = now_real();
        resumed = h->warned;
        h->warned = false;
        pthread_mutex_unlock(&s->hb_lock);
        if (resumed)
                log_notice("heartbeat: host %s is back", rq->path.name);
        return reply(c, rq, 200, "ok");
}

static void *watchdog(void *userdata)
{
        HfServer *s = userdata;

        pthread_mutex_lock(&s->hb_lock);
        while (!s->stopping) {
                struct timespec ts;
                double now = now_real();

                for (size_t i = 0; i < s->n_hosts; i++) {
                        Host *h = &s->hosts[i];
                        if (!h->warned && now - h->last > s->o.heartbeat_timeout) {
                                h->warned = true;
                                log_warning("heartbeat: host %s silent for %.0f s (timeout %.0f "
                                            "s): its sentinel may have been stopped",
                                            h->name, now - h->last, s->o.heartbeat_timeout);
                        }
                }
                (void)clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 250 * 1000 * 1000;
                if (ts.tv_nsec >= 1000000000) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000;
                }
                (void)pthread_cond_timedwait(&s->hb_cond, &s->hb_lock, &ts);
        }
        pthread_mutex_unlock(&s->hb_lock);
        return NULL;
}

static enum MHD_Result metrics(struct MHD_Connection *c, Request *rq)
{
        HfServer *s = rq->s;
        HfBuf out = HF_BUF_INIT(64 << 20);
        struct MHD_Response *resp;
        double now = now_real();
        char head[HF_ID_HEX_LEN + 1];
        uint64_t seq;
        HfId h;
        uint8_t *data;
        size_t len;
        int r = 0;

        r |= hf_buf_puts(&out, "# HELP holdfast_heartbeat_age_seconds Seconds since the host's "
                               "last heartbeat.\n# TYPE holdfast_heartbeat_age_seconds gauge\n");
        pthread_mutex_lock(&s->hb_lock);
        for (size_t i = 0; i < s->n_hosts; i++)
                r |= hf_buf_printf(&out, "holdfast_heartbeat_age_seconds{host=\"%s\"} %.3f\n",
                                   s->hosts[i].name, now - s->hosts[i].last);
        r |= hf_buf_puts(&out, "# HELP holdfast_heartbeat_silent 1 when the host's heartbeat is "
                               "older than --heartbeat-timeout.\n"
                               "# TYPE holdfast_heartbeat_silent gauge\n");
        for (size_t i = 0; i < s->n_hosts; i++)
                r |= hf_buf_printf(&out, "holdfast_heartbeat_silent{host=\"%s\"} %d\n",
                                   s->hosts[i].name,
                                   s->o.heartbeat_timeout > 0 &&
                                           now - s->hosts[i].last > s->o.heartbeat_timeout);
        pthread_mutex_unlock(&s->hb_lock);
        r |= hf_buf_puts(&out, "# HELP holdfast_http_requests_total HTTP requests by method and "
                               "status.\n# TYPE holdfast_http_requests_total counter\n");
        for (int m = 0; m < _M_MAX; m++)
                for (size_t i = 0; i < N_CODES; i++) {
                        unsigned long long v = atomic_load(&s->requests[m][i]);
                        char code[16];
                        if (!v)
                                continue;
                        if (i < ELEMENTSOF(codes))
                                (void)snprintf(code, sizeof(code), "%u", codes[i]);
                        else
                                (void)snprintf(code, sizeof(code), "other");
                        r |= hf_buf_printf(&out,
                                           "holdfast_http_requests_total{method=\"%s\","
                                           "code=\"%s\"} %llu\n",
                                           method_names[m], code, v);
                }
        seq = 0;
        h = (HfId){ { 0 } };
        if (s->log)
                hf_receipt_log_head(s->log, &seq, &h);
        hf_id_hex(&h, head);
        r |= hf_buf_printf(
                &out,
                "# TYPE holdfast_received_bytes_total counter\nholdfast_received_bytes_total %llu\n"
                "# TYPE holdfast_objects_stored_total counter\nholdfast_objects_stored_total %llu\n"
                "# TYPE holdfast_uploads_rejected_total counter\n"
                "holdfast_uploads_rejected_total{reason=\"hash\"} %llu\n"
                "holdfast_uploads_rejected_total{reason=\"exists\"} %llu\n"
                "# TYPE holdfast_policy_refusals_total counter\n"
                "holdfast_policy_refusals_total %llu\n"
                "# TYPE holdfast_auth_failures_total counter\nholdfast_auth_failures_total %llu\n"
                "# HELP holdfast_receipt_log_records Records in the receipt log; the head hash "
                "pins its content.\n# TYPE holdfast_receipt_log_records gauge\n"
                "holdfast_receipt_log_records{head=\"%s\"} %llu\n",
                (unsigned long long)atomic_load(&s->bytes_received),
                (unsigned long long)atomic_load(&s->objects_stored),
                (unsigned long long)atomic_load(&s->rejected_hash),
                (unsigned long long)atomic_load(&s->rejected_exists),
                (unsigned long long)atomic_load(&s->rejected_policy),
                (unsigned long long)atomic_load(&s->rejected_auth), head, (unsigned long long)seq);
        if (r < 0) {
                hf_buf_free(&out);
                return reply(c, rq, 500, "metrics too large");
        }
        data = hf_buf_steal(&out, &len);
        resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(data);
                return MHD_NO;
        }
        (void)MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4");
        return reply_response(c, rq, 200, resp);
}

/* ---- dispatch ---- */

static bool authenticate(struct MHD_Connection *c, Request *rq)
{
        HfServer *s = rq->s;
        char *pass = NULL;
        char *user;
        bool ok;

        if (!s->auth)
                return true;
        if (rq->path.kind == HF_PATH_METRICS && s->o.metrics_no_auth)
                return true;
        user = MHD_basic_auth_get_username_password(c, &pass);
        ok = user && pass && hf_auth_check(s->auth, user, pass);
        if (ok)
                (void)snprintf(rq->user, sizeof(rq->user), "%s", user);
        if (pass) {
                explicit_bzero(pass, strlen(pass));
                MHD_free(pass);
        }
        if (user)
                MHD_free(user);
        if (!ok)
                atomic_fetch_add(&s->rejected_auth, 1);
        return ok;
}

static enum MHD_Result decide(struct MHD_Connection *c, Request *rq, const char *url)
{
        HfServer *s = rq->s;
        HfPathKind k;

        if (hf_server_parse_path(url, strlen(url), &rq->path) < 0) {
                log_info("%s: 400 refused path \"%.100s\"", method_names[rq->method], url);
                rq->bad_path = true;
                return reply(c, rq, 400, "bad path");
        }
        if (!authenticate(c, rq))
                return reply(c, rq, 401, "authentication required");
        k = rq->path.kind;
        if (s->o.private_repos && k != HF_PATH_METRICS && k != HF_PATH_HEARTBEAT &&
            strcmp(rq->path.first, rq->user) != 0)
                return reply(c, rq, 403, "private repositories: only /<your user>/... is yours");

        switch (k) {
        case HF_PATH_METRICS:
                return rq->method == M_GET || rq->method == M_HEAD ? metrics(c, rq)
                                                                   : reply(c, rq, 405, "GET");
        case HF_PATH_HEARTBEAT:
                return rq->method == M_POST ? heartbeat(c, rq) : reply(c, rq, 405, "POST");
        case HF_PATH_REPO:
                if (rq->method == M_POST && s->remote) /* a bucket has no folders to make */
                        return reply(c, rq, 200, "created");
                if (rq->method == M_POST)
                        return create_repo(c, rq);
                return reply(c, rq, 405,
                             "a repository is created with POST ?create=true and "
                             "never deleted through the server");
        case HF_PATH_LIST:
                if (rq->method == M_GET)
                        return s->remote ? remote_listing(c, rq) : serve_listing(c, rq);
                return reply(c, rq, 405, "method not allowed");
        case HF_PATH_CONFIG:
        case HF_PATH_OBJECT:
                switch (rq->method) {
                case M_GET:
                case M_HEAD:
                        return s->remote ? remote_serve_object(c, rq) : serve_object(c, rq);
                case M_POST:
                        if (s->remote) {
                                const char *v = MHD_lookup_connection_value(
                                        c, MHD_GET_ARGUMENT_KIND, "retain");
                                return v ? remote_retain(c, rq, v) : remote_begin_upload(c, rq);
                        }
                        return begin_upload(c, rq);
                case M_DELETE:
                        if (k == HF_PATH_CONFIG && s->o.append_only) {
                                atomic_fetch_add(&s->rejected_policy, 1);
                                return reply(c, rq, 403, "append-only: config is never deleted");
                        }
                        return s->remote ? remote_delete(c, rq) : delete_object(c, rq);
                default:
                        return reply(c, rq, 405, "method not allowed");
                }
        }
        return reply(c, rq, 400, "bad request");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *data_size, void **con_cls)
{
        HfServer *s = cls;
        Request *rq = *con_cls;

        if (!rq) {
                rq = calloc(1, sizeof(*rq));
                if (!rq)
                        return MHD_NO;
                rq->s = s;
                rq->fd = rq->dirfd = -1;
                rq->method = strcmp(method, "GET") == 0      ? M_GET
                             : strcmp(method, "HEAD") == 0   ? M_HEAD
                             : strcmp(method, "POST") == 0   ? M_POST
                             : strcmp(method, "DELETE") == 0 ? M_DELETE
                                                             : M_OTHER;
                *con_cls = rq;
                rq->decided = true;
                return decide(c, rq, url);
        }
        if (!rq->upload) {
                /* A body nobody asked for (or after a refusal): drop it. */
                *data_size = 0;
                return MHD_YES;
        }
        if (*data_size) {
                upload_data(rq, data, *data_size);
                *data_size = 0;
                if (rq->fail_status) {
                        /* A body without Content-Length (chunked) went past the limit: close
                         * the connection rather than read an endless body to its end
                         * (libmicrohttpd cannot answer before the body is read). */
                        log_info("POST %s/%s/%s: %s; connection closed", repo_shown(rq),
                                 hf_file_type_dir(rq->path.type), rq->path.name, rq->fail_text);
                        count(s, rq->method, rq->fail_status);
                        return MHD_NO;
                }
                return MHD_YES;
        }
        rq->upload = false;
        return s->remote ? remote_finish_upload(c, rq) : finish_upload(c, rq);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
        Request *rq = *con_cls;

        if (!rq)
                return;
        if (rq->upload && toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
                log_info("%s/%s/%s: upload aborted after %llu bytes (nothing stored)",
                         repo_shown(rq), hf_file_type_dir(rq->path.type), rq->path.name,
                         (unsigned long long)rq->received);
        if (rq->fd >= 0)
                close(rq->fd);
        if (rq->tmpname[0] && rq->dirfd >= 0)
                (void)unlinkat(rq->dirfd, rq->tmpname, 0);
        if (rq->dirfd >= 0)
                close(rq->dirfd);
        hf_sha256_free(rq->sha);
        free(rq);
        *con_cls = NULL;
}

/* The path exactly as sent: the parser decodes it itself, strictly. */
static size_t no_unescape(void *cls, struct MHD_Connection *c, char *s)
{
        return strlen(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
        char line[512];
        size_t n;

        (void)vsnprintf(line, sizeof(line), fmt, ap);
        n = strlen(line);
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                line[--n] = 0;
        log_info("http: %s", line);
}

/* ---- setup ---- */

static int bind_listen(const char *addr, int *ret_fd, char *shown, size_t shown_n)
{
        _cleanup_free_ char *host = NULL;
        const char *colon, *port;
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *ai = NULL;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        char h[NI_MAXHOST], p[NI_MAXSERV];
        int fd = -1, r, one = 1;

        if (addr[0] == '[') {
                const char *end = strchr(addr, ']');
                if (!end || end[1] != ':')
                        return -EINVAL;
                host = strndup(addr + 1, (size_t)(end - addr - 1));
                port = end + 2;
        } else {
                colon = strrchr(addr, ':');
                if (!colon)
                        return -EINVAL;
                host = strndup(addr, (size_t)(colon - addr));
                port = colon + 1;
        }
        if (!host)
                return -ENOMEM;
        r = getaddrinfo(*host ? host : NULL, port, &hints, &ai);
        if (r != 0)
                return -EADDRNOTAVAIL;
        for (struct addrinfo *a = ai; a; a = a->ai_next) {
                fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
                if (fd < 0)
                        continue;
                (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
                if (a->ai_family == AF_INET6 && !*host) {
                        int zero = 0;
                        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
                }
                if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 128) == 0)
                        break;
                r = -errno;
                close(fd);
                fd = -1;
        }
        freeaddrinfo(ai);
        if (fd < 0)
                return r < 0 ? r : -EADDRNOTAVAIL;
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
            getnameinfo((struct sockaddr *)&ss, sl, h, sizeof(h), p, sizeof(p),
                        NI_NUMERICHOST | NI_NUMERICSERV) == 0)
                (void)snprintf(shown, shown_n, strchr(h, ':') ? "[%s]:%s" : "%s:%s", h, p);
        else
                (void)snprintf(shown, shown_n, "%s", addr);
        *ret_fd = fd;
        return 0;
}

static int read_pem(const char *path, char **ret)
{
        HfBuf b = HF_BUF_INIT(1 << 20);
        int r = hf_read_file_at(AT_FDCWD, path, 1 << 20, &b);
        size_t n;

        if (r < 0) {
                hf_buf_free(&b);
                return log_error_errno(r, "%s: cannot read: %m", path);
        }
        if (hf_buf_putc(&b, 0) < 0) {
                hf_buf_free(&b);
                return -ENOMEM;
        }
        *ret = (char *)hf_buf_steal(&b, &n);
        return 0;
}

typedef struct Adopt {
        HfServer *s;
        unsigned adopted;
} Adopt;

static int adopt_object(void *userdata, const char *repo, HfFileType t, const char *name, int dirfd,
                        uint64_t size)
{
        Adopt *a = userdata;
        char rel[HF_ID_HEX_LEN + 8];
        int64_t sec;
        HfId sha;
        uint64_t got;
        int fd, r;

        if (hf_receipt_log_lookup(a->s->log, repo, t, name, &sec) == 0)
                return 0;
        (void)snprintf(rel, sizeof(rel), "%s", name);
        fd = openat(dirfd, rel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return 0;
        r = hf_store_hash_fd(fd, &sha, &got);
        close(fd);
        if (r < 0)
                return log_error_errno(r, "%s/%s/%s: cannot read: %m", *repo ? repo : ".",
                                       hf_file_type_dir(t), name);
        r = hf_receipt_log_append(a->s->log, HF_RECEIPT_ADOPT, repo, t, name, got, &sha, "", NULL);
        if (r < 0)
                return r;
        a->adopted++;
        return 0;
}

static int adopt_repo(void *userdata, const char *repo)
{
        Adopt *a = userdata;

        hf_store_clean_temps(a->s->rootfd, repo);
        return hf_store_walk_objects(a->s->rootfd, repo, adopt_object, a);
}

int hf_server_new(const HfServerOptions *o, HfServer **ret)
{
        _cleanup_(hf_server_freep) HfServer *s = calloc(1, sizeof(*s));
        _cleanup_free_ char *htpasswd = NULL;
        Adopt a;
        int r;

        if (!s)
                return -ENOMEM;
        s->o = *o;
        s->rootfd = s->statefd = s->lockfd = s->listen_fd = -1;
        pthread_mutex_init(&s->hb_lock, NULL);
        pthread_cond_init(&s->hb_cond, NULL);
        s->max_object = o->max_object_size ? o->max_object_size : DEFAULT_MAX_OBJECT;
        s->retention = o->retention_days > 0 ? o->retention_days * 86400.0 : 0;
        if (!s->o.timeout)
                s->o.timeout = 60;
        if (!s->o.max_connections)
                s->o.max_connections = 256;

        r = hf_mkdir_p(o->root, 0700);
        if (r < 0)
                return log_error_errno(r, "%s: cannot create the root folder: %m", o->root);
        s->rootfd = open(o->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->rootfd < 0)
                return log_error_errno(errno, "%s: cannot open the root folder: %m", o->root);
        if (mkdirat(s->rootfd, HF_SERVER_STATE_DIR, 0700) < 0 && errno != EEXIST)
                return log_error_errno(errno, "%s/%s: cannot create: %m", o->root,
                                       HF_SERVER_STATE_DIR);
        s->statefd = openat(s->rootfd, HF_SERVER_STATE_DIR,
                            O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (s->statefd < 0)
                return log_error_errno(errno, "%s/%s: cannot open: %m", o->root,
                                       HF_SERVER_STATE_DIR);
        s->lockfd = openat(s->statefd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (s->lockfd < 0)
                return log_error_errno(errno, "%s/%s/lock: cannot open: %m", o->root,
                                       HF_SERVER_STATE_DIR);
        if (flock(s->lockfd, LOCK_EX | LOCK_NB) < 0)
                return log_error_errno(errno == EWOULDBLOCK ? EBUSY : errno,
                                       "%s: another holdfast serve uses this root", o->root);

        if (!o->no_auth) {
                if (!o->htpasswd && asprintf(&htpasswd, "%s/.htpasswd", o->root) < 0)
                        return -ENOMEM;
                r = hf_auth_new(o->htpasswd ? o->htpasswd : htpasswd, &s->auth);
                if (r < 0) {
                        if (r == -ENOENT)
                                log_error("create it with \"htpasswd -B -c FILE USER\", or pass "
                                          "--no-auth to serve without authentication");
                        return r;
                }
        }
        if (o->tls_cert || o->tls_key) {
                if (!o->tls_cert || !o->tls_key)
                        return log_error_errno(EINVAL, "--tls-cert and --tls-key go together");
                r = read_pem(o->tls_cert, &s->tls_cert);
                if (r >= 0)
                        r = read_pem(o->tls_key, &s->tls_key);
                if (r < 0)
                        return r;
        }

        r = hf_receipt_log_open(s->statefd, &s->log);
        if (r < 0)
                return r;
        if (o->backend) {
                /* Objects live in a bucket; the root keeps only this instance's state. */
                pthread_mutex_init(&s->remote_lock, NULL);
                if (strncmp(o->backend, "s3:", 3) != 0)
                        return log_error_errno(EINVAL,
                                               "--backend takes an s3: location, not "
                                               "\"%s\"",
                                               o->backend);
                r = hf_backend_open(o->backend, false, &s->remote);
                if (r < 0)
                        return r; /* explained by the S3 backend */
                goto listen;
        }
        a = (Adopt){ .s = s };
        r = hf_store_walk_repos(s->rootfd, adopt_repo, &a);
        if (r < 0)
                return log_error_errno(r, "%s: cannot scan the repositories: %m", o->root);
        if (a.adopted)
                log_notice("%s: %u object(s) had no receipt (stored before this server ran, or "
                           "while it was down); recorded them now",
                           o->root, a.adopted);

listen:
        if (o->listen_fd >= 0) {
                s->listen_fd = o->listen_fd;
                (void)snprintf(s->addr, sizeof(s->addr), "(socket fd %d)", o->listen_fd);
        } else {
                r = bind_listen(o->listen ? o->listen : ":8000", &s->listen_fd, s->addr,
                                sizeof(s->addr));
                if (r < 0)
                        return log_error_errno(r, "%s: cannot listen: %m",
                                               o->listen ? o->listen : ":8000");
        }
        *ret = TAKE_PTR(s);
        return 0;
}

HfServer *hf_server_free(HfServer *s)
{
        if (!s)
                return NULL;
        if (s->mhd)
                MHD_stop_daemon(s->mhd);
        if (s->watchdog_running) {
                pthread_mutex_lock(&s->hb_lock);
                s->stopping = true;
                pthread_cond_broadcast(&s->hb_cond);
                pthread_mutex_unlock(&s->hb_lock);
                pthread_join(s->watchdog, NULL);
        }
        if (s->listen_fd >= 0)
                close(s->listen_fd);
        hf_receipt_log_free(s->log);
        if (s->remote) {
                for (size_t i = 0; i < s->n_remote_repos; i++)
                        hf_backend_free(s->remote_repos[i].b);
                free(s->remote_repos);
                hf_backend_free(s->remote);
                pthread_mutex_destroy(&s->remote_lock);
        }
        hf_auth_free(s->auth);
        if (s->tls_key) {
                explicit_bzero(s->tls_key, strlen(s->tls_key));
                free(s->tls_key);
        }
        free(s->tls_cert);
        free(s->hosts);
        if (s->lockfd >= 0)
                close(s->lockfd);
        if (s->statefd >= 0)
                close(s->statefd);
        if (s->rootfd >= 0)
                close(s->rootfd);
        pthread_mutex_destroy(&s->hb_lock);
        pthread_cond_destroy(&s->hb_cond);
        free(s);
        return NULL;
}

int hf_server_run(HfServer *s)
{
        unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                         MHD_USE_POLL | MHD_USE_ERROR_LOG;
        sigset_t set;
        int sig;

        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGHUP);
        sigaddset(&set, SIGPIPE);
        /* Blocked before any thread starts, so every thread inherits the mask and the signals
         * come to sigwait() below. */
        pthread_sigmask(SIG_BLOCK, &set, NULL);

        if (s->tls_cert)
                flags |= MHD_USE_TLS;
        struct MHD_OptionItem tls[] = {
                { MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key },
                { MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert },
                { MHD_OPTION_END, 0, NULL },
        };
        s->mhd = MHD_start_daemon(
                flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                MHD_OPTION_LISTEN_SOCKET, s->listen_fd, MHD_OPTION_CONNECTION_TIMEOUT, s->o.timeout,
                MHD_OPTION_CONNECTION_LIMIT, s->o.max_connections,
                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY,
                MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_UNESCAPE_CALLBACK,
                no_unescape, NULL, MHD_OPTION_ARRAY, s->tls_cert ? tls : tls + 2, MHD_OPTION_END);
        if (!s->mhd)
                return log_error_errno(EIO, "cannot start the HTTP server on %s%s", s->addr,
                                       s->tls_cert ? " (check the TLS certificate and key)" : "");
        s->listen_fd = -1; /* MHD closes it */
        if (s->o.heartbeat_timeout > 0) {
                if (pthread_create(&s->watchdog, NULL, watchdog, s) == 0)
                        s->watchdog_running = true;
        }
        if (s->o.json)
                printf("{\"message_type\":\"listening\",\"address\":\"%s\",\"tls\":%s}\n", s->addr,
                       s->tls_cert ? "true" : "false");
        log_notice("serving %s on %s://%s%s%s%s", s->remote ? s->remote->location : s->o.root,
                   s->tls_cert ? "https" : "http", s->addr,
                   s->o.append_only ? " (append-only)" : "",
                   s->retention > 0 ? " (retention locked)" : "",
                   s->auth ? "" : " WITHOUT authentication");
        fflush(stdout);

        for (;;) {
                if (sigwait(&set, &sig) != 0)
                        continue;
                if (sig == SIGHUP) {
                        if (s->auth)
                                (void)hf_auth_reload(s->auth);
                        continue;
                }
                if (sig == SIGPIPE)
                        continue;
                break;
        }
        log_notice("stopping (signal %d)", sig);
        MHD_stop_daemon(s->mhd);
        s->mhd = NULL;
        return 0;
}
