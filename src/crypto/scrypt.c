/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * scrypt (RFC 7914) with its p lanes spread over threads. The lanes are independent: B =
 * PBKDF2-HMAC-SHA256(P, S, 1, p * 128r) is cut into p blocks, each goes through ROMix on its
 * own, and the key is PBKDF2-HMAC-SHA256(P, B', 1, dkLen). One thread per core works through
 * them, so a key whose p was calibrated for one core opens in about ceil(p / cores) lanes'
 * time; the output is the same as computing them one after another (tests/unit/test-crypto.c
 * compares it with OpenSSL's EVP_PBE_scrypt).
 */
#include <errno.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../base/macro.h"
#include "../base/util.h"
#include "crypto.h"

/* All lanes' V arrays together stay under this; beyond it fewer threads run. */
#define SCRYPT_THREADS_MEM ((uint64_t)256 << 20)

static inline uint32_t rotl32(uint32_t x, int n)
{
        return (x << n) | (x >> (32 - n));
}

static inline uint32_t load_le32(const uint8_t *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void store_le32(uint8_t *p, uint32_t v)
{
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
        p[2] = (uint8_t)(v >> 16);
        p[3] = (uint8_t)(v >> 24);
}

/* B = B + Salsa20/8 core(B), on 16 little-endian words already loaded. */
static void salsa20_8(uint32_t b[16])
{
        uint32_t x[16];

        memcpy(x, b, sizeof(x));
        for (int i = 0; i < 8; i += 2) {
                /* Columns. */
                x[4] ^= rotl32(x[0] + x[12], 7);
                x[8] ^= rotl32(x[4] + x[0], 9);
                x[12] ^= rotl32(x[8] + x[4], 13);
                x[0] ^= rotl32(x[12] + x[8], 18);
                x[9] ^= rotl32(x[5] + x[1], 7);
                x[13] ^= rotl32(x[9] + x[5], 9);
                x[1] ^= rotl32(x[13] + x[9], 13);
                x[5] ^= rotl32(x[1] + x[13], 18);
                x[14] ^= rotl32(x[10] + x[6], 7);
                x[2] ^= rotl32(x[14] + x[10], 9);
                x[6] ^= rotl32(x[2] + x[14], 13);
                x[10] ^= rotl32(x[6] + x[2], 18);
                x[3] ^= rotl32(x[15] + x[11], 7);
                x[7] ^= rotl32(x[3] + x[15], 9);
                x[11] ^= rotl32(x[7] + x[3], 13);
                x[15] ^= rotl32(x[11] + x[7], 18);
                /* Rows. */
                x[1] ^= rotl32(x[0] + x[3], 7);
                x[2] ^= rotl32(x[1] + x[0], 9);
                x[3] ^= rotl32(x[2] + x[1], 13);
                x[0] ^= rotl32(x[3] + x[2], 18);
                x[6] ^= rotl32(x[5] + x[4], 7);
                x[7] ^= rotl32(x[6] + x[5], 9);
                x[4] ^= rotl32(x[7] + x[6], 13);
                x[5] ^= rotl32(x[4] + x[7], 18);
                x[11] ^= rotl32(x[10] + x[9], 7);
                x[8] ^= rotl32(x[11] + x[10], 9);
                x[9] ^= rotl32(x[8] + x[11], 13);
                x[10] ^= rotl32(x[9] + x[8], 18);
                x[12] ^= rotl32(x[15] + x[14], 7);
                x[13] ^= rotl32(x[12] + x[15], 9);
                x[14] ^= rotl32(x[13] + x[12], 13);
                x[15] ^= rotl32(x[14] + x[13], 18);
        }
        for (int i = 0; i < 16; i++)
                b[i] += x[i];
}

/*
 * BlockMix_salsa20/8 of in (2r blocks of 16 words) into out: X = in[2r-1]; X = Salsa(X ^ in[i])
 * for each block i, even i's results to out's first half, odd i's to its second half.
 */
static void block_mix(const uint32_t *in, uint32_t *out, uint32_t r)
{
        uint32_t x[16];

        memcpy(x, in + (2 * (size_t)r - 1) * 16, sizeof(x));
        for (size_t i = 0; i < 2 * (size_t)r; i++) {
                for (int k = 0; k < 16; k++)
                        x[k] ^= in[i * 16 + k];
                salsa20_8(x);
                memcpy(out + ((i & 1) * r + i / 2) * 16, x, sizeof(x));
        }
}

static inline void swap_words(uint32_t **a, uint32_t **b)
{
        uint32_t *t = *a;
        *a = *b;
        *b = t;
}

/* ROMix of one lane (128r bytes at b), with v (N * 32r words) and xy (64r words) as scratch. */
static void romix(uint8_t *b, uint32_t r, uint64_t N, uint32_t *v, uint32_t *xy)
{
        const size_t words = 32 * (size_t)r;
        uint32_t *x = xy, *y = xy + words;

        for (size_t k = 0; k < words; k++)
                x[k] = load_le32(b + 4 * k);
        for (uint64_t i = 0; i < N; i++) {
                memcpy(v + i * words, x, words * 4);
                block_mix(x, y, r);
                swap_words(&x, &y);
        }
        for (uint64_t i = 0; i < N; i++) {
                /* Integerify: the first 64 bits of the last block, little-endian, mod N. */
                const uint32_t *last = x + (2 * (size_t)r - 1) * 16;
                uint64_t j = ((uint64_t)last[1] << 32 | last[0]) & (N - 1);
                const uint32_t *vj = v + j * words;
                for (size_t k = 0; k < words; k++)
                        x[k] ^= vj[k];
                block_mix(x, y, r);
                swap_words(&x, &y);
        }
        for (size_t k = 0; k < words; k++)
                store_le32(b + 4 * k, x[k]);
}

typedef struct {
        uint8_t *b;
        uint64_t N;
        uint32_t r, p;
        atomic_uint next; /* the next lane to take; >= p once a worker has done the last */
} Lanes;

/*
 * Takes lanes until none are left; each thread has its own V, a mapping of its own: zero, so no
 * word is ever read unset; advised huge pages, as a first touch of each 4 KiB page costs more
 * (util.h); not from malloc (hf_alloc_huge), whose heap would keep the advice for the small
 * allocations that land there later; and not scrubbed before munmap, as nothing can read
 * its pages after it (the kernel zeroes a page before handing it out again). Without memory
 * for it, the thread takes no lane.
 */
static void *lane_worker(void *arg)
{
        Lanes *l = arg;
        size_t words = 32 * (size_t)l->r, vlen = l->N * words * 4;
        uint32_t *v = mmap(NULL, vlen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        uint32_t *xy = calloc(2, words * 4);
        unsigned i;

        if (v == MAP_FAILED)
                v = NULL;
        hf_mem_hint_huge(v, vlen);
        if (v && xy)
                while ((i = atomic_fetch_add(&l->next, 1)) < l->p)
                        romix(l->b + (size_t)i * 128 * l->r, l->r, l->N, v, xy);
        if (v)
                (void)munmap(v, vlen);
        if (xy)
                OPENSSL_cleanse(xy, 2 * words * 4);
        free(xy);
        return NULL;
}

int hf_scrypt(const char *password, size_t pwlen, const uint8_t *salt, size_t saltlen, uint64_t N,
              uint32_t r, uint32_t p, unsigned threads, uint8_t *out, size_t outlen)
{
        size_t blen;
        pthread_t tid[64];
        unsigned started = 0;
        Lanes l = { .N = N, .r = r, .p = p };
        int k = 0;

        if (N < 2 || (N & (N - 1)) != 0 || r == 0 || p == 0 || (uint64_t)r * p >= (1u << 24) ||
            N > SIZE_MAX / 128 / r || outlen == 0 || outlen > INT_MAX || pwlen > INT_MAX ||
            saltlen > INT_MAX)
                return -EINVAL;
        blen = (size_t)128 * r * p; /* < 2^31 */
        if (threads == 0) {
                uint64_t by_mem = SCRYPT_THREADS_MEM / (128 * (uint64_t)r * N);
                threads = (unsigned)MIN((uint64_t)hf_ncpus(), MAX(by_mem, (uint64_t)1));
        }
        threads = MIN(MIN(threads, p), (unsigned)ELEMENTSOF(tid) + 1);
        atomic_init(&l.next, 0);

        l.b = malloc(blen);
        if (!l.b)
                return -ENOMEM;
        if (PKCS5_PBKDF2_HMAC(pwlen ? password : "", (int)pwlen,
                              saltlen ? salt : (const uint8_t *)"", (int)saltlen, 1, EVP_sha256(),
                              (int)blen, l.b) != 1) {
                k = -EIO;
                goto out;
        }
        /* The calling thread is one of the workers; a thread that cannot start is not needed. */
        for (unsigned i = 1; i < threads; i++)
                if (pthread_create(&tid[started], NULL, lane_worker, &l) == 0)
                        started++;
        (void)lane_worker(&l);
        for (unsigned i = 0; i < started; i++)
                (void)pthread_join(tid[i], NULL);
        if (atomic_load(&l.next) < p)
                k = -ENOMEM; /* no worker had memory for its V */
        if (k == 0 && PKCS5_PBKDF2_HMAC(pwlen ? password : "", (int)pwlen, l.b, (int)blen, 1,
                                        EVP_sha256(), (int)outlen, out) != 1)
                k = -EIO;
out:
        OPENSSL_cleanse(l.b, blen);
        free(l.b);
        return k < 0 ? k : (int)started + 1;
}
