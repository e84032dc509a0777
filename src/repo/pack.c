/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "pack.h"

#include <string.h>

#include "../base/log.h"

struct HfPacker {
        HfBuf data;
        HfPackBlob *blobs;
        size_t n_blobs, cap_blobs;
        size_t header_plain;
        HfBuf header;
};

int hf_packer_new(HfPacker **ret)
{
        HfPacker *p = calloc(1, sizeof(*p));

        if (!p)
                return -ENOMEM;
        hf_buf_init(&p->data, (size_t)HF_PACK_SIZE_MAX * 2 + HF_PACK_HEADER_MAX);
        hf_buf_init(&p->header, HF_PACK_HEADER_MAX);
        *ret = p;
        return 0;
}

HfPacker *hf_packer_free(HfPacker *p)
{
        if (!p)
                return NULL;
        hf_buf_free(&p->data);
        hf_buf_free(&p->header);
        free(p->blobs);
        free(p);
        return NULL;
}

void hf_packer_reset(HfPacker *p)
{
        hf_buf_reset(&p->data);
        p->n_blobs = 0;
        p->header_plain = 0;
}

int hf_packer_add(HfPacker *p, HfBlobType type, const HfId *id, const void *enc, size_t len,
                  uint32_t uncompressed_length)
{
        size_t entry = uncompressed_length ? HF_PACK_ENTRY_COMPRESSED : HF_PACK_ENTRY_PLAIN;
        int r;

        if (len < HF_CRYPTO_OVERHEAD || len > UINT32_MAX || p->data.len + len > UINT32_MAX)
                return -EINVAL;
        if (p->header_plain + entry + HF_CRYPTO_OVERHEAD > HF_PACK_HEADER_MAX)
                return -E2BIG;
        if (p->n_blobs == p->cap_blobs) {
                size_t ncap = p->cap_blobs ? p->cap_blobs * 2 : 256;
                HfPackBlob *nb = realloc(p->blobs, ncap * sizeof(*nb));
                if (!nb)
                        return -ENOMEM;
                p->blobs = nb;
                p->cap_blobs = ncap;
        }
        p->blobs[p->n_blobs] = (HfPackBlob){
                .id = *id,
                .type = (uint8_t)type,
                .offset = (uint32_t)p->data.len,
                .length = (uint32_t)len,
                .uncompressed_length = uncompressed_length,
        };
        r = hf_buf_append(&p->data, enc, len);
        if (r < 0)
                return r;
        p->n_blobs++;
        p->header_plain += entry;
        return 0;
}

size_t hf_packer_size(const HfPacker *p)
{
        return p->data.len;
}

size_t hf_packer_count(const HfPacker *p)
{
        return p->n_blobs;
}

const HfPackBlob *hf_packer_blobs(const HfPacker *p)
{
        return p->blobs;
}

