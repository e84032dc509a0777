/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Blob and file payload coding: optional zstd compression followed by restic's object
 * encryption (restic-format.md §2.1, §5). A codec keeps its cipher and zstd contexts and one
 * scratch buffer, so the hot path allocates nothing per blob. One codec per thread.
 */

#include "../base/buf.h"
#include "../crypto/crypto.h"

typedef enum HfBlobType {
        HF_BLOB_DATA = 0,
        HF_BLOB_TREE = 1,
} HfBlobType;

const char *hf_blob_type_name(HfBlobType t); /* "data" / "tree" */

typedef enum HfCompression {
        HF_COMPRESSION_AUTO,    /* zstd level 2: restic's "auto" size, faster */
        HF_COMPRESSION_OFF,     /* data blobs stored as they are */
        HF_COMPRESSION_MAX,     /* zstd level 19 */
        HF_COMPRESSION_FASTEST, /* zstd level 1 */
} HfCompression;

int hf_compression_from_string(const char *s, HfCompression *ret);

/* The largest plaintext a blob may decode to; protects memory against hostile headers. */
#define HF_BLOB_MAX_PLAIN (512u * 1024 * 1024)

typedef struct HfCodec HfCodec;

int hf_codec_new(const HfKey *key, HfCompression compression, HfCodec **ret);
HfCodec *hf_codec_free(HfCodec *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(HfCodec *, hf_codec_free);

/*
 * Encodes plain (n bytes) into out (reset first): zstd when compress is true and it makes the
 * blob smaller, then encryption. *ret_ulen is n when the blob was compressed, 0 when stored
 * as is (restic's "uncompressed_length" convention).
 */
int hf_codec_seal(HfCodec *c, const void *plain, size_t n, bool compress, HfBuf *out,
                  uint32_t *ret_ulen);

/*
 * Decodes an encrypted blob (n bytes) into out (appended): verifies the MAC (-EBADMSG),
 * decrypts, and when ulen is not 0 decompresses to exactly ulen bytes (-EPROTO otherwise).
 */
int hf_codec_open(HfCodec *c, const void *enc, size_t n, uint32_t ulen, HfBuf *out);

/*
 * Like hf_codec_open, but with no intermediate copy: a blob stored as is is decrypted straight
 * into out, a compressed one in place in enc (which is clobbered) and decompressed from there
 * into out. enc and out must not overlap. For the hot read paths (restore, check).
 */
int hf_codec_open_inplace(HfCodec *c, uint8_t *enc, size_t n, uint32_t ulen, HfBuf *out);
/* A buffer owned by the codec for raw (encrypted) reads, reused across calls. */
HfBuf *hf_codec_raw(HfCodec *c);
/* How many times the compressor's context took fresh memory (for the tests). */
size_t hf_codec_fresh_allocs(const HfCodec *c);

/* Decrypts only (no decompression) into out (appended). */
int hf_codec_decrypt(HfCodec *c, const void *enc, size_t n, HfBuf *out);

/*
 * Unpacked files (index, snapshot, lock): v2 stores 0x02 || zstd(json), v1 raw JSON.
 * hf_codec_seal_file writes the encrypted file into out; hf_codec_open_file decrypts and
 * decodes either form (raw JSON starting with '{' or '[', or 0x02 + zstd when version >= 2).
 */
int hf_codec_seal_file(HfCodec *c, int version, const void *json, size_t n, HfBuf *out);
int hf_codec_open_file(HfCodec *c, int version, const void *enc, size_t n, size_t max, HfBuf *out);

/* zstd decompression of a whole stream of unknown size into out, at most max bytes. */
int hf_zstd_decompress_stream(const void *src, size_t n, size_t max, HfBuf *out);
