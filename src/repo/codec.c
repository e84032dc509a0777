/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "codec.h"

#include <string.h>
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_createCCtx_advanced: experimental API, exported */
#include <zstd.h>

#include "../base/log.h"

/*
 * zstd sizes its workspace to each input: after 128 calls with a workspace three times too
 * large (small blobs) it frees it, and the next large blob gets a new one. Fresh memory is
 * paged in by faults, and in a backup of dataset A three in four page faults were zstd's: its
 * memset of a fresh workspace and its first writes into one. The compressor's allocations go
 * through Spare instead, which keeps the block zstd last freed and hands it back for any
 * request that fits.
 */
typedef struct Spare {
        uint8_t *block; /* with its capacity in the first SPARE_HEAD bytes */
        size_t fresh;   /* blocks taken from malloc */
} Spare;

#define SPARE_HEAD 64 /* a multiple of 16: blocks keep malloc's alignment */

struct HfCodec {
        HfCipher *cipher;
        Spare spare;
        ZSTD_CCtx *cctx;
        ZSTD_CCtx *probe; /* level 1, for the incompressibility probe */
        ZSTD_DCtx *dctx;
        HfBuf scratch;
        HfBuf raw;
        int level;
};

const char *hf_blob_type_name(HfBlobType t)
{
        return t == HF_BLOB_TREE ? "tree" : "data";
}

int hf_compression_from_string(const char *s, HfCompression *ret)
{
        if (strcmp(s, "auto") == 0)
                *ret = HF_COMPRESSION_AUTO;
        else if (strcmp(s, "off") == 0)
                *ret = HF_COMPRESSION_OFF;
        else if (strcmp(s, "max") == 0)
                *ret = HF_COMPRESSION_MAX;
        else if (strcmp(s, "fastest") == 0)
                *ret = HF_COMPRESSION_FASTEST;
        else
                return -EINVAL;
        return 0;
}

static size_t spare_capacity(const uint8_t *block)
{
        size_t cap;

        memcpy(&cap, block, sizeof(cap));
        return cap;
}

static void *spare_alloc(void *opaque, size_t size)
{
        Spare *sp = opaque;
        uint8_t *b = sp->block;

        if (b && spare_capacity(b) >= size) {
                sp->block = NULL;
                return b + SPARE_HEAD;
        }
        if (size > SIZE_MAX - SPARE_HEAD)
                return NULL;
        b = malloc(size + SPARE_HEAD);
        if (!b)
                return NULL;
        sp->fresh++;
        memcpy(b, &size, sizeof(size));
        return b + SPARE_HEAD;
}

static void spare_free(void *opaque, void *address)
{
        Spare *sp = opaque;
        uint8_t *b = address ? (uint8_t *)address - SPARE_HEAD : NULL;

        if (!b)
                return;
        if (sp->block && spare_capacity(sp->block) >= spare_capacity(b)) {
                free(b);
                return;
        }
        free(sp->block);
        sp->block = b;
}

#define AUTO_LEVEL 2

static int level_of(HfCompression c)
{
        switch (c) {
        case HF_COMPRESSION_OFF:
                return 0;
        case HF_COMPRESSION_MAX:
                return 19;
        case HF_COMPRESSION_FASTEST:
                return 1;
        case HF_COMPRESSION_AUTO:
        default:
                /*
                 * restic's "auto" is its Go zstd at the default speed. libzstd's level 2 writes
                 * about as small a vault (bench/vault.sh's dataset A: 2.5 % larger than at
                 * level 3, 1.1 % larger than restic's) in 25 % less compression time, and
                 * decompresses faster: see docs/PERFORMANCE.md.
                 */
                return AUTO_LEVEL;
        }
}

int hf_codec_new(const HfKey *key, HfCompression compression, HfCodec **ret)
{
        _cleanup_(hf_codec_freep) HfCodec *c = calloc(1, sizeof(*c));
        int r;

        if (!c)
                return -ENOMEM;
        r = hf_cipher_new(key, &c->cipher);
        if (r < 0)
                return r;
        c->cctx = ZSTD_createCCtx_advanced((ZSTD_customMem){
                .customAlloc = spare_alloc, .customFree = spare_free, .opaque = &c->spare });
        c->probe = ZSTD_createCCtx();
        c->dctx = ZSTD_createDCtx();
        if (!c->cctx || !c->dctx || !c->probe)
                return -ENOMEM;
        c->level = level_of(compression);
        /* Even with compression off, tree blobs and files are compressed, as restic does. */
        if (ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_compressionLevel,
                                                c->level ? c->level : AUTO_LEVEL)) ||
            ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_checksumFlag, 0)) ||
            ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_contentSizeFlag, 1)))
                return -EIO;
        hf_buf_init(&c->scratch, HF_BLOB_MAX_PLAIN + 1024);
        hf_buf_init(&c->raw, HF_BLOB_MAX_PLAIN + 1024);
        *ret = TAKE_PTR(c);
        return 0;
}

