/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Many SHA-256 digests at once (FIPS 180-4, written from the standard).
 *
 * One message's SHA-256 is a chain of block compressions, each depending on the one before.
 * SHA-NI runs that chain at about 1.4 GB/s per core on the machines we measure, bound by the
 * latency of its round instructions rather than by their number. Sixteen independent messages
 * fill the sixteen 32-bit lanes of AVX-512 registers instead: a round is a dozen vector
 * instructions for all sixteen, about 2.1x the bytes per second of SHA-NI with every lane
 * busy (docs/PERFORMANCE.md).
 *
 * A lane takes the next message as soon as its own ends. When fewer than LANES_MIN lanes are
 * left busy and no message waits, they are finished as chains of their own: a mostly idle
 * vector is slower than SHA-NI. Since one SHA-NI chain mostly waits on its own round
 * instructions, chains run two at a time, their blocks interleaved, a chain that ends making
 * room for the next (1.14-1.35x the bytes per second of one chain on an Intel Xeon, ~1.5x on
 * an AMD EPYC). Without AVX-512, or for fewer than LANES_MIN messages, the messages run as such
 * pairs of chains on SHA-NI; without SHA-NI either, each goes to hf_sha256() (OpenSSL), and what
 * is left of a vector is finished in portable C.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "crypto.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_X86 1
#else
#define HAVE_X86 0
#endif

#define LANES 16
#define LANES_MIN 11
#define BLOCK 64
/* Messages ordered (and handed to the lanes) per call of many_x16(). */
#define ORDER_MAX 256

static const uint32_t K256[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
};

static const uint32_t IV256[8] = {
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
        0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

static uint32_t load_be32(const uint8_t *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t ror32(uint32_t x, unsigned n)
{
        return x >> n | x << (32 - n);
}

/* n blocks into st, one after the other: the fallback where there is no SHA-NI. */
static void compress_c(uint32_t st[8], const uint8_t *p, size_t n)
{
        for (; n > 0; n--, p += BLOCK) {
                uint32_t w[64], v[8];

                for (unsigned t = 0; t < 16; t++)
                        w[t] = load_be32(p + 4 * t);
                for (unsigned t = 16; t < 64; t++) {
                        uint32_t s0 = ror32(w[t - 15], 7) ^ ror32(w[t - 15], 18) ^ w[t - 15] >> 3;
                        uint32_t s1 = ror32(w[t - 2], 17) ^ ror32(w[t - 2], 19) ^ w[t - 2] >> 10;
                        w[t] = w[t - 16] + s0 + w[t - 7] + s1;
                }
                memcpy(v, st, sizeof(v));
                for (unsigned t = 0; t < 64; t++) {
                        uint32_t s1 = ror32(v[4], 6) ^ ror32(v[4], 11) ^ ror32(v[4], 25);
                        uint32_t ch = (v[4] & v[5]) ^ (~v[4] & v[6]);
                        uint32_t t1 = v[7] + s1 + ch + K256[t] + w[t];
                        uint32_t s0 = ror32(v[0], 2) ^ ror32(v[0], 13) ^ ror32(v[0], 22);
                        uint32_t maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
                        memmove(v + 1, v, 7 * sizeof(uint32_t));
                        v[4] += t1;
                        v[0] = t1 + s0 + maj;
                }
                for (unsigned i = 0; i < 8; i++)
                        st[i] += v[i];
        }
}

#if HAVE_X86

#define TARGET_SHANI __attribute__((target("sha,sse4.1,ssse3")))
/*
 * Not instrumented by AddressSanitizer: with detect_stack_use_after_return its frames live on a
 * "fake stack" aligned to 32 bytes, and the 64-byte aligned spills of ZMM registers there
 * fault. What these functions read is given by their callers (whole blocks of the messages).
 */
#define TARGET_X16 __attribute__((target("avx512f,avx512bw"), no_sanitize_address))

/*
 * SHA-NI keeps the state as two registers, ABEF and CDGH (A in the highest lane), and takes the
 * message four words at a time, already added to the round constants.
 */
TARGET_SHANI static inline __attribute__((always_inline)) void
shani_load(const uint32_t st[8], __m128i *abef, __m128i *cdgh)
{
        __m128i abcd = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)st), 0xB1);
        __m128i efgh = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)(st + 4)), 0x1B);

        *abef = _mm_alignr_epi8(abcd, efgh, 8);
        *cdgh = _mm_blend_epi16(efgh, abcd, 0xF0);
}

