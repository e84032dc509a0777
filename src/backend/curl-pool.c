/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "curl-pool.h"

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_result;

static void global_init(void)
{
        global_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int hf_curl_global_init(void)
{
        pthread_once(&global_once, global_init);
        return global_result == CURLE_OK ? 0 : -EIO;
}

void hf_curl_pool_init(HfCurlPool *p)
{
        pthread_mutex_init(&p->lock, NULL);
        p->n = 0;
}

void hf_curl_pool_done(HfCurlPool *p)
{
        for (size_t i = 0; i < p->n; i++)
                curl_easy_cleanup(p->handles[i]);
        p->n = 0;
        pthread_mutex_destroy(&p->lock);
}

CURL *hf_curl_pool_take(HfCurlPool *p)
{
        CURL *h = NULL;

        pthread_mutex_lock(&p->lock);
        if (p->n)
                h = p->handles[--p->n];
        pthread_mutex_unlock(&p->lock);
        if (!h)
                return curl_easy_init();
        curl_easy_reset(h); /* keeps the live connection */
        return h;
}

void hf_curl_pool_give(HfCurlPool *p, CURL *h)
{
        if (!h)
                return;
        pthread_mutex_lock(&p->lock);
        if (p->n < HF_CURL_POOL_MAX) {
                p->handles[p->n++] = h;
                h = NULL;
        }
        pthread_mutex_unlock(&p->lock);
        if (h)
                curl_easy_cleanup(h);
}

void hf_curl_body_reset(HfCurlBody *b)
{
        b->got = 0;
        b->overflow = false;
        if (b->buf)
                hf_buf_reset(b->buf);
}

bool hf_curl_body_take(HfCurlBody *b, const void *data, size_t n)
{
        if (b->buf) {
                if (hf_buf_append(b->buf, data, n) < 0) {
                        b->overflow = true;
                        return false;
                }
        } else if (b->p) {
                if (b->got + n > b->cap) {
                        b->overflow = true;
                        return false;
                }
                memcpy(b->p + b->got, data, n);
        }
        b->got += n;
        return true;
}

bool hf_curl_retryable(CURLcode cc)
{
        switch (cc) {
        case CURLE_COULDNT_CONNECT:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
                return true;
        default:
                return false;
        }
}

int hf_curl_errno(CURLcode cc)
{
        switch (cc) {
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_COULDNT_RESOLVE_HOST:
                return -EHOSTUNREACH;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CERTPROBLEM:
                return -EPROTO;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        default:
                return -EIO;
        }
}

void hf_curl_backoff(double s)
{
        struct timespec ts = { .tv_sec = (time_t)s,
                               .tv_nsec = (long)((s - (double)(time_t)s) * 1e9) };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}
