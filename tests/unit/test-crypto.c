/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../src/base/macro.h"
#include "../../src/base/util.h"
#include "../../src/crypto/crypto.h"

static void unhex(const char *s, uint8_t *out, size_t n)
{
        size_t got = 0;

        assert_int_equal(hf_hex_decode(s, strlen(s), out, n, &got), 0);
        assert_int_equal(got, n);
}

/* Poly1305-AES vectors from Bernstein's paper, as restic's crypto_int_test.go uses them. */
static const struct {
        const char *msg, *r, *k, *nonce, *tag;
} poly_vectors[] = {
        {
                "f3f6",
                "851fc40c3467ac0be05cc20404f3f700",
                "ec074c835580741701425b623235add6",
                "fb447350c4e868c52ac3275cf9d4327e",
                "f4c633c3044fc145f84f335cb81953de",
        },
        {
                "",
                "a0f3080000f46400d0c7e9076c834403",
                "75deaa25c09f208e1dc4ce6b5cad3fbf",
                "61ee09218d29b0aaed7e154a2c5509cc",
                "dd3fab2251f11ac759f0887129cc2ee7",
        },
        {
                "663cea190ffb83d89593f3f476b6bc24d7e679107ea26adb8caf6652d0656136",
                "48443d0bb0d21109c89a100b5ce2c208",
                "6acb5f61a7176dd320c5c1eb2edcdc74",
                "ae212a55399729595dea458bc621ff0e",
                "0ee1c16bb73f0f4fd19881753c01cdbe",
        },
        {
                "ab0812724a7f1e342742cbed374d94d136c6b8795d45b3819830f2c04491faf0"
                "990c62e48b8018b2c3e4a0fa3134cb67fa83e158c994d961c4cb21095c1bf9",
                "12976a08c4426d0ce8a82407c4f48207",
                "e1a5668a4d5b66a5f68cc5424ed5982d",
                "9ae831e743978d3a23527c7128149e3a",
                "5154ad0d2cb26e01274fc51148491f1b",
        },
};

static void test_poly1305_vectors(void **state)
{
        (void)state;
        for (size_t i = 0; i < ELEMENTSOF(poly_vectors); i++) {
                uint8_t msg[64], r[16], k[16], nonce[16], want[16], tag[16];
                size_t mlen = strlen(poly_vectors[i].msg) / 2;

                unhex(poly_vectors[i].msg, msg, mlen);
                unhex(poly_vectors[i].r, r, 16);
                unhex(poly_vectors[i].k, k, 16);
                unhex(poly_vectors[i].nonce, nonce, 16);
                unhex(poly_vectors[i].tag, want, 16);

                assert_int_equal(hf_poly1305_aes(k, r, nonce, msg, mlen, tag), 0);
                assert_memory_equal(tag, want, 16);

                /* One changed message byte or nonce bit must change the tag. */
                if (mlen > 0) {
                        msg[mlen - 1] ^= 1;
                        assert_int_equal(hf_poly1305_aes(k, r, nonce, msg, mlen, tag), 0);
                        assert_memory_not_equal(tag, want, 16);
                        msg[mlen - 1] ^= 1;
                }
                nonce[0] ^= 0x80;
                assert_int_equal(hf_poly1305_aes(k, r, nonce, msg, mlen, tag), 0);
                assert_memory_not_equal(tag, want, 16);
        }
}

/* restic >= 0.17 stores r unclamped: the bits clamping removes must not change the tag. */
static void test_poly1305_clamps_r(void **state)
{
        uint8_t k[16], r[16], nonce[16], msg[2], t1[16], t2[16];

        (void)state;
        unhex(poly_vectors[0].msg, msg, 2);
        unhex(poly_vectors[0].r, r, 16);
        unhex(poly_vectors[0].k, k, 16);
        unhex(poly_vectors[0].nonce, nonce, 16);
        assert_int_equal(hf_poly1305_aes(k, r, nonce, msg, 2, t1), 0);
        r[3] |= 0xf0;
        r[7] |= 0xf0;
        r[11] |= 0xf0;
        r[15] |= 0xf0;
        r[4] |= 0x03;
        r[8] |= 0x03;
        r[12] |= 0x03;
        assert_int_equal(hf_poly1305_aes(k, r, nonce, msg, 2, t2), 0);
        assert_memory_equal(t1, t2, 16);
        /* A bit clamping keeps does matter. */
        r[0] ^= 1;
        assert_int_equal(hf_poly1305_aes(k, r, nonce, msg, 2, t2), 0);
        assert_memory_not_equal(t1, t2, 16);
}

static const char obj_encrypt[] =
        "303e8687b1d7db18421bdc6bb8588ccadac4d59ee87b8ff70c44e635790cafef";