TARGET_SHANI static inline __attribute__((always_inline)) void
shani_store(uint32_t st[8], __m128i abef, __m128i cdgh)
{
        __m128i abcd = _mm_shuffle_epi32(abef, 0x1B), efgh = _mm_shuffle_epi32(cdgh, 0xB1);

        _mm_storeu_si128((__m128i *)st, _mm_blend_epi16(abcd, efgh, 0xF0));
        _mm_storeu_si128((__m128i *)(st + 4), _mm_alignr_epi8(efgh, abcd, 8));
}

/* One block p into the state. */
TARGET_SHANI static inline __attribute__((always_inline)) void
shani_block(__m128i *abef_, __m128i *cdgh_, const uint8_t *p)
{
        const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
        __m128i abef = *abef_, cdgh = *cdgh_, m[4];

#pragma GCC unroll 4
        for (unsigned i = 0; i < 4; i++)
                m[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * i)), bswap);
#pragma GCC unroll 16
        for (unsigned r = 0; r < 16; r++) {
                __m128i k = _mm_loadu_si128((const __m128i *)(K256 + 4 * r));
                __m128i msg = _mm_add_epi32(m[r & 3], k);
                cdgh = _mm_sha256rnds2_epu32(cdgh, abef, msg);
                abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(msg, 0x0E));
                if (r < 12) {
                        /* Words 4r+16..4r+19 from 4r..4r+15. */
                        __m128i x = _mm_sha256msg1_epu32(m[r & 3], m[(r + 1) & 3]);
                        x = _mm_add_epi32(x, _mm_alignr_epi8(m[(r + 3) & 3], m[(r + 2) & 3], 4));
                        m[r & 3] = _mm_sha256msg2_epu32(x, m[(r + 3) & 3]);
                }
        }
        *abef_ = _mm_add_epi32(abef, *abef_);
        *cdgh_ = _mm_add_epi32(cdgh, *cdgh_);
}

/* n blocks into st with SHA-NI. */
TARGET_SHANI static void compress_shani(uint32_t st[8], const uint8_t *p, size_t n)
{
        __m128i abef, cdgh;

        shani_load(st, &abef, &cdgh);
        for (; n > 0; n--, p += BLOCK)
                shani_block(&abef, &cdgh, p);
        shani_store(st, abef, cdgh);
}

/*
 * n blocks of p0 into s0 and of p1 into s1. The two chains do not depend on each other, so
 * the core runs the round instructions of one while those of the other wait.
 */
TARGET_SHANI static void compress_shani_x2(uint32_t s0[8], const uint8_t *p0, uint32_t s1[8],
                                           const uint8_t *p1, size_t n)
{
        __m128i abef0, cdgh0, abef1, cdgh1;

        shani_load(s0, &abef0, &cdgh0);
        shani_load(s1, &abef1, &cdgh1);
        for (; n > 0; n--, p0 += BLOCK, p1 += BLOCK) {
                shani_block(&abef0, &cdgh0, p0);
                shani_block(&abef1, &cdgh1, p1);
        }
        shani_store(s0, abef0, cdgh0);
        shani_store(s1, abef1, cdgh1);
}

/* Rows of 16 words in, columns out: r[i] word j becomes r[j] word i. */
TARGET_X16 static void transpose16(__m512i r[16])
{
        __m512i t[16];

        for (unsigned i = 0; i < 16; i += 2) {
                t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
                t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
        }
        for (unsigned i = 0; i < 16; i += 4) {
                r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
                r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
                r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
                r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
        }
        for (unsigned i = 0; i < 16; i += 8)
                for (unsigned j = 0; j < 4; j++) {
                        t[i + j] = _mm512_shuffle_i32x4(r[i + j], r[i + j + 4], 0x88);
                        t[i + j + 4] = _mm512_shuffle_i32x4(r[i + j], r[i + j + 4], 0xDD);
                }
        for (unsigned j = 0; j < 8; j++) {
                r[j] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0x88);
                r[j + 8] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0xDD);
        }
}

#define ROR16(x, n) _mm512_ror_epi32((x), (n))
#define XOR3(a, b, c) _mm512_ternarylogic_epi32((a), (b), (c), 0x96)
#define CH(e, f, g) _mm512_ternarylogic_epi32((e), (f), (g), 0xCA)
#define MAJ(a, b, c) _mm512_ternarylogic_epi32((a), (b), (c), 0xE8)

