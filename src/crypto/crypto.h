/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * restic's object crypto (spec: restic-format.md §2): AES-256-CTR with a random 16-byte IV,
 * authenticated by Poly1305-AES over the ciphertext with the IV as nonce. An encrypted object
 * is IV(16) || CT(n) || MAC(16). Everything goes through OpenSSL's accelerated paths.
 *
 * Errors: -EBADMSG when a MAC does not verify (wrong key or damaged data), -EINVAL for bad
 * arguments (short input, all-zero key), -EIO when OpenSSL fails.
 */

#include "../base/macro.h"
#include "../base/util.h"

#define HF_CRYPTO_IV_LEN 16
#define HF_CRYPTO_MAC_LEN 16
#define HF_CRYPTO_OVERHEAD (HF_CRYPTO_IV_LEN + HF_CRYPTO_MAC_LEN)

/* A master key or a key derived from a password. */
typedef struct HfKey {
        uint8_t encrypt[32]; /* AES-256-CTR key */
        uint8_t mac_k[16];   /* AES-128 key that encrypts the nonce into s */
        uint8_t mac_r[16];   /* Poly1305 r, clamped when used */
} HfKey;

/* True when no part of the key is all zeros (restic refuses such keys). */
bool hf_key_valid(const HfKey *k);
/* Fills a new random master key. */
int hf_key_generate(HfKey *ret);
void hf_key_wipe(HfKey *k);

/*
 * A per-thread cipher context bound to one key. It keeps OpenSSL contexts so hot paths do not
 * allocate per object. Not thread safe: one per worker.
 */
typedef struct HfCipher HfCipher;

int hf_cipher_new(const HfKey *key, HfCipher **ret);
HfCipher *hf_cipher_free(HfCipher *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(HfCipher *, hf_cipher_free);

/*
 * out receives n + HF_CRYPTO_OVERHEAD bytes. in and out must not overlap, except that in may
 * be exactly out + HF_CRYPTO_IV_LEN (encryption in place, the plaintext already where the
 * ciphertext goes). Random IV.
 */
int hf_cipher_encrypt(HfCipher *c, const void *in, size_t n, void *out);
/* Same with a given IV (tests and vectors only). -EINVAL for an all-zero IV. */
int hf_cipher_encrypt_iv(HfCipher *c, const uint8_t iv[HF_CRYPTO_IV_LEN], const void *in, size_t n,
                         void *out);
/*
 * Verifies the MAC of the object in (n bytes), then decrypts n - HF_CRYPTO_OVERHEAD bytes into
 * out. out may equal in (in place: plaintext lands at out[0..]; the ciphertext is moved down
 * first), equal in + HF_CRYPTO_IV_LEN (in place where the ciphertext is: nothing moved), or not
 * overlap at all.
 */
int hf_cipher_decrypt(HfCipher *c, const void *in, size_t n, void *out);
/* Checks the MAC only. */
int hf_cipher_verify(HfCipher *c, const void *in, size_t n);

/*
 * One-shot helpers that build a temporary context (slow paths: config, keys, snapshots). They
 * append to out; on failure (-E2BIG past out's ceiling, -EBADMSG, ...) out->len is unchanged.
 */
int hf_encrypt_buf(const HfKey *key, const void *in, size_t n, HfBuf *out);
int hf_decrypt_buf(const HfKey *key, const void *in, size_t n, HfBuf *out);

/* Poly1305-AES tag (restic's MAC) of msg with the given 16-byte nonce. For vectors. */
int hf_poly1305_aes(const uint8_t mac_k[16], const uint8_t mac_r[16], const uint8_t nonce[16],
                    const void *msg, size_t n, uint8_t tag[16]);

/* SHA-256. These cannot fail short of OpenSSL breaking, in which case they abort(). */
void hf_sha256(const void *p, size_t n, HfId *ret);
typedef struct HfSha256 HfSha256;
int hf_sha256_new(HfSha256 **ret);
HfSha256 *hf_sha256_free(HfSha256 *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(HfSha256 *, hf_sha256_free);
void hf_sha256_init(HfSha256 *s);
void hf_sha256_update(HfSha256 *s, const void *p, size_t n);
void hf_sha256_final(HfSha256 *s, HfId *ret);

/*
 * The SHA-256 of each of n independent messages into its out, several at once where the CPU
 * allows it (sha256-many.c): the same digests as hf_sha256(), faster when n is 2 or more and
 * the CPU has SHA-NI or AVX-512.
 */
typedef struct HfSha256Job {
        const void *data;
        size_t len;
        HfId *out;
} HfSha256Job;
void hf_sha256_many(const HfSha256Job *jobs, size_t n);

/* What hf_sha256_many() uses on this CPU. */
enum {
        HF_SHA256_X16 = 1 << 0,   /* AVX-512: 16 messages at once */
        HF_SHA256_SHANI = 1 << 1, /* SHA-NI: two chains at a time, where the vector is idle */
};
unsigned hf_sha256_many_features(void);
/* For tests: let hf_sha256_many() use only these of the CPU's features. */
void hf_sha256_many_restrict(unsigned features);

/* CSPRNG bytes (OpenSSL RAND_bytes). */
int hf_random_bytes(void *p, size_t n);

/*
 * scrypt(password, salt, N, r, p) -> 64 bytes split into a key: [0:32] encrypt, [32:48] mac_k,
 * [48:64] mac_r. -EINVAL for parameters that are not sane (N not a power of two > 1, r*p >= 2^24,
 * 128*N*r or 128*r*p above 1 GiB, N >= 2^(16r) as RFC 7914 forbids); -ENOMEM. ret is written
 * only on success.
 */
int hf_kdf_scrypt(const char *password, size_t pwlen, const uint8_t *salt, size_t saltlen,
                  uint64_t N, uint32_t r, uint32_t p, HfKey *ret);

/*
 * scrypt itself (scrypt.c): outlen bytes of scrypt(password, salt, N, r, p) into out, its p
 * lanes on up to `threads` threads (0: one per core, while their memory, 128*r*N bytes each,
 * stays under 256 MiB together). The same bytes whatever the number of threads. Returns the
 * number of threads that worked (the caller's included); -EINVAL for N not a power of two > 1,
 * r or p 0, r*p >= 2^24; -ENOMEM; -EIO if OpenSSL's PBKDF2 fails.
 */
int hf_scrypt(const char *password, size_t pwlen, const uint8_t *salt, size_t saltlen, uint64_t N,
              uint32_t r, uint32_t p, unsigned threads, uint8_t *out, size_t outlen);

/* Constant-time comparison; 0 when equal. */
int hf_memcmp_ct(const void *a, const void *b, size_t n);