static const char obj_k[] = "ef4d8824cb80b2bcc5fbff8a9b12a42c";
static const char obj_r[] = "cc8d4b948ee0ebfe1d415de921d10353";
static const char obj_hex[] = "69fb41c62d12def4593bd71757138606338f621aeaeb39da0fe4f99233f8037a54"
                              "ea63338a813bcf3f75d8c3cc75dddf8750";
static const char obj_plain[] = "Dies ist ein Test!";
#define OBJ_LEN 50

static void vector_key(HfKey *k)
{
        unhex(obj_encrypt, k->encrypt, 32);
        unhex(obj_k, k->mac_k, 16);
        unhex(obj_r, k->mac_r, 16);
}

static HfCipher *vector_cipher(void)
{
        HfCipher *c = NULL;
        HfKey k;

        vector_key(&k);
        assert_int_equal(hf_cipher_new(&k, &c), 0);
        assert_non_null(c);
        hf_key_wipe(&k);
        return c;
}

static void test_object_vector_decrypt(void **state)
{
        _cleanup_(hf_cipher_freep) HfCipher *c = vector_cipher();
        _cleanup_buf_ HfBuf b = HF_BUF_INIT(1024);
        uint8_t obj[OBJ_LEN], out[OBJ_LEN];
        HfKey k;

        (void)state;
        unhex(obj_hex, obj, sizeof(obj));
        assert_int_equal(hf_cipher_verify(c, obj, sizeof(obj)), 0);
        memset(out, 0xaa, sizeof(out));
        assert_int_equal(hf_cipher_decrypt(c, obj, sizeof(obj), out), 0);
        assert_memory_equal(out, obj_plain, strlen(obj_plain));
        /* Nothing written past the plaintext. */
        for (size_t i = strlen(obj_plain); i < sizeof(out); i++)
                assert_int_equal(out[i], 0xaa);

        vector_key(&k);
        assert_int_equal(hf_decrypt_buf(&k, obj, sizeof(obj), &b), 0);
        assert_int_equal(b.len, strlen(obj_plain));
        assert_string_equal((char *)b.data, obj_plain);
}

static void test_object_vector_encrypt_iv(void **state)
{
        _cleanup_(hf_cipher_freep) HfCipher *c = vector_cipher();
        uint8_t obj[OBJ_LEN], out[OBJ_LEN], junk[17 + HF_CRYPTO_OVERHEAD];
        static const uint8_t zero_iv[16];

        (void)state;
        unhex(obj_hex, obj, sizeof(obj));
        /* Leave the CTR stream mid-block first: the next object must start afresh. */
        assert_int_equal(hf_cipher_encrypt(c, "0123456789abcdefg", 17, junk), 0);
        assert_int_equal(hf_cipher_encrypt_iv(c, obj, obj_plain, strlen(obj_plain), out), 0);
        assert_memory_equal(out, obj, sizeof(obj));
        /* Twice in a row gives the same bytes: no state leaks between objects. */
        memset(out, 0, sizeof(out));
        assert_int_equal(hf_cipher_encrypt_iv(c, obj, obj_plain, strlen(obj_plain), out), 0);
        assert_memory_equal(out, obj, sizeof(obj));

        assert_int_equal(hf_cipher_encrypt_iv(c, zero_iv, obj_plain, strlen(obj_plain), out),
                         -EINVAL);
}

/* CTR must carry across the whole 128-bit counter, as Go's cipher.NewCTR does. */
static void test_ctr_counter_carry(void **state)
{
        _cleanup_(hf_cipher_freep) HfCipher *c = NULL;
        uint8_t iv[16], ctr[16], ks[64], plain[64], obj[64 + HF_CRYPTO_OVERHEAD];
        EVP_CIPHER_CTX *ecb;
        HfKey k;
        int outl;

        (void)state;
        assert_int_equal(hf_key_generate(&k), 0);
        assert_int_equal(hf_cipher_new(&k, &c), 0);
        memset(iv, 0, sizeof(iv));
        iv[0] = 0x01;
        memset(iv + 8, 0xff, 7);
        iv[15] = 0xfe; /* the second block carries through 64 bits into byte 7 */
        memset(plain, 0, sizeof(plain));
        assert_int_equal(hf_cipher_encrypt_iv(c, iv, plain, sizeof(plain), obj), 0);

        /* The keystream computed block by block with plain AES-256. */
        ecb = EVP_CIPHER_CTX_new();
        assert_non_null(ecb);
        assert_int_equal(EVP_EncryptInit_ex(ecb, EVP_aes_256_ecb(), NULL, k.encrypt, NULL), 1);
        assert_int_equal(EVP_CIPHER_CTX_set_padding(ecb, 0), 1);
        memcpy(ctr, iv, 16);
        for (size_t b = 0; b < 4; b++) {
                assert_int_equal(EVP_EncryptUpdate(ecb, ks + 16 * b, &outl, ctr, 16), 1);
                assert_int_equal(outl, 16);
                for (int i = 15; i >= 0 && ++ctr[i] == 0; i--)
                        ;
        }
        EVP_CIPHER_CTX_free(ecb);
        assert_int_equal(ctr[7], 0x01); /* the carry did cross into the upper half */
        assert_memory_equal(obj + HF_CRYPTO_IV_LEN, ks, sizeof(ks));
        hf_key_wipe(&k);
}

