/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Snapshots (restic-format.md §6.2): JSON with the root tree, paths, host, user and time. */

#include "../base/buf.h"
#include "../base/gojson.h"
#include "../base/util.h"
#include "repo.h"

typedef struct HfSnapshotSummary {
        HfTime backup_start, backup_end;
        uint64_t files_new, files_changed, files_unmodified;
        uint64_t dirs_new, dirs_changed, dirs_unmodified;
        uint64_t data_blobs, tree_blobs, data_added, data_added_packed;
        uint64_t total_files_processed, total_bytes_processed;
} HfSnapshotSummary;

typedef struct HfSnapshot {
        HfId id; /* storage ID (not part of the JSON) */
        HfTime time;
        bool has_parent;
        HfId parent;
        HfId tree;
        char **paths;
        size_t n_paths;
        char *hostname;
        char *username;
        uint32_t uid, gid;
        char **excludes;
        size_t n_excludes;
        char **tags;
        size_t n_tags;
        bool has_original;
        HfId original;
        char *program_version;
        bool has_summary;
        HfSnapshotSummary summary;
} HfSnapshot;

void hf_snapshot_done(HfSnapshot *s);
HfSnapshot *hf_snapshot_free(HfSnapshot *s);
/* Appends a copy of s to a string vector. */
int hf_strv_push(char ***v, size_t *n, const char *s);
void hf_strv_free(char **v, size_t n);

/* Snapshot JSON as restic writes it (Go field order, omitempty, no trailing newline). */
int hf_snapshot_format(const HfSnapshot *s, HfBuf *out);
/* -EPROTO with a sentence in err when malformed (no tree, bad time, bad IDs). */
int hf_snapshot_parse(const void *json, size_t n, HfSnapshot *ret, HfBuf *err);

/* Saves a new snapshot; s->id receives its ID. */
int hf_snapshot_save(HfRepo *r, HfSnapshot *s);
/* Loads one snapshot by ID. */
int hf_snapshot_load(HfRepo *r, const HfId *id, HfSnapshot *ret);

/* A filter for listings and for "latest". Empty fields match everything. */
typedef struct HfSnapshotFilter {
        const char *host;
        char **tags; /* every tag must be present */
        size_t n_tags;
        char **paths; /* the snapshot's paths must equal this set */
        size_t n_paths;
} HfSnapshotFilter;

bool hf_snapshot_match(const HfSnapshot *s, const HfSnapshotFilter *f);

/*
 * Loads every snapshot, sorted oldest first (ties by ID). Unreadable snapshots are reported
 * (logged, naming the file) and counted in *ret_errors, not returned.
 */
int hf_snapshot_load_all(HfRepo *r, HfSnapshot **ret, size_t *ret_n, unsigned *ret_errors);
void hf_snapshot_array_free(HfSnapshot *v, size_t n);

/*
 * Resolves "latest" (newest matching f) or an ID/prefix to a loaded snapshot.
 */
int hf_snapshot_find(HfRepo *r, const char *what, const HfSnapshotFilter *f, HfSnapshot *ret);

int64_t hf_time_cmp(const HfTime *a, const HfTime *b);