/*
 * n blocks of each of 16 messages: lane j reads p[j], p[j] + 64, ... when bit j of live is
 * set, else p[j] n times (a block of zeros, for a lane without a message, whose state is then
 * not used). State word i of lane j is st[i][j].
 */
TARGET_X16 static void compress_x16(uint32_t st[8][LANES], const uint8_t *const p[LANES],
                                    unsigned live, size_t n)
{
        const __m512i bswap = _mm512_broadcast_i32x4(
                _mm_set_epi8(12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3));
        __m512i s[8];

        for (unsigned i = 0; i < 8; i++)
                s[i] = _mm512_loadu_si512(st[i]);
        for (size_t b = 0; b < n; b++) {
                __m512i w[16], a = s[0], bb = s[1], c = s[2], d = s[3], e = s[4], f = s[5],
                               g = s[6], h = s[7];

                for (unsigned j = 0; j < LANES; j++)
                        w[j] = _mm512_loadu_si512(p[j] + (live >> j & 1 ? b * BLOCK : 0));
                transpose16(w);
                for (unsigned j = 0; j < 16; j++)
                        w[j] = _mm512_shuffle_epi8(w[j], bswap);
#pragma GCC unroll 64
                for (unsigned t = 0; t < 64; t++) {
                        __m512i wt, t1, t2;
                        if (t < 16)
                                wt = w[t];
                        else {
                                __m512i w15 = w[(t - 15) & 15], w2 = w[(t - 2) & 15];
                                __m512i s0 = XOR3(ROR16(w15, 7), ROR16(w15, 18),
                                                  _mm512_srli_epi32(w15, 3));
                                __m512i s1 = XOR3(ROR16(w2, 17), ROR16(w2, 19),
                                                  _mm512_srli_epi32(w2, 10));
                                wt = _mm512_add_epi32(_mm512_add_epi32(w[t & 15], s0),
                                                      _mm512_add_epi32(w[(t - 7) & 15], s1));
                                w[t & 15] = wt;
                        }
                        t1 = _mm512_add_epi32(
                                _mm512_add_epi32(h, XOR3(ROR16(e, 6), ROR16(e, 11), ROR16(e, 25))),
                                _mm512_add_epi32(
                                        CH(e, f, g),
                                        _mm512_add_epi32(wt, _mm512_set1_epi32((int)K256[t]))));
                        t2 = _mm512_add_epi32(XOR3(ROR16(a, 2), ROR16(a, 13), ROR16(a, 22)),
                                              MAJ(a, bb, c));
                        h = g;
                        g = f;
                        f = e;
                        e = _mm512_add_epi32(d, t1);
                        d = c;
                        c = bb;
                        bb = a;
                        a = _mm512_add_epi32(t1, t2);
                }
                s[0] = _mm512_add_epi32(s[0], a);
                s[1] = _mm512_add_epi32(s[1], bb);
                s[2] = _mm512_add_epi32(s[2], c);
                s[3] = _mm512_add_epi32(s[3], d);
                s[4] = _mm512_add_epi32(s[4], e);
                s[5] = _mm512_add_epi32(s[5], f);
                s[6] = _mm512_add_epi32(s[6], g);
                s[7] = _mm512_add_epi32(s[7], h);
        }
        for (unsigned i = 0; i < 8; i++)
                _mm512_storeu_si512(st[i], s[i]);
}

static unsigned cpu_features(void)
{
        unsigned a, b, c, d, feats = 0;
        uint32_t xcr0_lo = 0, xcr0_hi = 0;

        if (!__get_cpuid(1, &a, &b, &c, &d))
                return 0;
        bool ssse3 = c & bit_SSSE3, sse41 = c & bit_SSE4_1, osxsave = c & bit_OSXSAVE;
        if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
                return 0;
        if ((b & bit_SHA) && ssse3 && sse41)
                feats |= HF_SHA256_SHANI;
        if (osxsave) {
                __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
                /* The OS saves the SSE, AVX, opmask and all 32 ZMM registers. */
                if ((xcr0_lo & 0xE6) == 0xE6 && (b & bit_AVX512F) && (b & bit_AVX512BW))
                        feats |= HF_SHA256_X16;
        }
        return feats;
}

#else

