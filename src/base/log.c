/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <string.h>

static int log_level = HF_LOG_NOTICE;
/* Per thread: > 0 silences everything (follow-up errors of a failure already reported). */
static __thread int quiet_depth;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void hf_log_set_level(int level)
{
        log_level = level;
}

int hf_log_get_level(void)
{
        return quiet_depth > 0 ? HF_LOG_ERR - 1 : log_level;
}

void hf_log_quiet(bool on)
{
        quiet_depth += on ? 1 : -1;
}

int hf_log_internal(int level, int err, const char *fmt, ...)
{
        int e = err < 0 ? -err : err;
        const char *prefix = level <= HF_LOG_ERR       ? "error: "
                             : level == HF_LOG_WARNING ? "warning: "
                                                       : "";
        char line[4096];
        va_list ap;

        /* %m must print the error we were given, not whatever errno holds now. */
        errno = e;
        va_start(ap, fmt);
        (void)vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);

        pthread_mutex_lock(&log_lock);
        (void)fprintf(stderr, "holdfast: %s%s\n", prefix, line);
        pthread_mutex_unlock(&log_lock);
        return -e;
}
