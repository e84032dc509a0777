/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * restic's Rabin chunker (restic-format.md §7), streaming. The state between calls is only
 * the window, the digest and the chunk length so far, so block boundaries of the input never
 * change where chunks end.
 */
#include <assert.h>
#include <string.h>

#include "chunker.h"

#define POL_DEGREE 53
/* Digest bits above the top byte's position: d >> POL_SHIFT is the byte that overflows next. */
#define POL_SHIFT (POL_DEGREE - 8)
#define SPLIT_MASK ((UINT64_C(1) << 20) - 1)
/* restic slides nothing in before this many bytes of a chunk: they cannot be in the window. */
#define SKIP_BYTES (HF_CHUNK_MIN - HF_CHUNK_WINDOW)

struct HfChunker {
        uint64_t out[256]; /* hash of byte b followed by 63 zero bytes: removes b leaving */
        uint64_t mod[256]; /* reduction of the byte pushed past x^53, with that byte itself */
        uint64_t digest;
        size_t count; /* bytes of the current chunk seen so far */
        unsigned wpos;
        uint8_t window[HF_CHUNK_WINDOW];
        HfPol pol;
};

/* h * x^bits mod pol, one bit at a time; h must already be reduced. */
static uint64_t mul_xpow_mod(uint64_t h, unsigned bits, HfPol pol)
{
        const uint64_t top = UINT64_C(1) << POL_DEGREE;

        for (unsigned i = 0; i < bits; i++) {
                h <<= 1;
                if (h & top)
                        h ^= pol;
        }
        return h;
}

static void chunker_tables(HfChunker *c)
{
        for (unsigned b = 0; b < 256; b++) {
                c->out[b] = mul_xpow_mod(b, 8 * (HF_CHUNK_WINDOW - 1), c->pol);
                /*
                 * The update shifts the digest left by 8, so its top byte i lands at bits
                 * 53..60. XOR-ing mod[i] both clears those bits (the b << 53 part) and adds
                 * their value i * x^53 reduced mod pol.
                 */
                c->mod[b] = mul_xpow_mod(b, POL_DEGREE, c->pol) | ((uint64_t)b << POL_DEGREE);
        }
}

int hf_chunker_new(HfPol pol, HfChunker **ret)
{
        HfChunker *c;

        assert(ret);

        if (hf_pol_deg(pol) != POL_DEGREE)
                return -EINVAL;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->pol = pol;
        chunker_tables(c);
        hf_chunker_reset(c);

        *ret = c;
        return 0;
}

HfChunker *hf_chunker_free(HfChunker *c)
{
        free(c);
        return NULL;
}

/* One step of the rolling hash: o leaves the window, b enters it. */
static inline __attribute__((always_inline)) uint64_t roll(const HfChunker *c, uint64_t d,
                                                           uint8_t o, uint8_t b)
{
        d ^= c->out[o];
        return ((d << 8) | b) ^ c->mod[d >> POL_SHIFT];
}

void hf_chunker_reset(HfChunker *c)
{
        assert(c);

        memset(c->window, 0, sizeof(c->window));
        c->count = 0;
        /* restic starts each chunk by sliding in a 1 byte, which leaves digest 1 and wpos 1. */
        c->digest = roll(c, 0, 0, 1);
        c->window[0] = 1;
        c->wpos = 1;
}

/*
 * Rolls the digest d over p[i, end) where the byte leaving the window is p[k - 64] for every
 * k in the range. Returns the index after the first cut, or SIZE_MAX; *dp is the digest there
 * (or at end).
 */
static size_t scan_flat(const HfChunker *c, const uint8_t *p, size_t i, size_t end, uint64_t *dp)
{
        uint64_t d = *dp;

        for (; i < end; i++) {
                d = roll(c, d, p[i - HF_CHUNK_WINDOW], p[i]);
                if (_unlikely_((d & SPLIT_MASK) == 0)) {
                        *dp = d;
                        return i + 1;
                }
        }
        *dp = d;
        return SIZE_MAX;
}

/*
 * The same as scan_flat(), several times as fast on a long range. Each step's table lookup
 * depends on the step before, so one digest leaves the core waiting on its loads. But the
 * digest after byte k is the fingerprint of the 64 bytes before it, whatever came earlier, so
 * a range can be cut into STREAMS segments, each past the first starting from a fingerprint
 * of its own first window, and the segments rolled in one loop. The first segment's cut wins,
 * then the second's, and so on: once segment k has cut, only a later-found cut of a segment
 * before it can still be earlier.
 *
 * A long range is rolled in blocks of STREAMS segments of SEG bytes: with the segment length
 * a constant, every stream's bytes are one base register plus a fixed displacement away, and
 * the eight digests stay in registers. What is left after the blocks is split into STREAMS
 * segments of its own length, or rolled flat when they would be too short.
 */
#define STREAMS 8
#define SEG (16u * 1024)
/* Remainders shorter than STREAMS times this are rolled as one stream. */
#define SEG_MIN 4096u

/*
 * Rolls the STREAMS streams (stream k: p[k * seg, (k + 1) * seg)) from byte *tp of each on,
 * until one of them cuts or all reach their end. Returns a bit per stream that cut at the byte
 * it stopped at (0: none); *tp is that byte.
 */
