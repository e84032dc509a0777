/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Logging to stderr. Every helper that takes an error returns it negated, so the idiom
 *     return log_error_errno(r, "%s: cannot read: %m", path);
 * logs and propagates in one line. %m expands to strerror(-r).
 */

#include "macro.h"

enum {
        HF_LOG_ERR = 3,
        HF_LOG_WARNING = 4,
        HF_LOG_NOTICE = 5,
        HF_LOG_INFO = 6,
        HF_LOG_DEBUG = 7,
};

void hf_log_set_level(int level);
int hf_log_get_level(void);
/*
 * Silences logging in the calling thread until the matching hf_log_quiet(false): for the
 * follow-up failures of a problem that was already reported in one sentence.
 */
void hf_log_quiet(bool on);

/* Logs at level; err is a (positive or negative) errno or 0. Returns -abs(err). */
int hf_log_internal(int level, int err, const char *fmt, ...) _printf_(3, 4);

/* The result is computed here, not by the call, so analysers see it is negative. */
#define log_full_errno(level, err, ...)                                                            \
        ({                                                                                         \
                int _lvl = (level), _e = (err);                                                    \
                if (hf_log_get_level() >= _lvl)                                                    \
                        (void)hf_log_internal(_lvl, _e, __VA_ARGS__);                              \
                _e < 0 ? _e : -_e;                                                                 \
        })

#define log_error_errno(err, ...) log_full_errno(HF_LOG_ERR, err, __VA_ARGS__)
#define log_warning_errno(err, ...) log_full_errno(HF_LOG_WARNING, err, __VA_ARGS__)
#define log_notice_errno(err, ...) log_full_errno(HF_LOG_NOTICE, err, __VA_ARGS__)
#define log_debug_errno(err, ...) log_full_errno(HF_LOG_DEBUG, err, __VA_ARGS__)
#define log_error(...) (void)log_full_errno(HF_LOG_ERR, 0, __VA_ARGS__)
#define log_warning(...) (void)log_full_errno(HF_LOG_WARNING, 0, __VA_ARGS__)
#define log_notice(...) (void)log_full_errno(HF_LOG_NOTICE, 0, __VA_ARGS__)
#define log_info(...) (void)log_full_errno(HF_LOG_INFO, 0, __VA_ARGS__)
#define log_debug(...) (void)log_full_errno(HF_LOG_DEBUG, 0, __VA_ARGS__)

/* A string for an allocation failure, used where logging must not allocate. */
#define log_oom() log_error_errno(ENOMEM, "out of memory")