static void fill_random(uint8_t *p, size_t n)
{
        assert_int_equal(hf_random_bytes(p, n), 0);
}

static void test_round_trip_sizes(void **state)
{
        static const size_t sizes[] = { 0, 1, 15, 16, 17, 1000, (1 << 20) + 3 };
        _cleanup_(hf_cipher_freep) HfCipher *c = NULL;
        HfKey k;

        (void)state;
        assert_int_equal(hf_key_generate(&k), 0);
        assert_true(hf_key_valid(&k));
        assert_int_equal(hf_cipher_new(&k, &c), 0);
        for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                size_t n = sizes[i];
                _cleanup_free_ uint8_t *plain = malloc(n + 1);
                _cleanup_free_ uint8_t *obj = malloc(n + HF_CRYPTO_OVERHEAD);
                _cleanup_free_ uint8_t *obj2 = malloc(n + HF_CRYPTO_OVERHEAD);
                _cleanup_free_ uint8_t *back = malloc(n + 1);
                static const uint8_t zero_iv[16];

                assert_non_null(plain);
                assert_non_null(obj);
                assert_non_null(obj2);
                assert_non_null(back);
                fill_random(plain, n);
                assert_int_equal(hf_cipher_encrypt(c, plain, n, obj), 0);
                assert_memory_not_equal(obj, zero_iv, 16);
                if (n >= 16)
                        assert_memory_not_equal(obj + HF_CRYPTO_IV_LEN, plain, n);
                assert_int_equal(hf_cipher_verify(c, obj, n + HF_CRYPTO_OVERHEAD), 0);
                back[n] = 0x5a;
                assert_int_equal(hf_cipher_decrypt(c, obj, n + HF_CRYPTO_OVERHEAD, back), 0);
                if (n > 0)
                        assert_memory_equal(back, plain, n);
                assert_int_equal(back[n], 0x5a);

                /* A fresh IV per object: the same plaintext never encrypts the same way. */
                assert_int_equal(hf_cipher_encrypt(c, plain, n, obj2), 0);
                assert_memory_not_equal(obj, obj2, n + HF_CRYPTO_OVERHEAD);
        }
        hf_key_wipe(&k);
}

static void test_in_place_decrypt(void **state)
{
        static const size_t sizes[] = { 0, 1, 16, 33, 4096, (1 << 20) + 3 };
        _cleanup_(hf_cipher_freep) HfCipher *c = NULL;
        HfKey k;

        (void)state;
        assert_int_equal(hf_key_generate(&k), 0);
        assert_int_equal(hf_cipher_new(&k, &c), 0);
        for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                size_t n = sizes[i];
                _cleanup_free_ uint8_t *plain = malloc(n + 1);
                _cleanup_free_ uint8_t *buf = malloc(n + HF_CRYPTO_OVERHEAD);

                assert_non_null(plain);
                assert_non_null(buf);
                fill_random(plain, n);
                assert_int_equal(hf_cipher_encrypt(c, plain, n, buf), 0);
                assert_int_equal(hf_cipher_decrypt(c, buf, n + HF_CRYPTO_OVERHEAD, buf), 0);
                if (n > 0)
                        assert_memory_equal(buf, plain, n);
                /* In place where the ciphertext lies: the plaintext after the IV's 16 bytes. */
                assert_int_equal(hf_cipher_encrypt(c, plain, n, buf), 0);
                assert_int_equal(
                        hf_cipher_decrypt(c, buf, n + HF_CRYPTO_OVERHEAD, buf + HF_CRYPTO_IV_LEN),
                        0);
                if (n > 0)
                        assert_memory_equal(buf + HF_CRYPTO_IV_LEN, plain, n);
        }

        /* The vector in place too. */
        {
                _cleanup_(hf_cipher_freep) HfCipher *v = vector_cipher();
                uint8_t obj[OBJ_LEN];

                unhex(obj_hex, obj, sizeof(obj));
                assert_int_equal(hf_cipher_decrypt(v, obj, sizeof(obj), obj), 0);
                assert_memory_equal(obj, obj_plain, strlen(obj_plain));
        }
        hf_key_wipe(&k);
}

