/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * restic's lock protocol (restic-format.md §8), so holdfast and restic can share a vault:
 * non-exclusive locks for reading and appending, exclusive ones for destructive work.
 * A held lock is refreshed every 5 minutes by a background thread.
 */

#include "repo.h"

typedef struct HfLock HfLock;

typedef struct HfLockInfo {
        HfId id;
        HfTime time;
        bool exclusive;
        char hostname[256];
        char username[256];
        int64_t pid;
        uint32_t uid, gid;
} HfLockInfo;

/*
 * Takes a lock. -EBUSY when a conflicting lock exists (logged with who holds it and how to
 * remove it if stale). Locks left by dead processes of this host are ignored (with a notice),
 * never silently deleted.
 */
int hf_lock_acquire(HfRepo *r, bool exclusive, HfLock **ret);
/*
 * The same in two steps, so read-only preparation (loading the index) overlaps the protocol's
 * 200 ms wait: begin writes the lock after a first conflict check; confirm waits what is left
 * of the 200 ms and checks again. Nothing may be written to the vault before confirm
 * succeeds; on failure the lock is removed and freed.
 */
int hf_lock_begin(HfRepo *r, bool exclusive, HfLock **ret);
int hf_lock_confirm(HfLock **l);
/* Releases (deletes) the lock and stops its refresh. NULL is fine. */
HfLock *hf_lock_release(HfLock *l);
DEFINE_TRIVIAL_CLEANUP_FUNC(HfLock *, hf_lock_release);

int hf_lock_parse(const void *json, size_t n, HfLockInfo *ret);
/* True when the lock is older than 30 minutes, or is this host's and its process is gone. */
bool hf_lock_is_stale(const HfLockInfo *l);

/* Removes stale locks (all locks with all set); *ret_removed counts them. */
int hf_lock_remove_stale(HfRepo *r, bool all, unsigned *ret_removed);