static unsigned cpu_features(void)
{
        return 0;
}

#endif

static unsigned features_mask = ~0u;

unsigned hf_sha256_many_features(void)
{
        /* Workers of one process may ask first at the same time; they compute the same. */
        static atomic_int cached = -1;
        int k = atomic_load_explicit(&cached, memory_order_relaxed);

        if (k < 0) {
                k = (int)cpu_features();
                atomic_store_explicit(&cached, k, memory_order_relaxed);
        }
        return (unsigned)k & features_mask;
}

void hf_sha256_many_restrict(unsigned features)
{
        features_mask = features;
}

static void compress_one(unsigned feats, uint32_t st[8], const uint8_t *p, size_t n)
{
#if HAVE_X86
        if (feats & HF_SHA256_SHANI) {
                compress_shani(st, p, n);
                return;
        }
#endif
        (void)feats;
        compress_c(st, p, n);
}

static void compress_two(unsigned feats, uint32_t s0[8], const uint8_t *p0, uint32_t s1[8],
                         const uint8_t *p1, size_t n)
{
#if HAVE_X86
        if (feats & HF_SHA256_SHANI) {
                compress_shani_x2(s0, p0, s1, p1, n);
                return;
        }
#endif
        compress_one(feats, s0, p0, n);
        compress_one(feats, s1, p1, n);
}

/*
 * A message being hashed, with its state: its whole blocks from the caller's buffer, then 1 or
 * 2 padded ones. Not to be copied once started (p may point into tail).
 */
typedef struct Chain {
        const uint8_t *p; /* next block */
        size_t left;      /* blocks left in this part */
        bool in_tail;
        size_t job;
        size_t tail_blocks;
        uint32_t st[8]; /* while in the vector, its lane of many_x16()'s state instead */
        uint8_t tail[2 * BLOCK];
} Chain;

static void chain_start(Chain *c, const HfSha256Job *jobs, size_t job)
{
        const uint8_t *data = jobs[job].data;
        size_t len = jobs[job].len, whole = len / BLOCK, rest = len % BLOCK;
        uint64_t bits = (uint64_t)len * 8;

        memset(c->tail, 0, sizeof(c->tail));
        if (rest > 0)
                memcpy(c->tail, data + whole * BLOCK, rest);
        c->tail[rest] = 0x80;
        c->tail_blocks = rest < BLOCK - 8 ? 1 : 2;
        for (unsigned i = 0; i < 8; i++)
                c->tail[c->tail_blocks * BLOCK - 1 - i] = (uint8_t)(bits >> (8 * i));
        memcpy(c->st, IV256, sizeof(c->st));
        c->job = job;
        c->p = data;
        c->left = whole;
        c->in_tail = false;
        if (whole == 0) {
                c->p = c->tail;
                c->left = c->tail_blocks;
                c->in_tail = true;
        }
}

/* Moves c on by steps blocks (at most c->left): true when its message is done. */
static bool chain_advance(Chain *c, size_t steps)
{
        c->p += steps * BLOCK;
        c->left -= steps;
        if (c->left > 0)
                return false;
        if (c->in_tail)
                return true;
        c->p = c->tail;
        c->left = c->tail_blocks;
        c->in_tail = true;
        return false;
}

static void digest_out(const uint32_t st[8], HfId *out)
{
        for (unsigned i = 0; i < 8; i++) {
                out->b[4 * i] = (uint8_t)(st[i] >> 24);
                out->b[4 * i + 1] = (uint8_t)(st[i] >> 16);
                out->b[4 * i + 2] = (uint8_t)(st[i] >> 8);
                out->b[4 * i + 3] = (uint8_t)st[i];
        }
}

/*
 * Finishes the started chains cs[0..n_cs), then the messages order[0..n_order) from their
 * start, two at a time: a chain that ends makes room for the next; the last goes on alone.
 */
