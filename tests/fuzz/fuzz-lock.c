/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Lock files (restic-format.md §8) are written by every client of the vault, so by anyone who
 * can write to it; holdfast reads them all before it takes a lock.
 */
#include <string.h>

#include "../../src/repo/lock.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        HfLockInfo l;

        if (hf_lock_parse(data, size, &l) < 0)
                return 0;
        FUZZ_CHECK(memchr(l.hostname, 0, sizeof(l.hostname)) != NULL);
        FUZZ_CHECK(memchr(l.username, 0, sizeof(l.username)) != NULL);
        FUZZ_CHECK(l.time.nsec >= 0 && l.time.nsec <= 999999999);
        /* Only signal 0 (an existence probe), and only for this host's pids. */
        (void)hf_lock_is_stale(&l);
        return 0;
}
