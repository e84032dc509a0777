/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "queue.h"

struct HfQueue {
        pthread_mutex_t lock;
        pthread_cond_t not_empty, not_full;
        void **items;
        size_t cap, head, count;
        size_t resume_at; /* producers blocked on a full queue wake at this count */
        unsigned blocked; /* producers waiting in push */
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
        q->resume_at = capacity - 1;
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
        while (q->count == q->cap && !q->closed) {
                q->blocked++;
                pthread_cond_wait(&q->not_full, &q->lock);
                q->blocked--;
        }
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

/* Takes the oldest item; the lock is held and the queue is not empty. */
static void *take(HfQueue *q)
{
        void *item = q->items[q->head];

        q->head = (q->head + 1) % q->cap;
        q->count--;
        /* A producer waits only on a full queue, so the count passes resume_at on its way
         * down after every wait: one wake-up per wait. */
        if (q->blocked > 0 && q->count == q->resume_at)
                pthread_cond_broadcast(&q->not_full);
        return item;
}

void *hf_queue_pop(HfQueue *q)
{
        void *item = NULL;

        pthread_mutex_lock(&q->lock);
        while (q->count == 0 && !q->closed)
                pthread_cond_wait(&q->not_empty, &q->lock);
        if (q->count > 0)
                item = take(q);
        pthread_mutex_unlock(&q->lock);
        return item;
}

void *hf_queue_trypop(HfQueue *q)
{
        void *item = NULL;

        pthread_mutex_lock(&q->lock);
        if (q->count > 0)
                item = take(q);
        pthread_mutex_unlock(&q->lock);
        return item;
}

void hf_queue_resume_at(HfQueue *q, size_t n)
{
        pthread_mutex_lock(&q->lock);
        q->resume_at = MIN(n, q->cap - 1);
        pthread_mutex_unlock(&q->lock);
}

void hf_queue_close(HfQueue *q)
{
        pthread_mutex_lock(&q->lock);
        q->closed = true;
        pthread_cond_broadcast(&q->not_empty);
        pthread_cond_broadcast(&q->not_full);
        pthread_mutex_unlock(&q->lock);
}
