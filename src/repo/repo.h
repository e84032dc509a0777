/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * An open vault: backend, master key, config, and the blob index. Reading follows restic's
 * order (snapshots listed before the index is loaded); writing goes packs, index, snapshot.
 *
 * Errors that name a vault file are logged here (one sentence naming the file); callers turn
 * the returned code into an exit status. Special codes: -ENOMEDIUM "not a vault" (no config),
 * -ENOKEY "no key opens with this password", -EPROTO malformed file, -EBADMSG damaged file.
 */

#include "../backend/backend.h"
#include "../chunker/chunker.h"
#include "codec.h"
#include "index.h"
#include "key.h"

typedef struct HfRepo HfRepo;

typedef struct HfRepoOptions {
        int version;            /* init: 1 or 2 (default 2) */
        const HfKdfParams *kdf; /* init/key add: NULL calibrates to ~500 ms */
        HfPol pol;              /* init: 0 picks a random polynomial */
} HfRepoOptions;

/* Creates a new vault in b (taking ownership of b in every case). */
int hf_repo_init(HfBackend *b, const char *password, const HfRepoOptions *opts, HfRepo **ret);
/* Opens the vault in b (taking ownership of b in every case). */
int hf_repo_open(HfBackend *b, const char *password, HfRepo **ret);
HfRepo *hf_repo_free(HfRepo *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(HfRepo *, hf_repo_free);

HfBackend *hf_repo_backend(HfRepo *r);
const HfKey *hf_repo_key(HfRepo *r);
int hf_repo_version(HfRepo *r);
HfPol hf_repo_pol(HfRepo *r);
/* The config's "id" (64 hex). */
const char *hf_repo_config_id(HfRepo *r);
/* The key file that opened the vault. */
const HfId *hf_repo_key_id(HfRepo *r);
/* The decrypted config JSON as stored. */
const HfBuf *hf_repo_config_json(HfRepo *r);

void hf_repo_set_compression(HfRepo *r, HfCompression c);
HfCompression hf_repo_compression(HfRepo *r);
void hf_repo_set_pack_size(HfRepo *r, size_t bytes);
size_t hf_repo_pack_size(HfRepo *r);

/* A new codec for this vault's key and compression (one per thread). */
int hf_repo_new_codec(HfRepo *r, HfCodec **ret);

/* Encrypts (and in v2 compresses) an unpacked JSON file and saves it; *ret_id is its name. */
int hf_repo_save_file(HfRepo *r, HfFileType t, const void *json, size_t n, HfId *ret_id);
/*
 * Loads an unpacked file, checks its name against the hash of its bytes (-EBADMSG), decrypts
 * and decodes it into out (appended). Logs a sentence naming the file on failure unless quiet.
 */
int hf_repo_load_file(HfRepo *r, HfFileType t, const HfId *id, HfBuf *out, bool quiet);

/* Lists the IDs of every file of type t (unsorted). The array is the caller's to free. */
int hf_repo_list_ids(HfRepo *r, HfFileType t, HfId **ret, size_t *ret_n);
/* Lists every pack file: IDs and sizes, in the same (unsorted) order; both arrays are the
 * caller's to free, NULL when there are none. */
int hf_repo_list_packs(HfRepo *r, HfId **ret_ids, uint64_t **ret_sizes, size_t *ret_n);
/*
 * Resolves a full ID or a unique prefix of one (hex). -ENOENT when nothing matches,
 * -ENOTUNIQ when several do (both logged).
 */
int hf_repo_find_id(HfRepo *r, HfFileType t, const char *prefix, HfId *ret);

/*
 * Loads every index file. A file that cannot be read or parsed is reported (error naming it)
 * and counted in *ret_errors; then the headers of packs no index lists are read, so blobs
 * stay reachable. Returns < 0 only for errors that prevent loading at all.
 */
int hf_repo_load_index(HfRepo *r, unsigned *ret_errors);
/*
 * Writes an index file for the blobs hf_repo_load_index() found only in pack headers, so a new
 * snapshot may refer to them (restic resolves blobs through index files only).
 */
int hf_repo_save_recovered_index(HfRepo *r);
HfIndex *hf_repo_index(HfRepo *r);

/*
 * Loads a blob through the index, verifying MAC and SHA-256 (-EBADMSG), appending the
 * plaintext to out. -ENOENT when the index does not know it. Thread safe as long as the index
 * is not being modified; codec is the calling thread's.
 */
int hf_repo_load_blob(HfRepo *r, HfCodec *codec, HfBlobType t, const HfId *id, HfBuf *out);
/* The same, but the SHA-256 is left to the caller, who must check it (hf_sha256_many()). */
int hf_repo_load_blob_unhashed(HfRepo *r, HfCodec *codec, HfBlobType t, const HfId *id, HfBuf *out);

/*
 * Hints that len bytes at off of the pack at index position pack will be read soon (local
 * vaults read them ahead in the background; other backends ignore it).
 */
void hf_repo_prefetch(HfRepo *r, uint32_t pack, uint64_t off, size_t len);

/* The vault's config JSON for a new vault. */
int hf_config_format(int version, const char *id_hex, HfPol pol, HfBuf *out);
/* Parses config JSON; -EPROTO / -EOPNOTSUPP (version). */
int hf_config_parse(const void *json, size_t n, int *ret_version, char ret_id[65], HfPol *ret_pol);

/* The user and host names recorded in snapshots, locks and keys. */
const char *hf_username(void);
const char *hf_hostname(void);
