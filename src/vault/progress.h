/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A live progress line on stderr (only when enabled, i.e. a terminal and not --quiet/--json):
 * elapsed time, files, bytes, rate, and ETA once the total is known. Every function accepts a
 * NULL progress and then does nothing, so callers need no checks.
 */

#include "../base/macro.h"

typedef struct HfProgress HfProgress;

int hf_progress_new(const char *verb, bool enabled, HfProgress **ret);
/* Stops the display and clears the line. */
HfProgress *hf_progress_free(HfProgress *p);

void hf_progress_add_files(HfProgress *p, uint64_t n);
void hf_progress_add_bytes(HfProgress *p, uint64_t n);
void hf_progress_add_total(HfProgress *p, uint64_t files, uint64_t bytes);
/* The total will not grow any more (ETA becomes meaningful). */
void hf_progress_total_known(HfProgress *p);
/* The item being worked on (copied). */
void hf_progress_set_item(HfProgress *p, const char *item);
