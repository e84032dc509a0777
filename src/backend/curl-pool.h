/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What the REST and S3 clients share about libcurl: easy handles pooled by the threads of one
 * backend (a request takes a handle and gives it back, so its connection stays alive for the
 * next request), where a response body goes, and which transport failures are worth a retry.
 */

#include <curl/curl.h>
#include <pthread.h>
#include <stddef.h>

#include "../base/util.h"

#define HF_CURL_POOL_MAX 64

typedef struct HfCurlPool {
        pthread_mutex_t lock;
        CURL *handles[HF_CURL_POOL_MAX];
        size_t n;
} HfCurlPool;

/* curl_global_init, once per process; -EIO when it failed. */
int hf_curl_global_init(void);

void hf_curl_pool_init(HfCurlPool *p);
/* Closes every pooled handle (and its connection). */
void hf_curl_pool_done(HfCurlPool *p);
/* A pooled handle, reset but keeping its connection, or a new one; NULL when out of memory. */
CURL *hf_curl_pool_take(HfCurlPool *p);
/* Back into the pool, or closed when the pool is full. NULL is ignored. */
void hf_curl_pool_give(HfCurlPool *p, CURL *h);

/* Where a response body goes: a growable buffer (up to its ceiling), or a fixed span of cap
 * bytes at p; with neither, the body is counted and dropped. */
typedef struct HfCurlBody {
        HfBuf *buf;
        uint8_t *p;
        size_t cap, got;
        bool overflow; /* it did not fit */
} HfCurlBody;

/* Before each attempt: nothing received yet. */
void hf_curl_body_reset(HfCurlBody *b);
/* Takes the next n bytes; false (and overflow set) when they do not fit. */
bool hf_curl_body_take(HfCurlBody *b, const void *data, size_t n);

/* A transport failure another attempt may get past (refused, reset, timed out, cut short). */
bool hf_curl_retryable(CURLcode cc);
/* The errno for a transport failure: -ECONNREFUSED, -ETIMEDOUT, -EPROTO for TLS, ... */
int hf_curl_errno(CURLcode cc);
/* Waits s seconds between attempts, through signal interruptions. */
void hf_curl_backoff(double s);
