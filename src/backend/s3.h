/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Internals of the S3 backend (s3.c) that tests and fuzz targets reach directly: AWS
 * Signature Version 4 (s3-sign.c) and the bounded parser of S3's XML replies (s3-xml.c).
 * Nothing outside src/backend/ and tests/ includes this header; the backend itself is opened
 * through backend.h (hf_backend_s3_open).
 *
 * The XML parser reads bytes a hostile server (or a man in the middle of plain HTTP) chose:
 * every length is bounded (element names, nesting depth, text per element, the document), no
 * DOCTYPE or external entity is accepted, and malformed input fails with -EPROTO, never a crash.
 */

#include "../base/buf.h"

/* ---- SigV4 (s3-sign.c) ---- */

typedef struct HfS3Header {
        const char *name;  /* lowercase */
        const char *value; /* trimmed, no line breaks */
} HfS3Header;

typedef struct HfSigV4 {
        const char *method;        /* GET, PUT, ... */
        const char *uri;           /* canonical URI: the path, already URI-encoded */
        const char *query;         /* canonical query string (sorted, encoded), "" for none */
        const HfS3Header *headers; /* the signed headers, sorted by name; host included */
        size_t n_headers;
        const char *payload_hash; /* lowercase hex SHA-256 or "UNSIGNED-PAYLOAD" */
        const char *amz_date;     /* "YYYYMMDDTHHMMSSZ" (UTC) */
        const char *region;
        const char *service; /* "s3" */
        const char *access_key;
        const char *secret_key;
} HfSigV4;

/*
 * Appends the value of the Authorization header for s ("AWS4-HMAC-SHA256 Credential=...,
 * SignedHeaders=..., Signature=..."). -EINVAL for headers that are not sorted or not lowercase.
 */
int hf_sigv4_authorization(const HfSigV4 *s, HfBuf *out);
/* The canonical request and the string to sign, for tests and debugging. */
int hf_sigv4_canonical_request(const HfSigV4 *s, HfBuf *out);
int hf_sigv4_string_to_sign(const HfSigV4 *s, HfBuf *out);

/*
 * URI-encodes n bytes of s as SigV4 wants it (RFC 3986 unreserved characters kept, everything
 * else %XX in uppercase hex); '/' is kept when keep_slash (object keys in paths).
 */
int hf_s3_uri_encode(HfBuf *out, const char *s, size_t n, bool keep_slash);

/* "YYYYMMDDTHHMMSSZ" of a Unix time (UTC); out has room for 17 bytes. */
void hf_s3_amz_date(int64_t t, char out[17]);
/* "YYYY-MM-DDTHH:MM:SSZ" (ISO 8601, UTC) of a Unix time; out has room for 21 bytes. */
void hf_s3_iso_date(int64_t t, char out[21]);
/*
 * Parses an ISO 8601 UTC time as S3 writes it ("2026-11-27T04:20:22.058Z", any number of
 * fraction digits, "Z" required) into Unix seconds (the fraction dropped). -EINVAL otherwise.
 */
int hf_s3_parse_iso_date(const char *s, size_t n, int64_t *ret);

/* ---- XML replies (s3-xml.c) ---- */

#define HF_S3_XML_MAX (64u << 20) /* a whole reply (a listing page is ~250 KiB) */
#define HF_S3_XML_DEPTH 16        /* nesting levels */
#define HF_S3_XML_NAME_MAX 64     /* bytes of one element name */
#define HF_S3_XML_TEXT_MAX 4096   /* bytes of text in one element (keys: 1024) */
#define HF_S3_KEY_MAX 1024        /* S3's own limit for an object key */
#define HF_S3_TOKEN_MAX 1024      /* continuation tokens, markers, version and upload IDs */

/*
 * Calls fn at the end of every element with its path from the root ("A/B/C", namespace
 * prefixes dropped) and, for an element without child elements, its decoded text (entities
 * and CDATA resolved; "" otherwise). A negative return from fn stops and is returned.
 * -EPROTO for malformed XML, a DOCTYPE, a limit exceeded, or more than one root element.
 */
typedef int (*HfS3XmlFn)(void *userdata, const char *path, const char *text, size_t text_len);
int hf_s3_xml_walk(const void *xml, size_t n, HfS3XmlFn fn, void *userdata);

/* <Error><Code>..</Code><Message>..</Message></Error>: 0 when the root is Error, with code and
 * message (cut to fit) set; -ENOENT when the document is not an error; -EPROTO malformed. */
int hf_s3_parse_error(const void *xml, size_t n, char code[64], char message[256]);

typedef struct HfS3Object {
        const char *key; /* as listed (the prefix included) */
        size_t key_len;
        uint64_t size;
        int64_t mtime; /* LastModified, Unix seconds */
} HfS3Object;
typedef int (*HfS3ObjectFn)(void *userdata, const HfS3Object *o);

/*
 * A ListObjectsV2 page: fn for every <Contents> (Key and Size required), *ret_truncated from
 * IsTruncated, and the NextContinuationToken (empty when none) into token.
 */
int hf_s3_parse_list(const void *xml, size_t n, HfS3ObjectFn fn, void *userdata,
                     bool *ret_truncated, char token[HF_S3_TOKEN_MAX + 1]);

typedef struct HfS3Version {
        const char *key;
        size_t key_len;
        const char *version_id;
        bool delete_marker;
        bool latest;
} HfS3Version;
typedef int (*HfS3VersionFn)(void *userdata, const HfS3Version *v);

/* A ListObjectVersions page: fn for every <Version> and <DeleteMarker>, then the markers of
 * the next page (empty when none). */
int hf_s3_parse_versions(const void *xml, size_t n, HfS3VersionFn fn, void *userdata,
                         bool *ret_truncated, char key_marker[HF_S3_TOKEN_MAX + 1],
                         char version_marker[HF_S3_TOKEN_MAX + 1]);

typedef enum HfS3LockMode {
        HF_S3_LOCK_NONE,
        HF_S3_LOCK_GOVERNANCE,
        HF_S3_LOCK_COMPLIANCE,
} HfS3LockMode;

typedef struct HfS3LockConfig {
        bool enabled;      /* ObjectLockEnabled = Enabled */
        HfS3LockMode mode; /* of the default retention, NONE when there is none */
        uint32_t days;     /* the default retention: Days, or Years * 365 */
} HfS3LockConfig;

/* <ObjectLockConfiguration>: -EPROTO for unknown modes or a retention without a period. */
int hf_s3_parse_lock_config(const void *xml, size_t n, HfS3LockConfig *ret);

/* <InitiateMultipartUploadResult><UploadId>: -EPROTO when missing or empty. */
int hf_s3_parse_upload_id(const void *xml, size_t n, char id[HF_S3_TOKEN_MAX + 1]);
