/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Retention of the shadow store (issue 6; docs/internals/recover.md "Retention"). Written by
 * the recover engineer as a separate part of the sentinel module, so that the running sentinel
 * can release pre-images itself: a deletion in the store by any other process is a
 * self-protection verdict. The sentinel's main loop is expected to call hf_shadow_prune()
 * about once a minute; `holdfast recover --prune` calls it when no sentinel runs.
 *
 * A pre-image (or pin) is released — its file removed, preimages.released set — when:
 *  - it is older than the window (default 24 h), or
 *  - the vault provably holds its exact content (a row in preimage_vaulted, written by
 *    `holdfast recover --prune -r VAULT` after comparing chunk IDs), or
 *  - its store is over budget (a share of the filesystem, default 10 %): oldest first,
 * and never while it belongs to an open incident (one that is not recovered or closed).
 */

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct HfRetention {
        double window;      /* seconds a pre-image is kept (default 86400) */
        double max_share;   /* share of the filesystem the store may use (default 0.10) */
        uint64_t max_bytes; /* an absolute cap per store, 0 for none */
        bool dry_run;       /* count only */
} HfRetention;

typedef struct HfPruneStats {
        uint64_t released, released_bytes; /* content pre-images removed */
        uint64_t by_window, by_vault, by_budget;
        uint64_t pins_released;
        uint64_t protected_rows;   /* kept: they belong to open incidents */
        uint64_t kept, kept_bytes; /* still in the stores afterwards */
        bool over_budget;          /* a store is over budget with only protected rows */
        char over_root[512];       /* which */
} HfPruneStats;

void hf_retention_defaults(HfRetention *r);

/* Creates the preimage_vaulted table when missing (additive to schema version 1). */
int hf_retention_schema(sqlite3 *db);

/* Releases what the policy allows at time now. db is the sentinel's database (read-write). */
int hf_shadow_prune(sqlite3 *db, const HfRetention *r, double now, HfPruneStats *ret);