static void test_every_bit_flip(void **state)
{
        _cleanup_(hf_cipher_freep) HfCipher *c = vector_cipher();
        uint8_t obj[OBJ_LEN], out[OBJ_LEN];
        int flips = 0;

        (void)state;
        unhex(obj_hex, obj, sizeof(obj));
        for (size_t i = 0; i < sizeof(obj) * 8; i++) {
                obj[i / 8] ^= (uint8_t)(1u << (i % 8));
                memset(out, 0xcc, sizeof(out));
                assert_int_equal(hf_cipher_verify(c, obj, sizeof(obj)), -EBADMSG);
                assert_int_equal(hf_cipher_decrypt(c, obj, sizeof(obj), out), -EBADMSG);
                /* The MAC is checked first: nothing was decrypted into out. */
                for (size_t j = 0; j < sizeof(out); j++)
                        assert_int_equal(out[j], 0xcc);
                obj[i / 8] ^= (uint8_t)(1u << (i % 8));
                flips++;
        }
        assert_int_equal(flips, OBJ_LEN * 8);
        /* Restored, it verifies again (the loop really undid each flip). */
        assert_int_equal(hf_cipher_decrypt(c, obj, sizeof(obj), out), 0);
}

static void test_truncated(void **state)
{
        _cleanup_(hf_cipher_freep) HfCipher *c = vector_cipher();
        _cleanup_buf_ HfBuf b = HF_BUF_INIT(1024);
        uint8_t obj[OBJ_LEN + 1], out[OBJ_LEN + 1];
        HfKey k;

        (void)state;
        unhex(obj_hex, obj, OBJ_LEN);
        for (size_t n = 0; n < HF_CRYPTO_OVERHEAD; n++) {
                assert_int_equal(hf_cipher_decrypt(c, obj, n, out), -EINVAL);
                assert_int_equal(hf_cipher_verify(c, obj, n), -EINVAL);
        }
        /* Any length from 32 up that is not the real one fails the MAC. */
        for (size_t n = HF_CRYPTO_OVERHEAD; n < OBJ_LEN; n++)
                assert_int_equal(hf_cipher_decrypt(c, obj, n, out), -EBADMSG);
        obj[OBJ_LEN] = 0;
        assert_int_equal(hf_cipher_decrypt(c, obj, OBJ_LEN + 1, out), -EBADMSG);
        /* Dropping the IV still leaves >= 32 bytes: still a MAC failure, never a crash. */
        assert_int_equal(hf_cipher_decrypt(c, obj + 16, OBJ_LEN - 16, out), -EBADMSG);

        vector_key(&k);
        assert_int_equal(hf_decrypt_buf(&k, obj, 31, &b), -EINVAL);
        assert_int_equal(hf_decrypt_buf(&k, obj, OBJ_LEN - 1, &b), -EBADMSG);
        assert_int_equal(b.len, 0);
}

static void test_wrong_key(void **state)
{
        uint8_t obj[OBJ_LEN], out[OBJ_LEN];
        HfKey good, k;

        (void)state;
        unhex(obj_hex, obj, sizeof(obj));
        vector_key(&good);
        /* One bit off in any part of the key, or a different key altogether. */
        for (int part = 0; part < 4; part++) {
                _cleanup_(hf_cipher_freep) HfCipher *c = NULL;

                k = good;
                if (part == 0)
                        k.encrypt[5] ^= 1;
                else if (part == 1)
                        k.mac_k[0] ^= 1;
                else if (part == 2)
                        k.mac_r[0] ^= 1;
                else
                        assert_int_equal(hf_key_generate(&k), 0);
                assert_int_equal(hf_cipher_new(&k, &c), 0);
                /* A wrong encrypt key alone does not affect the MAC: the object still verifies. */
                if (part == 0) {
                        assert_int_equal(hf_cipher_decrypt(c, obj, sizeof(obj), out), 0);
                        assert_memory_not_equal(out, obj_plain, strlen(obj_plain));
                        continue;
                }
                assert_int_equal(hf_cipher_decrypt(c, obj, sizeof(obj), out), -EBADMSG);
        }
}

static void test_key_validity(void **state)
{
        _cleanup_(hf_cipher_freep) HfCipher *c = NULL;
        _cleanup_buf_ HfBuf b = HF_BUF_INIT(1024);
        HfKey k, k2;
        static const HfKey zero;

        (void)state;
        assert_false(hf_key_valid(&zero));
        assert_false(hf_key_valid(NULL));
        vector_key(&k);
        assert_true(hf_key_valid(&k));
        for (int part = 0; part < 3; part++) {
                vector_key(&k);
                if (part == 0)
                        memset(k.encrypt, 0, sizeof(k.encrypt));
                else if (part == 1)
                        memset(k.mac_k, 0, sizeof(k.mac_k));
                else
                        memset(k.mac_r, 0, sizeof(k.mac_r));
                assert_false(hf_key_valid(&k));
                assert_int_equal(hf_cipher_new(&k, &c), -EINVAL);
                assert_null(c);
                assert_int_equal(hf_encrypt_buf(&k, "x", 1, &b), -EINVAL);
        }

        assert_int_equal(hf_key_generate(&k), 0);
        assert_int_equal(hf_key_generate(&k2), 0);
        assert_true(hf_key_valid(&k));
        assert_memory_not_equal(&k, &k2, sizeof(k));
        hf_key_wipe(&k);
        assert_memory_equal(&k, &zero, sizeof(k));
        hf_key_wipe(NULL);
}