static void put_le32(uint8_t *o, uint32_t v)
{
        o[0] = (uint8_t)v;
        o[1] = (uint8_t)(v >> 8);
        o[2] = (uint8_t)(v >> 16);
        o[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *i)
{
        return (uint32_t)i[0] | (uint32_t)i[1] << 8 | (uint32_t)i[2] << 16 | (uint32_t)i[3] << 24;
}

int hf_pack_encode_header(const HfPackBlob *blobs, size_t n, HfCipher *cipher, HfBuf *out)
{
        _cleanup_buf_ HfBuf header = HF_BUF_INIT(HF_PACK_HEADER_MAX);
        size_t hlen;
        int r;

        for (size_t i = 0; i < n; i++) {
                const HfPackBlob *b = &blobs[i];
                uint8_t e[HF_PACK_ENTRY_COMPRESSED];

                if (b->uncompressed_length) {
                        e[0] = (uint8_t)(b->type == HF_BLOB_TREE ? 3 : 2);
                        put_le32(e + 1, b->length);
                        put_le32(e + 5, b->uncompressed_length);
                        memcpy(e + 9, b->id.b, 32);
                } else {
                        e[0] = (uint8_t)(b->type == HF_BLOB_TREE ? 1 : 0);
                        put_le32(e + 1, b->length);
                        memcpy(e + 5, b->id.b, 32);
                }
                r = hf_buf_append(&header, e, hf_pack_entry_size(b->uncompressed_length));
                if (r < 0)
                        return r;
        }
        hlen = header.len + HF_CRYPTO_OVERHEAD;
        if (hlen > HF_PACK_HEADER_MAX)
                return -E2BIG;
        r = hf_buf_reserve(out, hlen + 4);
        if (r < 0)
                return r;
        r = hf_cipher_encrypt(cipher, header.data ? (const void *)header.data : "", header.len,
                              out->data + out->len);
        if (r < 0)
                return r;
        out->len += hlen;
        put_le32(out->data + out->len, (uint32_t)hlen);
        out->len += 4;
        out->data[out->len] = 0;
        return 0;
}

int hf_packer_finish(HfPacker *p, HfCipher *cipher, HfId *ret_id)
{
        int r = hf_pack_encode_header(p->blobs, p->n_blobs, cipher, &p->data);

        if (r < 0)
                return r;
        hf_sha256(p->data.data, p->data.len, ret_id);
        return 0;
}

const uint8_t *hf_packer_data(const HfPacker *p, size_t *ret_len)
{
        *ret_len = p->data.len;
        return p->data.data;
}

int hf_pack_parse_header(const uint8_t *plain, size_t n, HfPackBlob **ret, size_t *ret_n,
                         uint64_t *ret_data_len)
{
        _cleanup_free_ HfPackBlob *v = NULL;
        size_t count = 0, cap = 0, pos = 0;
        uint64_t offset = 0;

        while (pos < n) {
                uint8_t t = plain[pos];
                HfPackBlob b = { 0 };
                size_t need;

                if (t > 3)
                        return -EPROTO;
                need = t >= 2 ? HF_PACK_ENTRY_COMPRESSED : HF_PACK_ENTRY_PLAIN;
                if (n - pos < need)
                        return -EPROTO;
                b.type = (uint8_t)(t & 1);
                b.length = get_le32(plain + pos + 1);
                if (t >= 2) {
                        b.uncompressed_length = get_le32(plain + pos + 5);
                        memcpy(b.id.b, plain + pos + 9, 32);
                } else
                        memcpy(b.id.b, plain + pos + 5, 32);
                if (b.length < HF_CRYPTO_OVERHEAD || offset + b.length > UINT32_MAX)
                        return -EPROTO;
                b.offset = (uint32_t)offset;
                offset += b.length;
                if (count == cap) {
                        size_t ncap = cap ? cap * 2 : 64;
                        HfPackBlob *nv = realloc(v, ncap * sizeof(*nv));
                        if (!nv)
                                return -ENOMEM;
                        v = nv;
                        cap = ncap;
                }
                v[count++] = b;
                pos += need;
        }
        *ret = TAKE_PTR(v);
        *ret_n = count;
        if (ret_data_len)
                *ret_data_len = offset;
        return 0;
}

static int header_error(HfBuf *err, int r, const char *msg)
{
        if (err) {
                hf_buf_reset(err);
                (void)hf_buf_puts(err, msg);
        }
        return r;
}

int hf_pack_read_header(HfBackend *b, HfCipher *cipher, const char *name, uint64_t size,
                        HfPackBlob **ret, size_t *ret_n, HfBuf *err)
{
        _cleanup_buf_ HfBuf enc = HF_BUF_INIT(HF_PACK_HEADER_MAX + 64);
        _cleanup_free_ HfPackBlob *blobs = NULL;
        uint8_t tail[4];
        uint64_t data_len;
        uint32_t hlen;
        size_t n;
        int r;

        if (size < 4 + HF_CRYPTO_OVERHEAD)
                return header_error(err, -EPROTO, "pack file is too short to hold a header");
        r = hf_backend_read_at(b, HF_FILE_PACK, name, size - 4, 4, tail);
        if (r < 0)
                return header_error(err, r, "cannot read the pack's header length");
        hlen = get_le32(tail);
        if (hlen < HF_CRYPTO_OVERHEAD || hlen > size - 4 || hlen > HF_PACK_HEADER_MAX)
                return header_error(err, -EPROTO, "pack header length is out of range");
        r = hf_buf_reserve(&enc, hlen);
        if (r < 0)
                return r;
        r = hf_backend_read_at(b, HF_FILE_PACK, name, size - 4 - hlen, hlen, enc.data);
        if (r < 0)
                return header_error(err, r, "cannot read the pack header");
        r = hf_cipher_decrypt(cipher, enc.data, hlen, enc.data);
        if (r < 0)
                return header_error(err, r,
                                    "pack header does not decrypt (damaged or not this vault's)");
        r = hf_pack_parse_header(enc.data, hlen - HF_CRYPTO_OVERHEAD, &blobs, &n, &data_len);
        if (r < 0)
                return header_error(err, r, "pack header is malformed");
        if (data_len + hlen + 4 != size)
                return header_error(err, -EPROTO,
                                    "pack header does not account for the whole file");
        *ret = TAKE_PTR(blobs);
        *ret_n = n;
        return 0;
}
