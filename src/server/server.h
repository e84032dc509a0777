/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * holdfast serve: restic's REST protocol (v1 and v2, restic-format.md §9) over
 * libmicrohttpd, storing vaults under a root folder in exactly the local backend's layout.
 *
 * What it adds to rest-server: objects are never overwritten; --append-only refuses every
 * DELETE outside locks/; --retention refuses deleting anything younger than the retention,
 * measured from the server's own receipt time; every accepted or deleted object is recorded
 * in a hash-chained log (ROOT/.holdfast/receipts.log) that hf_server_verify() checks against
 * the files; sentinels post heartbeats and /metrics shows who went silent.
 *
 * docs/internals/server.md describes the request flow, the log format and the limits.
 */

#include "../backend/backend.h"
#include "../base/gojson.h"
#include "../base/util.h"
#include "../vault/vault.h"

/* Limits of a request path: folder levels of a repository, bytes of a path or a segment. */
#define HF_REPO_DEPTH_MAX 4
#define HF_REPO_PATH_MAX 256
#define HF_SEGMENT_MAX 64
#define HF_URL_MAX 512
#define HF_HOST_NAME_MAX 253
#define HF_USER_NAME_MAX 64

typedef struct HfServerOptions {
        const char *root;
        const char *backend;   /* "s3:...": objects live there; root keeps only state */
        const char *listen;    /* "HOST:PORT", ":PORT", "[V6]:PORT"; port 0 picks one */
        int listen_fd;         /* >= 0: an already listening socket (systemd) */
        bool append_only;      /* no DELETE outside locks/ */
        double retention_days; /* > 0: nothing younger may be deleted, by anyone */
        const char *htpasswd;  /* NULL: ROOT/.htpasswd */
        bool no_auth;          /* serve without authentication */
        bool private_repos;    /* a user reaches only /<user>/... */
        const char *tls_cert;  /* PEM files; both or neither */
        const char *tls_key;
        uint64_t max_object_size; /* 0: default (256 MiB) */
        unsigned timeout;         /* idle seconds before a connection is closed; 0: 60 */
        unsigned max_connections; /* 0: 256 */
        double heartbeat_timeout; /* > 0: warn once per host silent that long */
        bool metrics_no_auth;     /* /metrics without authentication */
        bool json;                /* machine-readable start line on stdout */
} HfServerOptions;

typedef struct HfServer HfServer;

/*
 * Opens the root (creating ROOT/.holdfast), takes its lock (one server per root), loads the
 * receipt log and the htpasswd file, records ("adopts") objects found without a receipt, and
 * binds the listening socket. Errors are logged with a sentence naming the file.
 */
int hf_server_new(const HfServerOptions *o, HfServer **ret);
HfServer *hf_server_free(HfServer *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(HfServer *, hf_server_free);
/* Serves until SIGINT or SIGTERM; SIGHUP reloads the htpasswd file. */
int hf_server_run(HfServer *s);

typedef struct HfVerifyOptions {
        const char *root;
        const char *password;  /* NULL: snapshot times are not checked */
        double max_clock_skew; /* seconds a snapshot's time may run ahead of its receipt */
        bool json;
} HfVerifyOptions;

/*
 * Checks the receipt log's hash chain, re-hashes every object it says is present, finds
 * objects it does not know and, with a password, snapshots whose own time is later than
 * their receipt time (forged). Each problem is printed naming the object. Returns 0 when
 * everything holds, HF_INCOMPLETE when a problem was found, < 0 when it could not check.
 */
int hf_server_verify(const HfVerifyOptions *o);

/* ---- parsers of attacker bytes (fuzzed in tests/fuzz/) ---- */

typedef enum HfPathKind {
        HF_PATH_REPO,      /* "/<repo>/": POST ?create=true, DELETE */
        HF_PATH_CONFIG,    /* "/<repo>/config" */
        HF_PATH_LIST,      /* "/<repo>/<type>/" */
        HF_PATH_OBJECT,    /* "/<repo>/<type>/<64 hex>" */
        HF_PATH_HEARTBEAT, /* "/.holdfast/heartbeat/<host>" */
        HF_PATH_METRICS,   /* "/metrics" */
} HfPathKind;

typedef struct HfRequestPath {
        HfPathKind kind;
        char repo[HF_REPO_PATH_MAX];     /* "" (the root) or "alice/laptop" */
        char first[HF_SEGMENT_MAX + 1];  /* the repository's first segment, "" for the root */
        HfFileType type;                 /* LIST, OBJECT, CONFIG */
        char name[HF_HOST_NAME_MAX + 1]; /* object name, "config", or the heartbeat host */
} HfRequestPath;

/*
 * Parses a raw request path (before any percent-decoding; the server turns MHD's decoding
 * off). Percent escapes may only stand for unreserved characters, so "%2f", "%2e%2e",
 * "%00" and "%5c" never become separators or dots; segments starting with '.', empty
 * segments, backslashes and control bytes are refused. -EINVAL for anything else.
 */
int hf_server_parse_path(const char *raw, size_t n, HfRequestPath *ret);

/*
 * Parses a Range header value against a file of size bytes. One range only: "bytes=A-B",
 * "bytes=A-", "bytes=-N". -EINVAL when malformed or multi-range, -ERANGE when unsatisfiable.
 */
int hf_server_parse_range(const char *v, size_t n, uint64_t size, uint64_t *ret_off,
                          uint64_t *ret_len);

typedef enum HfReceiptOp {
        HF_RECEIPT_PUT,    /* an upload accepted */
        HF_RECEIPT_DELETE, /* an object deleted through the server */
        HF_RECEIPT_ADOPT,  /* found on disk without a receipt when the server started */
        _HF_RECEIPT_OP_MAX,
} HfReceiptOp;

typedef struct HfReceipt {
        uint64_t seq; /* 1, 2, ... */
        HfTime time;  /* the server's clock, UTC */
        HfReceiptOp op;
        char repo[HF_REPO_PATH_MAX];
        HfFileType type;
        char name[HF_ID_HEX_LEN + 1];
        uint64_t size;
        HfId sha256; /* of the file's bytes */
        char user[HF_USER_NAME_MAX + 1];
        HfId prev; /* SHA-256 of the previous record's line, zero for the first */
} HfReceipt;

/* One log line (no newline): JSON with fields in a fixed order, so a line has one form. */
int hf_receipt_format(const HfReceipt *r, HfBuf *out);
/* Parses one line; -EPROTO when malformed, with fields outside their ranges, or too long. */
int hf_receipt_parse(const char *line, size_t n, HfReceipt *ret);
const char *hf_receipt_op_name(HfReceiptOp op);

/* A parsed htpasswd file (bcrypt, SHA-crypt or yescrypt hashes, as crypt(3) reads them). */
typedef struct HfHtpasswd HfHtpasswd;
/* Lines "user:hash"; '#' comments and blank lines skipped; unusable lines are counted in
 * *ret_skipped (may be NULL) and named at debug level. -E2BIG past 10,000 users. */
int hf_htpasswd_parse(const char *text, size_t n, HfHtpasswd **ret, unsigned *ret_skipped);
HfHtpasswd *hf_htpasswd_free(HfHtpasswd *h);
DEFINE_TRIVIAL_CLEANUP_FUNC(HfHtpasswd *, hf_htpasswd_free);
size_t hf_htpasswd_count(const HfHtpasswd *h);
/* True when the password matches the user's hash (constant time against the stored hash). */
bool hf_htpasswd_check(const HfHtpasswd *h, const char *user, const char *password);
