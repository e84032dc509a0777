/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Interfaces between the parts of src/recover/ (not used outside it). */

#include <sys/stat.h>

#include "../crypto/crypto.h"
#include "../repo/tree.h"
#include "recover.h"

#define HF_RECOVER_PATH_MAX 4096

/* SHA-256 of everything readable from fd (from offset 0) as lowercase hex; size in *ret_size. */
int hf_recover_sha_fd(int fd, char hex[65], uint64_t *ret_size);

/* ---- vault.c: files of the latest snapshot before a time ---- */

typedef struct HfVaultSrc HfVaultSrc;
/* Picks the newest snapshot older than before (none: *ret stays usable, lookups give
 * -ENOENT). The index is loaded on first use. */
int hf_vault_src_new(HfRepo *repo, double before, HfVaultSrc **ret);
HfVaultSrc *hf_vault_src_free(HfVaultSrc *v);
DEFINE_TRIVIAL_CLEANUP_FUNC(HfVaultSrc *, hf_vault_src_free);
/* Points the source at the newest snapshot older than before; false when there is none. */
bool hf_vault_src_pick(HfVaultSrc *v, double before);
/* The node of absolute path in the snapshot (borrowed, valid until the next lookup):
 * -ENOENT when the snapshot does not hold it or there is no snapshot. */
int hf_vault_src_lookup(HfVaultSrc *v, const char *path, const HfNode **ret);
/* Writes the content of a file node to fd from offset 0, hashing it. */
int hf_vault_src_write(HfVaultSrc *v, const HfNode *n, int fd, char hex[65], uint64_t *ret_size);
/* The snapshot in use: short ID and time, false when none. */
bool hf_vault_src_snapshot(HfVaultSrc *v, char id8[9], double *ret_time);

/* ---- sample.c: the sample tree of a public service ---- */

/* Writes the sample tree into dirfd; calls add(path relative to dirfd) for each file. */
int hf_sample_tree(int dirfd, unsigned scale, int (*add)(void *ud, const char *rel), void *ud);
/* n text files of about size bytes, 100 to a folder (benchmarks). */
int hf_sample_flat(int dirfd, unsigned n, unsigned size, int (*add)(void *ud, const char *rel),
                   void *ud);
