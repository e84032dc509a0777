/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Pack files (restic-format.md §4): encrypted blobs back to back, then the encrypted header
 * and its length as LE32. The writer assembles a pack in memory; the reader parses and checks
 * a header.
 */

#include "../backend/backend.h"
#include "../base/buf.h"
#include "codec.h"
#include "index.h"

#define HF_PACK_SIZE_DEFAULT (16u * 1024 * 1024)
#define HF_PACK_SIZE_MIN (4u * 1024 * 1024)
#define HF_PACK_SIZE_MAX (128u * 1024 * 1024)
#define HF_PACK_HEADER_MAX (16u * 1024 * 1024)
#define HF_PACK_ENTRY_PLAIN 37
#define HF_PACK_ENTRY_COMPRESSED 41
/* Largest number of blobs one pack header can list. */
#define HF_PACK_MAX_ENTRIES ((HF_PACK_HEADER_MAX - HF_CRYPTO_OVERHEAD) / HF_PACK_ENTRY_COMPRESSED)

/* One blob as a pack header lists it. */
typedef struct HfPackBlob {
        HfId id;
        uint8_t type; /* HfBlobType */
        uint32_t offset;
        uint32_t length;              /* encrypted, overhead included */
        uint32_t uncompressed_length; /* 0 when not compressed */
} HfPackBlob;

typedef struct HfPacker HfPacker;

int hf_packer_new(HfPacker **ret);
HfPacker *hf_packer_free(HfPacker *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(HfPacker *, hf_packer_free);
/* Empties the packer for reuse, keeping its buffers. */
void hf_packer_reset(HfPacker *p);

/* Appends an encrypted blob. -E2BIG when the header would be full. */
int hf_packer_add(HfPacker *p, HfBlobType type, const HfId *id, const void *enc, size_t len,
                  uint32_t uncompressed_length);
size_t hf_packer_size(const HfPacker *p);
size_t hf_packer_count(const HfPacker *p);
const HfPackBlob *hf_packer_blobs(const HfPacker *p);

/*
 * Appends the encrypted header and its length, and computes the pack ID. After this the data
 * (hf_packer_data) is the complete pack file.
 */
int hf_packer_finish(HfPacker *p, HfCipher *cipher, HfId *ret_id);
const uint8_t *hf_packer_data(const HfPacker *p, size_t *ret_len);

/*
 * The tail of a pack: the encrypted header listing blobs, then its length as LE32 (appended
 * to out). Blob offsets are implied by their order, so blobs must be in file order.
 */
int hf_pack_encode_header(const HfPackBlob *blobs, size_t n, HfCipher *cipher, HfBuf *out);
/* Size of the plaintext header entry of a blob. */
static inline size_t hf_pack_entry_size(uint32_t uncompressed_length)
{
        return uncompressed_length ? HF_PACK_ENTRY_COMPRESSED : HF_PACK_ENTRY_PLAIN;
}

/*
 * Parses a decrypted header of n bytes. The blobs' offsets are derived from their order;
 * *ret_data_len receives the sum of blob lengths. -EPROTO for an unknown type byte or a
 * truncated entry. The array is the caller's to free.
 */
int hf_pack_parse_header(const uint8_t *plain, size_t n, HfPackBlob **ret, size_t *ret_n,
                         uint64_t *ret_data_len);

/*
 * Reads, decrypts and parses the header of a stored pack of the given size, and checks that
 * the blobs and the header exactly fill the file. Problems are -EPROTO (malformed) or
 * -EBADMSG (MAC), with a sentence in err when err is not NULL.
 */
int hf_pack_read_header(HfBackend *b, HfCipher *cipher, const char *name, uint64_t size,
                        HfPackBlob **ret, size_t *ret_n, HfBuf *err);