HfCodec *hf_codec_free(HfCodec *c)
{
        if (!c)
                return NULL;
        hf_cipher_free(c->cipher);
        ZSTD_freeCCtx(c->cctx);
        free(c->spare.block);
        ZSTD_freeCCtx(c->probe);
        ZSTD_freeDCtx(c->dctx);
        hf_buf_free(&c->scratch);
        hf_buf_free(&c->raw);
        free(c);
        return NULL;
}

#define PROBE_MIN (256u * 1024)
#define PROBE_WINDOW (8u * 1024)
#define PROBE_WINDOWS 4

/*
 * Cheap test for data that will not compress (media, archives, ciphertext): level-1 zstd on
 * four 8 KiB windows spread over the blob. Only when none of them shrinks by 3 % is the blob
 * stored as is, saving a full compression pass that would gain nothing.
 */
static bool looks_incompressible(HfCodec *c, const uint8_t *p, size_t n)
{
        uint8_t out[PROBE_WINDOW + 512];
        size_t total = 0;

        if (n < PROBE_MIN)
                return false;
        for (unsigned i = 0; i < PROBE_WINDOWS; i++) {
                size_t off = (n - PROBE_WINDOW) / (PROBE_WINDOWS - 1) * i;
                size_t k = ZSTD_compressCCtx(c->probe, out, sizeof(out), p + off, PROBE_WINDOW, 1);
                if (ZSTD_isError(k) || k < PROBE_WINDOW * 97 / 100)
                        return false;
                total += k;
        }
        return total >= PROBE_WINDOW * PROBE_WINDOWS * 97 / 100;
}

int hf_codec_seal(HfCodec *c, const void *plain, size_t n, bool compress, HfBuf *out,
                  uint32_t *ret_ulen)
{
        size_t bound = compress && n > 0 ? ZSTD_compressBound(n) : n;
        int r;

        if (n > HF_BLOB_MAX_PLAIN)
                return -E2BIG;
        if (compress && looks_incompressible(c, plain, n)) {
                compress = false;
                bound = n;
        }
        hf_buf_reset(out);
        r = hf_buf_reserve(out, MAX(bound, n) + HF_CRYPTO_OVERHEAD);
        if (r < 0)
                return r;
        /*
         * Compress straight to where the ciphertext goes and encrypt it there in place, so a
         * worker needs one output buffer, not two. A zero-length blob is never marked
         * compressed (restic reads uncompressed_length 0 as "not compressed").
         */
        if (compress && n > 0) {
                size_t k = ZSTD_compress2(c->cctx, out->data + HF_CRYPTO_IV_LEN, bound, plain, n);
                if (ZSTD_isError(k))
                        return -EIO;
                if (k < n) {
                        r = hf_cipher_encrypt(c->cipher, out->data + HF_CRYPTO_IV_LEN, k,
                                              out->data);
                        if (r < 0)
                                return r;
                        out->len = k + HF_CRYPTO_OVERHEAD;
                        *ret_ulen = (uint32_t)n;
                        return 0;
                }
        }
        r = hf_cipher_encrypt(c->cipher, plain, n, out->data);
        if (r < 0)
                return r;
        out->len = n + HF_CRYPTO_OVERHEAD;
        *ret_ulen = 0;
        return 0;
}

HfBuf *hf_codec_raw(HfCodec *c)
{
        return &c->raw;
}

size_t hf_codec_fresh_allocs(const HfCodec *c)
{
        return c->spare.fresh;
}

/*
 * Decompresses the zstd frames z (n bytes) that hold exactly size bytes, appending them to out
 * with the codec's context. -EPROTO (out as it was) when they do not decode to size bytes.
 */
static int decode_into(HfCodec *c, const void *z, size_t n, size_t size, HfBuf *out)
{
        size_t k;
        int r = hf_buf_reserve(out, size);

        if (r < 0)
                return r;
        k = ZSTD_decompressDCtx(c->dctx, out->data + out->len, size, z, n);
        if (ZSTD_isError(k) || k != size) {
                out->data[out->len] = 0; /* drop what a failed decode left */
                return -EPROTO;
        }
        out->len += k;
        out->data[out->len] = 0;
        return 0;
}

int hf_codec_open_inplace(HfCodec *c, uint8_t *enc, size_t n, uint32_t ulen, HfBuf *out)
{
        size_t plain;
        int r;

        if (n < HF_CRYPTO_OVERHEAD)
                return -EPROTO;
        if (ulen > HF_BLOB_MAX_PLAIN)
                return -EPROTO;
        /* Stored as is: decrypted straight into out, one pass over the bytes. */
        if (ulen == 0)
                return hf_codec_decrypt(c, enc, n, out);
        plain = n - HF_CRYPTO_OVERHEAD;
        /* Decrypted where the ciphertext lies (nothing moved), decompressed from there. */
        r = hf_cipher_decrypt(c->cipher, enc, n, enc + HF_CRYPTO_IV_LEN);
        if (r < 0)
                return r;
        return decode_into(c, enc + HF_CRYPTO_IV_LEN, plain, ulen, out);
}