static void test_buf_helpers(void **state)
{
        _cleanup_buf_ HfBuf enc = HF_BUF_INIT(1 << 16), dec = HF_BUF_INIT(1 << 16);
        _cleanup_buf_ HfBuf small = HF_BUF_INIT(40);
        static const char msg[] = "{\"mac\":{\"k\":\"...\",\"r\":\"...\"},\"encrypt\":\"...\"}";
        HfKey k;

        (void)state;
        assert_int_equal(hf_key_generate(&k), 0);
        /* Both append after what the buffer already holds. */
        assert_int_equal(hf_buf_puts(&enc, "hdr"), 0);
        assert_int_equal(hf_encrypt_buf(&k, msg, strlen(msg), &enc), 0);
        assert_int_equal(enc.len, 3 + strlen(msg) + HF_CRYPTO_OVERHEAD);
        assert_int_equal(hf_buf_puts(&dec, ">"), 0);
        assert_int_equal(hf_decrypt_buf(&k, enc.data + 3, enc.len - 3, &dec), 0);
        assert_int_equal(dec.len, 1 + strlen(msg));
        assert_string_equal((char *)dec.data + 1, msg);

        /* Over the ceiling: -E2BIG, buffer unchanged. */
        assert_int_equal(hf_encrypt_buf(&k, msg, strlen(msg), &small), -E2BIG);
        assert_int_equal(small.len, 0);
        assert_int_equal(hf_decrypt_buf(&k, enc.data + 3, enc.len - 3, &small), -E2BIG);
        assert_int_equal(small.len, 0);
        hf_key_wipe(&k);
}

static void test_scrypt_rfc7914(void **state)
{
        static const struct {
                const char *pw, *salt;
                uint64_t N;
                uint32_t r, p;
                const char *dk;
        } v[] = {
                { "", "", 16, 1, 1,
                  "77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442"
                  "fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906" },
                { "password", "NaCl", 1024, 8, 16,
                  "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
                  "2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640" },
                { "pleaseletmein", "SodiumChloride", 16384, 8, 1,
                  "7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2"
                  "d5432955613f0fcf62d49705242a9af9e61e85dc0d651e40dfcf017b45575887" },
        };

        (void)state;
        for (size_t i = 0; i < ELEMENTSOF(v); i++) {
                uint8_t dk[64];
                HfKey k;

                unhex(v[i].dk, dk, sizeof(dk));
                memset(&k, 0, sizeof(k));
                assert_int_equal(hf_kdf_scrypt(v[i].pw, strlen(v[i].pw), (const uint8_t *)v[i].salt,
                                               strlen(v[i].salt), v[i].N, v[i].r, v[i].p, &k),
                                 0);
                assert_memory_equal(k.encrypt, dk, 32);
                assert_memory_equal(k.mac_k, dk + 32, 16);
                assert_memory_equal(k.mac_r, dk + 48, 16);
        }
}

/*
 * The lanes on any number of threads give OpenSSL's EVP_PBE_scrypt output byte for byte: odd r,
 * p above and below the thread count, empty password and salt, output lengths that are not a
 * multiple of 32.
 */
static void test_scrypt_threads_match_openssl(void **state)
{
        static const struct {
                const char *pw, *salt;
                uint64_t N;
                uint32_t r, p;
                size_t outlen;
        } v[] = {
                { "", "", 16, 1, 1, 64 },
                { "pw", "salt", 2, 1, 3, 64 },
                { "password", "NaCl", 64, 3, 5, 37 },
                { "x", "", 1024, 8, 7, 64 },
                { "", "sel", 256, 2, 2, 100 },
                { "restic", "vault", 4096, 8, 4, 64 },
        };

        (void)state;
        for (size_t i = 0; i < ELEMENTSOF(v); i++) {
                uint8_t want[128], got[128];
                size_t pl = strlen(v[i].pw), sl = strlen(v[i].salt);

                assert_int_equal(EVP_PBE_scrypt(v[i].pw, pl, (const uint8_t *)v[i].salt, sl, v[i].N,
                                                v[i].r, v[i].p, 0, want, v[i].outlen),
                                 1);
                for (unsigned t = 0; t <= 5; t++) {
                        /* 0: one per core; the lanes here are far below the memory cap. */
                        unsigned want_threads = MIN(t ? t : (unsigned)hf_ncpus(), v[i].p);
                        memset(got, 0xa5, sizeof(got));
                        assert_int_equal(hf_scrypt(v[i].pw, pl, (const uint8_t *)v[i].salt, sl,
                                                   v[i].N, v[i].r, v[i].p, t, got, v[i].outlen),
                                         (int)want_threads);
                        assert_memory_equal(got, want, v[i].outlen);
                        assert_int_equal(got[v[i].outlen], 0xa5); /* nothing beyond outlen */
                }
        }
        {
                uint8_t out[64];
                assert_int_equal(hf_scrypt("pw", 2, NULL, 0, 3, 1, 1, 1, out, 64), -EINVAL);
                assert_int_equal(hf_scrypt("pw", 2, NULL, 0, 16, 1, 0, 1, out, 64), -EINVAL);
                assert_int_equal(hf_scrypt("pw", 2, NULL, 0, 16, 1u << 12, 1u << 12, 1, out, 64),
                                 -EINVAL);
                assert_int_equal(hf_scrypt("pw", 2, NULL, 0, 16, 1, 1, 1, out, 0), -EINVAL);
        }
}

