/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Interruption: the first SIGINT, SIGTERM or SIGHUP sets a flag that long operations poll so
 * they can stop cleanly (store what is done, release locks); a second one ends the process at
 * once.
 */

#include <stdatomic.h>

#include "macro.h"

extern atomic_bool hf_interrupted;

void hf_signal_setup(void);

static inline bool hf_is_interrupted(void)
{
        return atomic_load_explicit(&hf_interrupted, memory_order_relaxed);
}
