/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A bounded multi-producer multi-consumer queue of pointers. push blocks while full, pop blocks
 * while empty; after hf_queue_close(), pop drains what is left and then returns NULL, and push
 * fails with -EPIPE. The bound is what gives a pipeline back-pressure.
 */

#include <pthread.h>

#include "macro.h"

typedef struct HfQueue HfQueue;

int hf_queue_new(size_t capacity, HfQueue **ret);
HfQueue *hf_queue_free(HfQueue *q);
int hf_queue_push(HfQueue *q, void *item);
/* A producer blocked on a full queue resumes once it is down to n items (by default as soon as
 * there is room). With n well below the capacity, a producer faster than its consumers is woken
 * once per (capacity - n) items instead of once per item. Call before the queue is used. */
void hf_queue_resume_at(HfQueue *q, size_t n);
/* NULL once the queue is closed and empty. */
void *hf_queue_pop(HfQueue *q);
/* The oldest item, or NULL at once when there is none. */
void *hf_queue_trypop(HfQueue *q);
void hf_queue_close(HfQueue *q);
DEFINE_TRIVIAL_CLEANUP_FUNC(HfQueue *, hf_queue_free);