static void test_scrypt_rejects(void **state)
{
        static const uint8_t salt[64];
        HfKey k, untouched;

        (void)state;
        memset(&k, 0x11, sizeof(k));
        untouched = k;
        /* N must be a power of two, at least 2. */
        assert_int_equal(hf_kdf_scrypt("pw", 2, salt, 64, 0, 8, 1, &k), -EINVAL);
        assert_int_equal(hf_kdf_scrypt("pw", 2, salt, 64, 1, 8, 1, &k), -EINVAL);
        assert_int_equal(hf_kdf_scrypt("pw", 2, salt, 64, 3, 8, 1, &k), -EINVAL);
        assert_int_equal(hf_kdf_scrypt("pw", 2, salt, 64, 32767, 8, 1, &k), -EINVAL);
        assert_int_equal(hf_kdf_scrypt("pw", 2, salt, 64, UINT64_MAX, 8, 1, &k), -EINVAL);
        assert_int_equal(hf_kdf_scrypt("pw", 2, salt, 64, (uint64_t)1 << 63, 8, 1, &k), -EINVAL);
        /* 128*N*r above 1 GiB: N=2^21, r=8 is 2 GiB. */
        assert_int_equal(hf_kdf_scrypt("pw", 2, salt, 64, (uint64_t)1 << 21, 8, 1, &k), -EINVAL);
        assert_int_equal(hf_kdf_scrypt("pw", 2, salt, 64, 2, UINT32_MAX, 1, &k), -EINVAL);
        /* r*p >= 2^30. */
        assert_int_equal(hf_kdf_scrypt("pw", 2, salt, 64, 16, 1, 1u << 30, &k), -EINVAL);
        assert_int_equal(hf_kdf_scrypt("pw", 2, salt, 64, 16, 1u << 15, 1u << 15, &k), -EINVAL);
        assert_int_equal(hf_kdf_scrypt("pw", 2, salt, 64, 16, 0, 1, &k), -EINVAL);
        assert_int_equal(hf_kdf_scrypt("pw", 2, salt, 64, 16, 8, 0, &k), -EINVAL);
        /* RFC 7914: N < 2^(16r). */
        assert_int_equal(hf_kdf_scrypt("pw", 2, salt, 64, 1 << 16, 1, 1, &k), -EINVAL);
        assert_memory_equal(&k, &untouched, sizeof(k));

        /* The edge that is allowed: exactly 1 GiB would be slow, so check 2^14 * 8 instead. */
        assert_int_equal(hf_kdf_scrypt("pw", 2, salt, 64, 1 << 14, 8, 1, &k), 0);
        assert_memory_not_equal(&k, &untouched, sizeof(k));
}

static void hexid(const HfId *id, char out[HF_ID_HEX_LEN + 1])
{
        hf_id_hex(id, out);
}