static inline __attribute__((always_inline)) unsigned
roll_streams(const HfChunker *c, const uint8_t *p, size_t seg, uint64_t *d, size_t *tp)
{
        uint64_t v[STREAMS];
        size_t t = *tp;
        unsigned cut = 0;

        for (unsigned k = 0; k < STREAMS; k++)
                v[k] = d[k];
        for (; t < seg; t++) {
                bool none = true;
#pragma GCC unroll 8
                for (unsigned k = 0; k < STREAMS; k++) {
                        size_t a = k * seg + t;
                        v[k] = roll(c, v[k], p[a - HF_CHUNK_WINDOW], p[a]);
                        none = none && (v[k] & SPLIT_MASK) != 0;
                }
                if (_unlikely_(!none)) {
                        for (unsigned k = 0; k < STREAMS; k++)
                                cut |= (unsigned)((v[k] & SPLIT_MASK) == 0) << k;
                        break;
                }
        }
        for (unsigned k = 0; k < STREAMS; k++)
                d[k] = v[k];
        *tp = t;
        return cut;
}

/*
 * Rolls STREAMS segments of seg bytes at p, *dp being the digest before p. Returns the index
 * after the first cut, or SIZE_MAX; *dp is the digest there (or at the end of the last
 * segment).
 */
static inline __attribute__((always_inline)) size_t
scan_segments(const HfChunker *c, const uint8_t *p, size_t seg, uint64_t *dp)
{
        uint64_t d[STREAMS] = { *dp };
        unsigned before = (1u << STREAMS) - 1; /* streams whose cut would be the earliest */
        size_t t = 0, at = SIZE_MAX;

        for (unsigned k = 1; k < STREAMS; k++)
                for (size_t j = k * seg - HF_CHUNK_WINDOW; j < k * seg; j++)
                        d[k] = roll(c, d[k], 0, p[j]);
        /*
         * All streams roll on to the end (the ones past a cut for nothing: at most one block
         * per chunk), but only a cut of a stream before the earliest so far counts.
         */
        while (t < seg && before) {
                unsigned cut = roll_streams(c, p, seg, d, &t) & before;
                if (cut) {
                        unsigned k = (unsigned)__builtin_ctz(cut);
                        *dp = d[k];
                        at = k * seg + t + 1;
                        before = (1u << k) - 1;
                }
                t++;
        }
        if (at == SIZE_MAX)
                *dp = d[STREAMS - 1];
        return at;
}

static size_t scan_block(const HfChunker *c, const uint8_t *p, uint64_t *dp)
{
        return scan_segments(c, p, SEG, dp);
}

static size_t scan_streams(const HfChunker *c, const uint8_t *p, size_t i, size_t end, uint64_t *dp)
{
        size_t seg, k;

        for (; end - i >= (size_t)STREAMS * SEG; i += (size_t)STREAMS * SEG) {
                k = scan_block(c, p + i, dp);
                if (k != SIZE_MAX)
                        return i + k;
        }
        seg = (end - i) / STREAMS;
        if (seg >= SEG_MIN) {
                k = scan_segments(c, p + i, seg, dp);
                if (k != SIZE_MAX)
                        return i + k;
                i += STREAMS * seg;
        }
        return scan_flat(c, p, i, end, dp);
}

size_t hf_chunker_scan(HfChunker *c, const uint8_t *p, size_t n, bool *ret_cut,
                       uint64_t *ret_digest)
{
        size_t count, i = 0, end, flat;
        uint8_t *win;
        uint64_t d;
        unsigned wpos;

        assert(c);
        assert(p || n == 0);
        assert(ret_cut);

        count = c->count;
        if (count < SKIP_BYTES) {
                size_t k = MIN(n, SKIP_BYTES - count);

                count += k;
                i = k;
        }

        d = c->digest;
        wpos = c->wpos;
        win = c->window;

        /* The bytes that complete the first window: no cut is possible before MinSize. */
        if (count < HF_CHUNK_MIN - 1) {
                end = i + MIN(n - i, HF_CHUNK_MIN - 1 - count);
                count += end - i;
                for (; i < end; i++) {
                        uint8_t b = p[i];

                        d = roll(c, d, win[wpos], b);
                        win[wpos] = b;
                        wpos = (wpos + 1) & (HF_CHUNK_WINDOW - 1);
                }
        }

        /*
         * Every byte from here on ends a chunk of length >= MinSize; stop at MaxSize at last.
         * The byte leaving the window is p[i - 64] once that byte is in p and was slid in (the
         * first byte here pushes out the 1 the chunk started with): from there on the window
         * array is not needed.
         */
        end = i + MIN(n - i, HF_CHUNK_MAX - count);
        flat = MIN(end, MAX((size_t)HF_CHUNK_WINDOW, count < HF_CHUNK_MIN ? i + 1 : i));
        count += end - i;
        for (; i < flat; i++) {
                uint8_t b = p[i];

                d = roll(c, d, win[wpos], b);
                win[wpos] = b;
                wpos = (wpos + 1) & (HF_CHUNK_WINDOW - 1);
                if (_unlikely_((d & SPLIT_MASK) == 0)) {
                        i++;
                        goto cut;
                }
        }
        if (i < end) {
                size_t k = scan_streams(c, p, i, end, &d);

                if (k != SIZE_MAX) {
                        i = k;
                        goto cut;
                }
                memcpy(win, p + end - HF_CHUNK_WINDOW, HF_CHUNK_WINDOW);
                wpos = 0;
                i = end;
        }
        if (count >= HF_CHUNK_MAX)
                goto cut;

        c->digest = d;
        c->wpos = wpos;
        c->count = count;
        *ret_cut = false;
        return n;

cut:
        hf_chunker_reset(c);
        *ret_cut = true;
        if (ret_digest)
                *ret_digest = d;
        return i;
}
