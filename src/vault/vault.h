/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Vault operations above the repository layer: backup, restore, check, ls and diff. Each takes
 * an open repository and an options struct, reports problems as it goes (stderr, or JSON lines
 * on stdout with json set), and returns 0, a negative errno for failure, or HF_INCOMPLETE when
 * it finished but some items could not be processed (exit code 3).
 */

#include "../repo/lock.h"
#include "../repo/repo.h"
#include "../repo/snapshot.h"
#include "../repo/tree.h"

#define HF_INCOMPLETE 3

typedef struct HfOutput {
        bool json;     /* JSON lines on stdout */
        bool quiet;    /* errors only */
        bool verbose;  /* one line per item */
        bool progress; /* live progress on stderr (a terminal) */
} HfOutput;

typedef struct HfBackupOptions {
        char **paths;
        size_t n_paths;
        char **tags;
        size_t n_tags;
        const char *host;   /* NULL: this host's name */
        const char *parent; /* ID prefix, NULL: detect */
        bool force;         /* re-read everything (no parent) */
        char **excludes;    /* glob patterns */
        size_t n_excludes;
        bool one_file_system;
        bool dry_run;     /* read and count everything, write nothing */
        unsigned workers; /* 0: number of CPUs */
        HfOutput out;
} HfBackupOptions;

typedef struct HfBackupResult {
        HfId snapshot_id;
        HfSnapshotSummary summary;
        uint64_t files_failed;
        double seconds;
        bool dry_run; /* nothing was written; snapshot_id is zero */
} HfBackupResult;

int hf_backup(HfRepo *repo, const HfBackupOptions *opts, HfBackupResult *ret);

/* Exclude patterns (restic-like): a pattern without '/' matches any path component name; with
 * '/' it matches the whole absolute path when it starts with '/', else the path's tail from
 * any folder level ("docs/private" matches "/srv/docs/private"); '*' also crosses '/'. */
bool hf_exclude_match(char **patterns, size_t n, const char *path, const char *name);
/* Reads patterns from a file (one per line, '#' comments, blank lines ignored). */
int hf_exclude_read_file(const char *path, char ***v, size_t *n);

typedef struct HfRestoreOptions {
        const char *target;
        char **includes;
        size_t n_includes;
        char **excludes;
        size_t n_excludes;
        const char *subpath; /* restore only this folder of the snapshot ("ID:sub/dir") */
        bool verify;         /* re-read and hash what was written */
        bool delete_extra;   /* remove files in target that the snapshot does not have */
        unsigned workers;
        HfOutput out;
} HfRestoreOptions;

typedef struct HfRestoreResult {
        uint64_t files, dirs, others, bytes;
        uint64_t files_failed;
        uint64_t verified, verify_failed;
        uint64_t deleted;
        double seconds;
} HfRestoreResult;

int hf_restore(HfRepo *repo, const HfSnapshot *snap, const HfRestoreOptions *opts,
               HfRestoreResult *ret);

typedef struct HfCheckOptions {
        bool read_data;
        unsigned workers;
        HfOutput out;
        /* A lock taken with hf_lock_begin(), or NULL: check confirms it once the indexes are
         * loaded, while it goes on with the packs, and holds its output until then: when
         * another client holds the vault, check stops, having shown nothing of the packs. */
        HfLock **lock;
} HfCheckOptions;

typedef struct HfCheckResult {
        uint64_t snapshots, trees, packs, blobs, data_read;
        uint64_t errors;
} HfCheckResult;

int hf_check(HfRepo *repo, const HfCheckOptions *opts, HfCheckResult *ret);

typedef struct HfLsOptions {
        char **paths; /* only below these paths */
        size_t n_paths;
        bool long_format;
        HfOutput out;
} HfLsOptions;

int hf_ls(HfRepo *repo, const HfSnapshot *snap, const HfLsOptions *opts);

int hf_diff(HfRepo *repo, const HfSnapshot *a, const HfSnapshot *b, const HfOutput *out);

/*
 * Object Lock (backends with retention, i.e. S3): makes every object a new snapshot of tree
 * needs stay undeletable until time + the backend's retention period (retain.c). Called by a
 * backup before it writes the snapshot; 0 at once for backends without retention.
 */
int hf_retain_snapshot(HfRepo *repo, const HfId *tree, const HfTime *time);

/* Loads and parses a tree blob (logs a sentence naming the tree on failure). */
int hf_load_tree(HfRepo *repo, HfCodec *codec, const HfId *id, HfTree *ret);

/* Serialises output lines from many threads. */
void hf_out_lock(void);
void hf_out_unlock(void);
/* Reports a problem with one item: stderr text, or a JSON error line with json set. */
void hf_report_error(const HfOutput *out, const char *during, const char *item, int err,
                     const char *fmt, ...) _printf_(5, 6);
