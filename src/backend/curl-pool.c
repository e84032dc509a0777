/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>

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