int hf_codec_decrypt(HfCodec *c, const void *enc, size_t n, HfBuf *out)
{
        int r;

        if (n < HF_CRYPTO_OVERHEAD)
                return -EPROTO;
        r = hf_buf_reserve(out, n);
        if (r < 0)
                return r;
        r = hf_cipher_decrypt(c->cipher, enc, n, out->data + out->len);
        if (r < 0)
                return r;
        out->len += n - HF_CRYPTO_OVERHEAD;
        out->data[out->len] = 0;
        return 0;
}

int hf_codec_open(HfCodec *c, const void *enc, size_t n, uint32_t ulen, HfBuf *out)
{
        int r;

        if (ulen == 0)
                return hf_codec_decrypt(c, enc, n, out);
        if (ulen > HF_BLOB_MAX_PLAIN)
                return -EPROTO;
        hf_buf_reset(&c->scratch);
        r = hf_codec_decrypt(c, enc, n, &c->scratch);
        if (r < 0)
                return r;
        /* Handles concatenated frames and frames without a content size. */
        return decode_into(c, c->scratch.data, c->scratch.len, ulen, out);
}

int hf_zstd_decompress_stream(const void *src, size_t n, size_t max, HfBuf *out)
{
        ZSTD_DStream *ds = ZSTD_createDStream();
        ZSTD_inBuffer in = { src, n, 0 };
        size_t start = out->len;
        uint8_t tmp[64 * 1024];
        int r = 0;

        if (!ds)
                return -ENOMEM;
        /* Through a bounce buffer, so both max and out's own ceiling are honoured exactly. */
        for (;;) {
                ZSTD_outBuffer ob = { tmp, sizeof(tmp), 0 };
                size_t k = ZSTD_decompressStream(ds, &ob, &in);

                if (ZSTD_isError(k)) {
                        r = -EPROTO;
                        break;
                }
                if (ob.pos > max - MIN(max, out->len - start)) {
                        r = -E2BIG;
                        break;
                }
                r = hf_buf_append(out, tmp, ob.pos);
                if (r < 0)
                        break;
                if (k == 0 && in.pos == in.size)
                        break; /* last frame complete */
                if (in.pos == in.size && ob.pos < ob.size) {
                        r = -EPROTO; /* input ended inside a frame */
                        break;
                }
        }
        ZSTD_freeDStream(ds);
        if (r < 0) {
                out->len = start;
                if (out->data)
                        out->data[start] = 0;
        }
        return r;
}

int hf_codec_seal_file(HfCodec *c, int version, const void *json, size_t n, HfBuf *out)
{
        const void *src = json;
        size_t srclen = n;
        int r;

        if (version >= 2) {
                size_t bound = ZSTD_compressBound(n) + 1, k;
                hf_buf_reset(&c->scratch);
                r = hf_buf_reserve(&c->scratch, bound);
                if (r < 0)
                        return r;
                c->scratch.data[0] = 0x02;
                k = ZSTD_compress2(c->cctx, c->scratch.data + 1, bound - 1, json, n);
                if (ZSTD_isError(k))
                        return -EIO;
                c->scratch.len = k + 1;
                src = c->scratch.data;
                srclen = c->scratch.len;
        }
        hf_buf_reset(out);
        r = hf_buf_reserve(out, srclen + HF_CRYPTO_OVERHEAD);
        if (r < 0)
                return r;
        r = hf_cipher_encrypt(c->cipher, src, srclen, out->data);
        if (r < 0)
                return r;
        out->len = srclen + HF_CRYPTO_OVERHEAD;
        return 0;
}

/*
 * The zstd content of a file. One frame that gives its size (restic's files and ours) is
 * decompressed in one call straight into out; anything else (several frames, no size, or a
 * size more than 128 times what is there, which only a crafted file claims) is streamed, which
 * grows out only as far as the content really goes.
 */
static int unpack_file(HfCodec *c, const uint8_t *z, size_t n, size_t max, HfBuf *out)
{
        unsigned long long size = ZSTD_getFrameContentSize(z, n);

        if (size == ZSTD_CONTENTSIZE_UNKNOWN || size == ZSTD_CONTENTSIZE_ERROR || size > max ||
            size / 128 > n || ZSTD_findFrameCompressedSize(z, n) != n)
                return hf_zstd_decompress_stream(z, n, max, out);
        return decode_into(c, z, n, (size_t)size, out);
}

int hf_codec_open_file(HfCodec *c, int version, const void *enc, size_t n, size_t max, HfBuf *out)
{
        int r;

        hf_buf_reset(&c->scratch);
        r = hf_codec_decrypt(c, enc, n, &c->scratch);
        if (r < 0)
                return r;
        if (c->scratch.len == 0)
                return -EPROTO;
        switch (c->scratch.data[0]) {
        case '{':
        case '[':
                if (c->scratch.len > max)
                        return -E2BIG;
                return hf_buf_append(out, c->scratch.data, c->scratch.len);
        case 0x02:
                if (version < 2)
                        return -EPROTO;
                return unpack_file(c, c->scratch.data + 1, c->scratch.len - 1, max, out);
        default:
                return -EPROTO;
        }
}
