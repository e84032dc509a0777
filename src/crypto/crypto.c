/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "crypto.h"

#include <limits.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <sys/mman.h>

#include "../base/log.h"

/*
 * Algorithms are fetched once per process: an implicit fetch (EVP_aes_256_ctr() passed to an
 * init call) takes the provider store's lock every time, which shows up at GB/s. They are never
 * freed; they live as long as the process, like OpenSSL's own caches.
 */
static pthread_once_t algs_once = PTHREAD_ONCE_INIT;
static EVP_CIPHER *alg_aes256_ctr;
static EVP_CIPHER *alg_aes128_ecb;
static EVP_MAC *alg_poly1305;
static EVP_MD *alg_sha256;

static void algs_fetch(void)
{
        alg_aes256_ctr = EVP_CIPHER_fetch(NULL, "AES-256-CTR", NULL);
        alg_aes128_ecb = EVP_CIPHER_fetch(NULL, "AES-128-ECB", NULL);
        alg_poly1305 = EVP_MAC_fetch(NULL, "POLY1305", NULL);
        alg_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static int algs_get(void)
{
        if (pthread_once(&algs_once, algs_fetch) != 0)
                return -EIO;
        if (!alg_aes256_ctr || !alg_aes128_ecb || !alg_poly1305 || !alg_sha256)
                return log_error_errno(EIO, "OpenSSL lacks AES-CTR, AES-ECB, Poly1305 or SHA-256");
        return 0;
}

/* EVP cipher calls take an int length; larger inputs go through in pieces. */
#define EVP_CHUNK ((size_t)1 << 30)

static bool all_zero(const uint8_t *p, size_t n)
{
        uint8_t acc = 0;

        for (size_t i = 0; i < n; i++)
                acc |= p[i];
        return acc == 0;
}

bool hf_key_valid(const HfKey *k)
{
        return k && !all_zero(k->encrypt, sizeof(k->encrypt)) &&
               !all_zero(k->mac_k, sizeof(k->mac_k)) && !all_zero(k->mac_r, sizeof(k->mac_r));
}

int hf_key_generate(HfKey *ret)
{
        HfKey k;
        int r;

        /* An all-zero part has probability 2^-128; loop rather than hand out a refused key. */
        do {
                r = hf_random_bytes(&k, sizeof(k));
                if (r < 0) {
                        OPENSSL_cleanse(&k, sizeof(k));
                        return r;
                }
        } while (!hf_key_valid(&k));
        *ret = k;
        OPENSSL_cleanse(&k, sizeof(k));
        return 0;
}

void hf_key_wipe(HfKey *k)
{
        if (k)
                OPENSSL_cleanse(k, sizeof(*k));
}

/*
 * IVs are taken from a page of random bytes, not from one RAND_bytes() call per object: a call
 * costs about 2 us (a getpid() for OpenSSL's fork check among it), paid for every blob of a
 * backup. The page is MADV_WIPEONFORK: a forked child finds it zeroed, so `left` reads 0 and the
 * child draws its own bytes; parent and child never take the same IV. Without that advice (a
 * kernel before 4.14) there is no pool and every IV is drawn on its own.
 */
#define IV_POOL_PAGE 4096u
typedef struct IvPool {
        uint32_t left;                    /* unused bytes at the end of bytes[] */
        uint8_t bytes[IV_POOL_PAGE - 64]; /* a multiple of HF_CRYPTO_IV_LEN */
} IvPool;

struct HfCipher {
        EVP_CIPHER_CTX *ctr; /* AES-256-CTR, keyed once; only the IV changes per object */
        EVP_CIPHER_CTX *ecb; /* AES-128 with mac_k, turns the nonce into Poly1305's s */
        EVP_MAC_CTX *mac;    /* Poly1305, rekeyed with r || s per object */
        uint8_t r[16];       /* Poly1305 r, already clamped */
        IvPool *pool;        /* made at the first encryption; NULL: an IV drawn per object */
        bool pool_tried;
};

_Static_assert(sizeof(IvPool) <= IV_POOL_PAGE &&
                       sizeof(((IvPool *)NULL)->bytes) % HF_CRYPTO_IV_LEN == 0,
               "an IV pool is one page of whole IVs");

static IvPool *iv_pool_new(void)
{
        void *p = mmap(NULL, IV_POOL_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                       0);

        if (p == MAP_FAILED)
                return NULL;
        if (madvise(p, IV_POOL_PAGE, MADV_WIPEONFORK) < 0) {
                (void)munmap(p, IV_POOL_PAGE);
                return NULL;
        }
        return p; /* zeroed: empty */
}

static int next_iv(HfCipher *c, uint8_t iv[HF_CRYPTO_IV_LEN])
{
        IvPool *p;

        /* Only ciphers that encrypt get a pool (most only decrypt). */
        if (!c->pool_tried) {
                c->pool = iv_pool_new();
                c->pool_tried = true;
        }
        p = c->pool;
        if (!p)
                return hf_random_bytes(iv, HF_CRYPTO_IV_LEN);
        if (p->left < HF_CRYPTO_IV_LEN || p->left > sizeof(p->bytes)) {
                int r = hf_random_bytes(p->bytes, sizeof(p->bytes));
                if (r < 0)
                        return r;
                p->left = sizeof(p->bytes);
        }
        memcpy(iv, p->bytes + sizeof(p->bytes) - p->left, HF_CRYPTO_IV_LEN);
        p->left -= HF_CRYPTO_IV_LEN;
        return 0;
}

static void poly1305_clamp(uint8_t r[16])
{
        r[3] &= 0x0f;
        r[7] &= 0x0f;
        r[11] &= 0x0f;
        r[15] &= 0x0f;
        r[4] &= 0xfc;
        r[8] &= 0xfc;
        r[12] &= 0xfc;
}

HfCipher *hf_cipher_free(HfCipher *c)
{
        if (!c)
                return NULL;
        /* The context frees wipe the key schedules and Poly1305 state themselves. */
        EVP_CIPHER_CTX_free(c->ctr);
        EVP_CIPHER_CTX_free(c->ecb);
        EVP_MAC_CTX_free(c->mac);
        if (c->pool)
                (void)munmap(c->pool, IV_POOL_PAGE);
        OPENSSL_cleanse(c, sizeof(*c));
        free(c);
        return NULL;
}

/* Builds the contexts without judging the key, so that test vectors with odd keys can use it. */
static int cipher_new_raw(const uint8_t *encrypt, const uint8_t mac_k[16], const uint8_t mac_r[16],
                          HfCipher **ret)
{
        _cleanup_(hf_cipher_freep) HfCipher *c = NULL;
        int r;

        r = algs_get();
        if (r < 0)
                return r;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->ctr = EVP_CIPHER_CTX_new();
        c->ecb = EVP_CIPHER_CTX_new();
        c->mac = EVP_MAC_CTX_new(alg_poly1305);
        if (!c->ctr || !c->ecb || !c->mac)
                return -ENOMEM;
        if (encrypt && !EVP_EncryptInit_ex2(c->ctr, alg_aes256_ctr, encrypt, NULL, NULL))
                return -EIO;
        if (!EVP_EncryptInit_ex2(c->ecb, alg_aes128_ecb, mac_k, NULL, NULL) ||
            !EVP_CIPHER_CTX_set_padding(c->ecb, 0))
                return -EIO;
        memcpy(c->r, mac_r, sizeof(c->r));
        /* OpenSSL clamps too; doing it here keeps the result independent of the provider. */
        poly1305_clamp(c->r);
        *ret = TAKE_PTR(c);
        return 0;
}

int hf_cipher_new(const HfKey *key, HfCipher **ret)
{
        if (!hf_key_valid(key))
                return -EINVAL;
        return cipher_new_raw(key->encrypt, key->mac_k, key->mac_r, ret);
}

/* Poly1305-AES: s = AES-128(k, nonce), one-time key r || s. */
static int mac_begin(HfCipher *c, const uint8_t nonce[16])
{
        uint8_t key[32];
        int outl = 0, r = -EIO;

        memcpy(key, c->r, 16);
        if (!EVP_EncryptUpdate(c->ecb, key + 16, &outl, nonce, 16) || outl != 16)
                goto out;
        if (!EVP_MAC_init(c->mac, key, sizeof(key), NULL))
                goto out;
        r = 0;
out:
        OPENSSL_cleanse(key, sizeof(key));
        return r;
}

static int mac_update(HfCipher *c, const uint8_t *msg, size_t n)
{
        if (n > 0 && !EVP_MAC_update(c->mac, msg, n))
                return -EIO;
        return 0;
}

static int mac_final(HfCipher *c, uint8_t tag[16])
{
        size_t taglen = 0;

        if (!EVP_MAC_final(c->mac, tag, &taglen, 16) || taglen != 16)
                return -EIO;
        return 0;
}

static int cipher_mac(HfCipher *c, const uint8_t nonce[16], const uint8_t *msg, size_t n,
                      uint8_t tag[16])
{
        int r;

        r = mac_begin(c, nonce);
        if (r < 0)
                return r;
        r = mac_update(c, msg, n);
        if (r < 0)
                return r;
        return mac_final(c, tag);
}

static int cipher_ctr_start(HfCipher *c, const uint8_t iv[16])
{
        /* With no cipher and no key this only resets the counter block and the stream offset. */
        if (!EVP_EncryptInit_ex2(c->ctr, NULL, NULL, iv, NULL))
                return -EIO;
        return 0;
}

static int cipher_ctr(HfCipher *c, const uint8_t *in, size_t n, uint8_t *out)
{
        while (n > 0) {
                size_t k = MIN(n, EVP_CHUNK);
                int outl = 0;

                if (!EVP_EncryptUpdate(c->ctr, out, &outl, in, (int)k) || (size_t)outl != k)
                        return -EIO;
                in += k;
                out += k;
                n -= k;
        }
        return 0;
}

int hf_cipher_encrypt_iv(HfCipher *c, const uint8_t iv[HF_CRYPTO_IV_LEN], const void *in, size_t n,
                         void *out)
{
        uint8_t *o = out;
        int r;

        if (!c || !out || (!in && n > 0) || n > SIZE_MAX - HF_CRYPTO_OVERHEAD)
                return -EINVAL;
        if (all_zero(iv, HF_CRYPTO_IV_LEN))
                return -EINVAL;
        memcpy(o, iv, HF_CRYPTO_IV_LEN);
        r = cipher_ctr_start(c, iv);
        if (r < 0)
                return r;
        r = mac_begin(c, iv);
        if (r < 0)
                return r;
        r = cipher_ctr(c, in, n, o + HF_CRYPTO_IV_LEN);
        if (r < 0)
                return r;
        r = mac_update(c, o + HF_CRYPTO_IV_LEN, n);
        if (r < 0)
                return r;
        return mac_final(c, o + HF_CRYPTO_IV_LEN + n);
}

int hf_cipher_encrypt(HfCipher *c, const void *in, size_t n, void *out)
{
        uint8_t iv[HF_CRYPTO_IV_LEN];
        int r;

        /* A zero IV has probability 2^-128, but restic refuses it, so never write one. */
        do {
                r = next_iv(c, iv);
                if (r < 0)
                        return r;
        } while (all_zero(iv, sizeof(iv)));
        return hf_cipher_encrypt_iv(c, iv, in, n, out);
}

int hf_cipher_verify(HfCipher *c, const void *in, size_t n)
{
        const uint8_t *p = in;
        uint8_t tag[HF_CRYPTO_MAC_LEN];
        size_t clen;
        int r;

        if (!c || !in || n < HF_CRYPTO_OVERHEAD)
                return -EINVAL;
        clen = n - HF_CRYPTO_OVERHEAD;
        r = cipher_mac(c, p, p + HF_CRYPTO_IV_LEN, clen, tag);
        if (r < 0)
                return r;
        if (CRYPTO_memcmp(tag, p + HF_CRYPTO_IV_LEN + clen, sizeof(tag)) != 0)
                return -EBADMSG;
        return 0;
}

int hf_cipher_decrypt(HfCipher *c, const void *in, size_t n, void *out)
{
        const uint8_t *p = in;
        uint8_t *o = out, iv[HF_CRYPTO_IV_LEN];
        size_t clen;
        int r;

        r = hf_cipher_verify(c, in, n);
        if (r < 0)
                return r;
        if (!out)
                return -EINVAL;
        clen = n - HF_CRYPTO_OVERHEAD;
        /* Copied first: in place, the plaintext overwrites the IV. */
        memcpy(iv, p, sizeof(iv));
        r = cipher_ctr_start(c, iv);
        if (r < 0)
                return r;
        if (o == p + HF_CRYPTO_IV_LEN) /* in place where the ciphertext is */
                return cipher_ctr(c, o, clen, o);
        if ((uintptr_t)o < (uintptr_t)p + n && (uintptr_t)p < (uintptr_t)o + clen) {
                /*
                 * Overlapping (in place: out sits 16 bytes before the ciphertext). CTR is only
                 * safe with out == in exactly, so slide the ciphertext down and decrypt there.
                 */
                memmove(o, p + HF_CRYPTO_IV_LEN, clen);
                return cipher_ctr(c, o, clen, o);
        }
        return cipher_ctr(c, p + HF_CRYPTO_IV_LEN, clen, o);
}

int hf_encrypt_buf(const HfKey *key, const void *in, size_t n, HfBuf *out)
{
        _cleanup_(hf_cipher_freep) HfCipher *c = NULL;
        int r;

        if (!out || n > SIZE_MAX - HF_CRYPTO_OVERHEAD)
                return -EINVAL;
        r = hf_cipher_new(key, &c);
        if (r < 0)
                return r;
        r = hf_buf_reserve(out, n + HF_CRYPTO_OVERHEAD);
        if (r < 0)
                return r;
        r = hf_cipher_encrypt(c, in, n, out->data + out->len);
        if (r < 0)
                return r;
        out->len += n + HF_CRYPTO_OVERHEAD;
        out->data[out->len] = 0;
        return 0;
}

int hf_decrypt_buf(const HfKey *key, const void *in, size_t n, HfBuf *out)
{
        _cleanup_(hf_cipher_freep) HfCipher *c = NULL;
        size_t plen;
        int r;

        if (!out || !in || n < HF_CRYPTO_OVERHEAD)
                return -EINVAL;
        plen = n - HF_CRYPTO_OVERHEAD;
        r = hf_cipher_new(key, &c);
        if (r < 0)
                return r;
        r = hf_buf_reserve(out, plen);
        if (r < 0)
                return r;
        r = hf_cipher_decrypt(c, in, n, out->data + out->len);
        if (r < 0) {
                out->data[out->len] = 0;
                return r;
        }
        out->len += plen;
        out->data[out->len] = 0;
        return 0;
}

int hf_poly1305_aes(const uint8_t mac_k[16], const uint8_t mac_r[16], const uint8_t nonce[16],
                    const void *msg, size_t n, uint8_t tag[16])
{
        _cleanup_(hf_cipher_freep) HfCipher *c = NULL;
        uint8_t t[16];
        int r;

        if (!mac_k || !mac_r || !nonce || !tag || (!msg && n > 0))
                return -EINVAL;
        r = cipher_new_raw(NULL, mac_k, mac_r, &c);
        if (r < 0)
                return r;
        r = cipher_mac(c, nonce, msg, n, t);
        if (r < 0)
                return r;
        memcpy(tag, t, sizeof(t));
        return 0;
}

/*
 * SHA-256 only fails when OpenSSL cannot allocate or is broken. The void API cannot report that,
 * and a wrong ID would silently corrupt a vault, so stop the process instead.
 */
static _noreturn_ void sha256_fail(void)
{
        log_error("SHA-256 failed inside OpenSSL");
        abort();
}

void hf_sha256(const void *p, size_t n, HfId *ret)
{
        unsigned int len = 0;

        if (algs_get() < 0)
                sha256_fail();
        if (!EVP_Digest(n > 0 ? p : "", n, ret->b, &len, alg_sha256, NULL) || len != sizeof(ret->b))
                sha256_fail();
}

struct HfSha256 {
        EVP_MD_CTX *ctx;
};

HfSha256 *hf_sha256_free(HfSha256 *s)
{
        if (!s)
                return NULL;
        EVP_MD_CTX_free(s->ctx);
        free(s);
        return NULL;
}

int hf_sha256_new(HfSha256 **ret)
{
        _cleanup_(hf_sha256_freep) HfSha256 *s = NULL;
        int r;

        r = algs_get();
        if (r < 0)
                return r;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->ctx = EVP_MD_CTX_new();
        if (!s->ctx)
                return -ENOMEM;
        if (!EVP_DigestInit_ex2(s->ctx, alg_sha256, NULL))
                return -EIO;
        *ret = TAKE_PTR(s);
        return 0;
}

void hf_sha256_init(HfSha256 *s)
{
        if (!EVP_DigestInit_ex2(s->ctx, alg_sha256, NULL))
                sha256_fail();
}

void hf_sha256_update(HfSha256 *s, const void *p, size_t n)
{
        if (n > 0 && !EVP_DigestUpdate(s->ctx, p, n))
                sha256_fail();
}

void hf_sha256_final(HfSha256 *s, HfId *ret)
{
        unsigned int len = 0;

        if (!EVP_DigestFinal_ex(s->ctx, ret->b, &len) || len != sizeof(ret->b))
                sha256_fail();
}

int hf_random_bytes(void *p, size_t n)
{
        uint8_t *q = p;

        while (n > 0) {
                size_t k = MIN(n, (size_t)INT_MAX);

                if (RAND_bytes(q, (int)k) != 1)
                        return -EIO;
                q += k;
                n -= k;
        }
        return 0;
}

/* Memory for scrypt's V array (128*r*N) and for B (128*r*p), each. restic uses 32-64 MiB. */
#define SCRYPT_MAX_MEM ((uint64_t)1 << 30)

int hf_kdf_scrypt(const char *password, size_t pwlen, const uint8_t *salt, size_t saltlen,
                  uint64_t N, uint32_t r, uint32_t p, HfKey *ret)
{
        uint8_t out[64];
        int k;

        if ((!password && pwlen > 0) || (!salt && saltlen > 0) || !ret)
                return -EINVAL;
        /* N and the rest are checked by hf_scrypt(); here the limits a key file may ask for. */
        if (r == 0 || p == 0)
                return -EINVAL;
        /* Written as divisions so that a huge N or r cannot overflow the product. */
        if (N > SCRYPT_MAX_MEM / 128 / r || p > SCRYPT_MAX_MEM / 128 / r)
                return -EINVAL;
        /* RFC 7914 requires N < 2^(128*r/8) (OpenSSL enforces it too). */
        if (r < 4 && N >= (uint64_t)1 << (16 * r))
                return -EINVAL;
        k = hf_scrypt(password, pwlen, salt, saltlen, N, r, p, 0, out, sizeof(out));
        if (k < 0) {
                OPENSSL_cleanse(out, sizeof(out));
                return k;
        }
        memcpy(ret->encrypt, out, 32);
        memcpy(ret->mac_k, out + 32, 16);
        memcpy(ret->mac_r, out + 48, 16);
        OPENSSL_cleanse(out, sizeof(out));
        return 0;
}

int hf_memcmp_ct(const void *a, const void *b, size_t n)
{
        if (n == 0)
                return 0;
        return CRYPTO_memcmp(a, b, n) != 0;
}
