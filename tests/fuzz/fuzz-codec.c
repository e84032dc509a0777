/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hf_codec_open_file, hf_codec_open and hf_codec_open_inplace behind the MAC. A fuzzer cannot forge a MAC, but anyone
 * holding the vault key (every client, every password holder) can seal whatever plaintext they
 * like, so the decoding behind the MAC (v1/v2 file framing, zstd frames, declared lengths) is
 * what needs fuzzing. The target seals the input with a fixed key and a fixed IV, then opens it.
 *
 * Input: byte 0 selects the mode, the rest is the plaintext.
 *   bits 0-1  0: open_file v1   1: open_file v2   2: open with the uncompressed length taken
 *             from the next 4 bytes (LE32)   3: open with length 0 (stored as is)
 *   bits 2-3  the size ceiling for open_file: 1 MiB, 64, 4096, 0
 *   bit 4     flip one byte of the sealed object (the MAC must catch it)
 *   bit 5     the output buffer already holds a few bytes (functions append)
 * Modes 2 and 3 also open a copy with hf_codec_open_inplace (restore's and check's path),
 * which must give the same result, byte for byte.
 */
#include <string.h>

#include "../../src/repo/codec.h"
#include "fuzz.h"

static HfCodec *codec;
static HfCipher *cipher;

static void setup(void)
{
        HfKey key;

        if (codec)
                return;
        for (size_t i = 0; i < sizeof(key.encrypt); i++)
                key.encrypt[i] = (uint8_t)(i + 1);
        for (size_t i = 0; i < sizeof(key.mac_k); i++) {
                key.mac_k[i] = (uint8_t)(0x40 + i);
                key.mac_r[i] = (uint8_t)(0x80 + i);
        }
        if (hf_codec_new(&key, HF_COMPRESSION_AUTO, &codec) < 0 || hf_cipher_new(&key, &cipher) < 0)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const uint8_t iv[HF_CRYPTO_IV_LEN] = { 0x68, 0x6f, 0x6c, 0x64, 0x66, 0x61,
                                                      0x73, 0x74, 0x66, 0x75, 0x7a, 0x7a,
                                                      0x69, 0x76, 0x21, 0x01 };
        static const size_t maxes[4] = { 1u << 20, 64, 4096, 0 };
        _cleanup_buf_ HfBuf out = HF_BUF_INIT(64u << 20);
        _cleanup_free_ uint8_t *enc = NULL;
        uint32_t ulen = 0;
        size_t n, prefix = 0, max;
        uint8_t mode;
        int r;

        setup();
        if (size < 1)
                return 0;
        mode = data[0];
        data++;
        size--;
        if ((mode & 3) == 2) {
                if (size < 4)
                        return 0;
                ulen = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
                       (uint32_t)data[3] << 24;
                data += 4;
                size -= 4;
                /* Keep allocations for declared lengths fuzzer-sized; beyond the limit stays. */
                if (ulen > (16u << 20) && ulen <= HF_BLOB_MAX_PLAIN)
                        ulen = 16u << 20;
        }
        max = maxes[(mode >> 2) & 3];

        n = size + HF_CRYPTO_OVERHEAD;
        enc = malloc(n);
        if (!enc)
                return 0;
        if (hf_cipher_encrypt_iv(cipher, iv, data, size, enc) < 0)
                abort();
        if (mode & 0x10)
                enc[(size_t)mode * 7 % n] ^= 0x20;
        if (mode & 0x20) {
                FUZZ_CHECK(hf_buf_append(&out, "pre", 3) == 0);
                prefix = 3;
        }

        switch (mode & 3) {
        case 0:
        case 1:
                r = hf_codec_open_file(codec, (mode & 3) + 1, enc, n, max, &out);
                if (mode & 0x10) {
                        FUZZ_CHECK(r == -EBADMSG);
                        break;
                }
                if (r >= 0) {
                        FUZZ_CHECK(out.len - prefix <= max);
                        /* v1 files are raw JSON: handed on byte for byte. */
                        if (size && (data[0] == '{' || data[0] == '['))
                                FUZZ_CHECK(out.len - prefix == size &&
                                           memcmp(out.data + prefix, data, size) == 0);
                        else
                                FUZZ_CHECK((mode & 3) == 1 && size && data[0] == 0x02);
                }
                break;
        case 2:
        case 3:
                r = hf_codec_open(codec, enc, n, ulen, &out);
                if (mode & 0x10) {
                        FUZZ_CHECK(r == -EBADMSG || (r == -EPROTO && ulen > HF_BLOB_MAX_PLAIN));
                        break;
                }
                if (r >= 0 && ulen)
                        FUZZ_CHECK(out.len - prefix == ulen);
                else if (r >= 0)
                        FUZZ_CHECK(out.len - prefix == size &&
                                   (size == 0 || memcmp(out.data + prefix, data, size) == 0));
                else if (ulen == 0)
                        abort(); /* a stored blob with a good MAC always opens */
                break;
        default:
                abort();
        }
        if ((mode & 3) >= 2) {
                _cleanup_buf_ HfBuf out2 = HF_BUF_INIT(64u << 20);
                _cleanup_free_ uint8_t *copy = malloc(n);
                int r2;

                /* A copy of enc as it is here: damaged too when bit 4 flipped a byte. */
                FUZZ_CHECK(copy != NULL);
                memcpy(copy, enc, n);
                if (prefix)
                        FUZZ_CHECK(hf_buf_append(&out2, "pre", 3) == 0);
                r2 = hf_codec_open_inplace(codec, copy, n, ulen, &out2);
                FUZZ_CHECK(r2 == r);
                if (r >= 0)
                        FUZZ_CHECK(out2.len == out.len &&
                                   memcmp(out2.data, out.data, out.len) == 0 &&
                                   out2.data[out2.len] == 0);
                else
                        FUZZ_CHECK(out2.len == prefix);
        }
        FUZZ_CHECK(out.len >= prefix);
        /* Success leaves a NUL-terminated result (the buffer's contract). */
        FUZZ_CHECK(r < 0 || out.data[out.len] == 0);
        return 0;
}
