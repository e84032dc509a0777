/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "queue.h"

struct HfQueue {
        pthread_mutex_t lock;
        pthread_cond_t not_empty, not_full;
        void **items;
        size_t cap, head, count;
        bool closed;
};

int hf_queue_new(size_t capacity, HfQueue **ret)
{
        HfQueue *q;

        if (capacity == 0)
                return -EINVAL;
        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->items = calloc(capacity, sizeof(void *));
        if (!q->items) {
                free(q);
                return -ENOMEM;
        }
        q->cap = capacity;
        pthread_mutex_init(&q->lock, NULL);
        pthread_cond_init(&q->not_empty, NULL);
        pthread_cond_init(&q->not_full, NULL);
        *ret = q;
        return 0;
}

HfQueue *hf_queue_free(HfQueue *q)
{
        if (!q)
                return NULL;
        pthread_mutex_destroy(&q->lock);
        pthread_cond_destroy(&q->not_empty);
        pthread_cond_destroy(&q->not_full);
        free(q->items);
        free(q);
        return NULL;
}

int hf_queue_push(HfQueue *q, void *item)
{
        pthread_mutex_lock(&q->lock);
        while (q->count == q->cap && !q->closed)
                pthread_cond_wait(&q->not_full, &q->lock);
        if (q->closed) {
                pthread_mutex_unlock(&q->lock);
                return -EPIPE;
        }
        q->items[(q->head + q->count) % q->cap] = item;
        q->count++;
        pthread_cond_signal(&q->not_empty);
        pthread_mutex_unlock(&q->lock);
        return 0;
}

void *hf_queue_pop(HfQueue *q)
{
        void *item = NULL;

        pthread_mutex_lock(&q->lock);
        while (q->count == 0 && !q->closed)
                pthread_cond_wait(&q->not_empty, &q->lock);
        if (q->count > 0) {
                item = q->items[q->head];
                q->head = (q->head + 1) % q->cap;
                q->count--;
                pthread_cond_signal(&q->not_full);
        }
        pthread_mutex_unlock(&q->lock);
        return item;
}

void hf_queue_close(HfQueue *q)
{
        pthread_mutex_lock(&q->lock);
        q->closed = true;
        pthread_cond_broadcast(&q->not_empty);
        pthread_cond_broadcast(&q->not_full);
        pthread_mutex_unlock(&q->lock);
}