static void test_sha256(void **state)
{
        static const struct {
                const char *msg;
                const char *hex;
        } v[] = {
                { "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
                { "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
                { "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
        };
        _cleanup_(hf_sha256_freep) HfSha256 *s = NULL;
        char hex[HF_ID_HEX_LEN + 1];
        HfId id, id2;

        (void)state;
        assert_int_equal(hf_sha256_new(&s), 0);
        for (size_t i = 0; i < ELEMENTSOF(v); i++) {
                size_t n = strlen(v[i].msg);

                hf_sha256(v[i].msg, n, &id);
                hexid(&id, hex);
                assert_string_equal(hex, v[i].hex);

                /* Streaming, byte by byte, after a reset of the reused context. */
                hf_sha256_update(s, "garbage", 7);
                hf_sha256_init(s);
                for (size_t j = 0; j < n; j++)
                        hf_sha256_update(s, v[i].msg + j, 1);
                hf_sha256_final(s, &id2);
                assert_true(hf_id_eq(&id, &id2));
        }

        /* A million 'a's, fed in uneven pieces. */
        {
                _cleanup_free_ char *m = malloc(1000000);
                size_t off = 0, step = 1;

                assert_non_null(m);
                memset(m, 'a', 1000000);
                hf_sha256(m, 1000000, &id);
                hexid(&id, hex);
                assert_string_equal(
                        hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
                hf_sha256_init(s);
                while (off < 1000000) {
                        size_t k = MIN(step, 1000000 - off);
                        hf_sha256_update(s, m + off, k);
                        off += k;
                        step = step * 3 + 1;
                }
                hf_sha256_final(s, &id2);
                assert_true(hf_id_eq(&id, &id2));
        }
}

/* Hashes n messages of the given lengths (random bytes, each in its own allocation of exactly
 * that size, so that a read past one is an ASan error) with hf_sha256_many() and compares each
 * digest with hf_sha256()'s. */
static void many_vs_one(const size_t *lens, size_t n)
{
        uint8_t **msgs = calloc(n, sizeof(*msgs));
        HfSha256Job *jobs = calloc(n, sizeof(*jobs));
        HfId *got = calloc(n, sizeof(*got));

        assert_true(msgs && jobs && got);
        for (size_t i = 0; i < n; i++) {
                msgs[i] = malloc(MAX(lens[i], (size_t)1));
                assert_non_null(msgs[i]);
                for (size_t k = 0; k < lens[i]; k++)
                        msgs[i][k] = (uint8_t)(rand() >> 7);
                jobs[i] = (HfSha256Job){ .data = msgs[i], .len = lens[i], .out = &got[i] };
        }
        hf_sha256_many(jobs, n);
        for (size_t i = 0; i < n; i++) {
                HfId want;
                hf_sha256(msgs[i], lens[i], &want);
                if (!hf_id_eq(&want, &got[i]))
                        fail_msg("message %zu of %zu (%zu bytes): wrong digest (features %#x)", i,
                                 n, lens[i], hf_sha256_many_features());
                free(msgs[i]);
        }
        free(msgs);
        free(jobs);
        free(got);
}

static void test_sha256_many(void **state)
{
        /* Around the block and padding edges: 55/56 bytes is where the length spills into a
         * second padding block. */
        static const size_t edges[] = { 0,   1,   55,  56,   57,   63,   64,   65,    119,
                                        120, 121, 127, 128,  129,  1000, 4096, 65539, 300000,
                                        3,   64,  0,   8191, 8192, 8193, 100,  1 };
        static const unsigned sets[] = { HF_SHA256_X16 | HF_SHA256_SHANI, HF_SHA256_X16,
                                         HF_SHA256_SHANI, 0 };
        size_t lens[300];

        (void)state;
        srand(7);
        print_message("hf_sha256_many: this CPU offers %#x\n", hf_sha256_many_features());
        for (size_t s = 0; s < ELEMENTSOF(sets); s++) {
                hf_sha256_many_restrict(sets[s]);

                /* Every count around the vector's width and the point below which the rest
                 * is finished as chains, two at a time (odd counts leave one alone). */
                for (size_t n = 0; n <= 40; n++) {
                        for (size_t i = 0; i < n; i++)
                                lens[i] = edges[(i * 7 + n) % ELEMENTSOF(edges)];
                        many_vs_one(lens, n);
                }
                /* Random lengths: lanes end and are refilled at every point (and more
                 * messages than one slice of 256, which hf_sha256_many() orders at a time;
                 * the second slice holds the last 44). */
                for (size_t i = 0; i < 300; i++)
                        lens[i] = (size_t)rand() % 20000;
                many_vs_one(lens, 300);
                /* One long message among short ones: it is left alone in the vector and must
                 * be finished from the middle of its data. */
                lens[0] = 1u << 20;
                for (size_t i = 1; i < 20; i++)
                        lens[i] = 64 * i + i;
                many_vs_one(lens, 20);
                /* Several long ones end together, mid-block and at a block edge. */
                for (size_t i = 0; i < 16; i++)
                        lens[i] = 200000 + (i % 3) * 64 + (i & 1);
                many_vs_one(lens, 16);
        }
        hf_sha256_many_restrict(~0u);

        /* A known answer, in a full vector. */
        {
                HfSha256Job jobs[16];
                HfId out[16];
                char hex[HF_ID_HEX_LEN + 1];
                for (size_t i = 0; i < 16; i++)
                        jobs[i] = (HfSha256Job){ .data = "abc", .len = 3, .out = &out[i] };
                hf_sha256_many(jobs, 16);
                for (size_t i = 0; i < 16; i++) {
                        hexid(&out[i], hex);
                        assert_string_equal(hex,
                                            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb4"
                                            "10ff61f20015ad");
                }
        }
}

static void test_memcmp_ct(void **state)
{
        uint8_t a[64], b[64];

        (void)state;
        fill_random(a, sizeof(a));
        memcpy(b, a, sizeof(b));
        assert_int_equal(hf_memcmp_ct(a, b, sizeof(a)), 0);
        assert_int_equal(hf_memcmp_ct(a, b, 0), 0);
        for (size_t i = 0; i < sizeof(a); i++) {
                b[i] ^= 0x40;
                assert_int_not_equal(hf_memcmp_ct(a, b, sizeof(a)), 0);
                /* The differing byte is outside the compared prefix. */
                assert_int_equal(hf_memcmp_ct(a, b, i), 0);
                b[i] ^= 0x40;
        }
}

static void test_random_bytes(void **state)
{
        uint8_t a[32], b[32];
        static const uint8_t zero[32];

        (void)state;
        memset(a, 0, sizeof(a));
        memset(b, 0, sizeof(b));
        assert_int_equal(hf_random_bytes(a, sizeof(a)), 0);
        assert_int_equal(hf_random_bytes(b, sizeof(b)), 0);
        assert_memory_not_equal(a, zero, sizeof(a));
        assert_memory_not_equal(a, b, sizeof(a));
        assert_int_equal(hf_random_bytes(NULL, 0), 0);
}

static int iv_cmp(const void *a, const void *b)
{
        return memcmp(a, b, HF_CRYPTO_IV_LEN);
}

/* IVs come from a per-cipher pool of random bytes: all distinct over several refills, never
 * zero, and a forked child does not take the IV its parent takes next (the pool page is wiped
 * in the child). */
static void test_iv_pool(void **state)
{
        enum {
                N = 1000
        }; /* 16 KB of IVs: the pool (4032 bytes) filled four times */
        _cleanup_(hf_cipher_freep) HfCipher *c = NULL;
        static uint8_t ivs[N][HF_CRYPTO_IV_LEN];
        static const uint8_t zero[HF_CRYPTO_IV_LEN];
        uint8_t obj[HF_CRYPTO_OVERHEAD + 1], mine[HF_CRYPTO_IV_LEN], theirs[HF_CRYPTO_IV_LEN];
        int fds[2], status;
        HfKey k;

        (void)state;
        assert_int_equal(hf_key_generate(&k), 0);
        assert_int_equal(hf_cipher_new(&k, &c), 0);
        for (size_t i = 0; i < N; i++) {
                assert_int_equal(hf_cipher_encrypt(c, "x", 1, obj), 0);
                memcpy(ivs[i], obj, HF_CRYPTO_IV_LEN);
                assert_memory_not_equal(ivs[i], zero, HF_CRYPTO_IV_LEN);
        }
        qsort(ivs, N, HF_CRYPTO_IV_LEN, iv_cmp);
        for (size_t i = 1; i < N; i++)
                assert_memory_not_equal(ivs[i - 1], ivs[i], HF_CRYPTO_IV_LEN);

        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                int ok = hf_cipher_encrypt(c, "x", 1, obj) == 0 &&
                         write(fds[1], obj, HF_CRYPTO_IV_LEN) == HF_CRYPTO_IV_LEN;
                _exit(ok ? 0 : 1);
        }
        assert_int_equal(hf_cipher_encrypt(c, "x", 1, obj), 0);
        memcpy(mine, obj, sizeof(mine));
        assert_int_equal(read(fds[0], theirs, sizeof(theirs)), (ssize_t)sizeof(theirs));
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        assert_memory_not_equal(mine, theirs, sizeof(mine));
        close(fds[0]);
        close(fds[1]);
        hf_key_wipe(&k);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_poly1305_vectors),
                cmocka_unit_test(test_poly1305_clamps_r),
                cmocka_unit_test(test_object_vector_decrypt),
                cmocka_unit_test(test_object_vector_encrypt_iv),
                cmocka_unit_test(test_ctr_counter_carry),
                cmocka_unit_test(test_round_trip_sizes),
                cmocka_unit_test(test_in_place_decrypt),
                cmocka_unit_test(test_every_bit_flip),
                cmocka_unit_test(test_truncated),
                cmocka_unit_test(test_wrong_key),
                cmocka_unit_test(test_key_validity),
                cmocka_unit_test(test_buf_helpers),
                cmocka_unit_test(test_scrypt_rfc7914),
                cmocka_unit_test(test_scrypt_rejects),
                cmocka_unit_test(test_scrypt_threads_match_openssl),
                cmocka_unit_test(test_sha256),
                cmocka_unit_test(test_sha256_many),
                cmocka_unit_test(test_memcmp_ct),
                cmocka_unit_test(test_random_bytes),
                cmocka_unit_test(test_iv_pool),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
