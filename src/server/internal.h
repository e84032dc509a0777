/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Shared between the files of src/server/ only (not part of the module's interface). */

#include <pthread.h>

#include "server.h"

#define HF_SERVER_STATE_DIR ".holdfast"
#define HF_RECEIPT_LOG "receipts.log"
#define HF_RECEIPT_LINE_MAX 4096

/* ---- receipts.c: the hash-chained log and the table of what it says is present ---- */

typedef struct HfReceiptLog HfReceiptLog;

/*
 * Opens (creating) statefd/receipts.log, replays it into the table and continues the chain
 * from its last line. A broken chain is logged (verify names the line) but does not stop the
 * server; a torn last line (no newline: a crash inside write()) is cut off.
 */
int hf_receipt_log_open(int statefd, HfReceiptLog **ret);
HfReceiptLog *hf_receipt_log_free(HfReceiptLog *l);
DEFINE_TRIVIAL_CLEANUP_FUNC(HfReceiptLog *, hf_receipt_log_free);
/* Appends one record and makes it durable (fdatasync) before returning. */
int hf_receipt_log_append(HfReceiptLog *l, HfReceiptOp op, const char *repo, HfFileType t,
                          const char *name, uint64_t size, const HfId *sha, const char *user,
                          HfTime *ret_time);
/* Receipt time (seconds) of an object the log says is present; -ENOENT otherwise. */
int hf_receipt_log_lookup(HfReceiptLog *l, const char *repo, HfFileType t, const char *name,
                          int64_t *ret_sec);
void hf_receipt_log_head(HfReceiptLog *l, uint64_t *ret_seq, HfId *ret_head);

/* Calls fn for each line of fd (without its newline). Lines longer than the ceiling are passed
 * with n = SIZE_MAX. A last line without newline is passed with torn set. */
typedef int (*HfLineFn)(void *userdata, const char *line, size_t n, uint64_t lineno, bool torn);
int hf_read_lines(int fd, HfLineFn fn, void *userdata);

/* The table key of an object: SHA-256 of "repo\0type\0name". */
void hf_receipt_key(const char *repo, HfFileType t, const char *name, HfId *ret);

/* ---- store.c: objects on disk, relative to the root folder ---- */

/* Relative path of an object ("alice/x/data/ab/ab..", "config" for the root repo). */
int hf_store_object_path(const char *repo, HfFileType t, const char *name, char *buf, size_t n);
/* Visits every repository under rootfd (a folder holding config or keys/), up to the depth
 * limit, skipping dot folders. */
typedef int (*HfRepoFn)(void *userdata, const char *repo);
int hf_store_walk_repos(int rootfd, HfRepoFn fn, void *userdata);
/* Visits every object of a repository with a valid name (regular files only). */
typedef int (*HfObjectFn)(void *userdata, const char *repo, HfFileType t, const char *name,
                          int dirfd, uint64_t size);
int hf_store_walk_objects(int rootfd, const char *repo, HfObjectFn fn, void *userdata);
/* The same for one type (data: the 256 fan-out folders). */
int hf_store_walk_type(int rootfd, const char *repo, HfFileType t, HfObjectFn fn, void *userdata);
/* SHA-256 and size of a file (bounded by nothing but the file). */
int hf_store_hash_fd(int fd, HfId *ret, uint64_t *ret_size);
/* Removes leftovers of uploads interrupted by a crash (named temp files) in a repository. */
void hf_store_clean_temps(int rootfd, const char *repo);

/* ---- auth.c ---- */

typedef struct HfAuth HfAuth;
int hf_auth_new(const char *htpasswd_path, HfAuth **ret);
HfAuth *hf_auth_free(HfAuth *a);
/* Re-reads the file; keeps the old users when the new file cannot be read. */
int hf_auth_reload(HfAuth *a);
/* True when user/password are valid; successes are cached for a few minutes (bcrypt is slow
 * by design, and restic sends the credentials with every request). */
bool hf_auth_check(HfAuth *a, const char *user, const char *password);
