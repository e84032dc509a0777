/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * libcurl easy handles shared by the threads of one backend: a request takes a handle and gives
 * it back, so its connection stays alive for the next request (REST and S3 clients).
 */

#include <curl/curl.h>
#include <pthread.h>
#include <stddef.h>

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