static void chains_x2(unsigned feats, const HfSha256Job *jobs, Chain *const *cs, size_t n_cs,
                      const size_t *order, size_t n_order)
{
        Chain fresh[2], *slot[2] = { NULL, NULL };
        size_t next_cs = 0, next_order = 0;

        for (;;) {
                for (unsigned i = 0; i < 2; i++) {
                        if (slot[i])
                                continue;
                        if (next_cs < n_cs)
                                slot[i] = cs[next_cs++];
                        else if (next_order < n_order) {
                                chain_start(&fresh[i], jobs, order[next_order++]);
                                slot[i] = &fresh[i];
                        }
                }
                if (!slot[0] || !slot[1])
                        break;
                size_t steps = MIN(slot[0]->left, slot[1]->left);
                compress_two(feats, slot[0]->st, slot[0]->p, slot[1]->st, slot[1]->p, steps);
                for (unsigned i = 0; i < 2; i++)
                        if (chain_advance(slot[i], steps)) {
                                digest_out(slot[i]->st, jobs[slot[i]->job].out);
                                slot[i] = NULL;
                        }
        }
        for (unsigned i = 0; i < 2; i++) {
                Chain *c = slot[i];
                if (!c)
                        continue;
                compress_one(feats, c->st, c->p, c->left);
                if (!c->in_tail)
                        compress_one(feats, c->st, c->tail, c->tail_blocks);
                digest_out(c->st, jobs[c->job].out);
        }
}

#if HAVE_X86
/* Jobs are taken longest first (order), so that what is left at the end, when the vector
 * empties, is short. */
static void many_x16(unsigned feats, const HfSha256Job *jobs, const size_t *order, size_t n)
{
        static const uint8_t zero_block[BLOCK];
        uint32_t st[8][LANES];
        Chain lanes[LANES], *rest[LANES];
        unsigned busy = 0;
        size_t next = 0, n_rest = 0;

        for (unsigned j = 0; j < LANES && next < n; j++, next++) {
                chain_start(&lanes[j], jobs, order[next]);
                for (unsigned i = 0; i < 8; i++)
                        st[i][j] = IV256[i];
                busy |= 1u << j;
        }
        while (busy) {
                const uint8_t *ptr[LANES];
                size_t steps = SIZE_MAX;

                if ((unsigned)__builtin_popcount(busy) < LANES_MIN && next == n)
                        break;
                for (unsigned j = 0; j < LANES; j++) {
                        ptr[j] = zero_block;
                        if (busy & (1u << j)) {
                                ptr[j] = lanes[j].p;
                                steps = MIN(steps, lanes[j].left);
                        }
                }
                compress_x16(st, ptr, busy, steps);
                for (unsigned j = 0; j < LANES; j++) {
                        Chain *c = &lanes[j];
                        if (!(busy & (1u << j)) || !chain_advance(c, steps))
                                continue;
                        for (unsigned i = 0; i < 8; i++)
                                c->st[i] = st[i][j];
                        digest_out(c->st, jobs[c->job].out);
                        if (next < n) {
                                chain_start(c, jobs, order[next++]);
                                for (unsigned i = 0; i < 8; i++)
                                        st[i][j] = IV256[i];
                        } else
                                busy &= ~(1u << j);
                }
        }
        /* Too few left to fill the vector: they go on as chains from where they are. */
        for (unsigned j = 0; j < LANES; j++) {
                if (!(busy & (1u << j)))
                        continue;
                for (unsigned i = 0; i < 8; i++)
                        lanes[j].st[i] = st[i][j];
                rest[n_rest++] = &lanes[j];
        }
        chains_x2(feats, jobs, rest, n_rest, NULL, 0);
}
#endif

void hf_sha256_many(const HfSha256Job *jobs, size_t n)
{
        unsigned feats = hf_sha256_many_features();

        /* ORDER_MAX at a time, each slice sorted longest first (insertion sort: a slice is
         * short, and qsort() would need the jobs in a global). */
        for (size_t s = 0; s < n; s += ORDER_MAX) {
                size_t order[ORDER_MAX], m = MIN(n - s, (size_t)ORDER_MAX);
                bool x16 = (feats & HF_SHA256_X16) && m >= LANES_MIN;

                if (!x16 && !(feats & HF_SHA256_SHANI)) {
                        for (size_t i = s; i < s + m; i++)
                                hf_sha256(jobs[i].data, jobs[i].len, jobs[i].out);
                        continue;
                }
                for (size_t i = 0; i < m; i++) {
                        size_t k = s + i, j = i;
                        for (; j > 0 && jobs[order[j - 1]].len < jobs[k].len; j--)
                                order[j] = order[j - 1];
                        order[j] = k;
                }
#if HAVE_X86
                if (x16) {
                        many_x16(feats, jobs, order, m);
                        continue;
                }
#endif
                chains_x2(feats, jobs, NULL, 0, order, m);
        }
}
