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

size_t hf_chunker_scan(HfChunker *c, const uint8_t *p, size_t n, bool *ret_cut,
                       uint64_t *ret_digest)
{
        size_t count, i = 0, end;
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

        /* Every byte from here on ends a chunk of length >= MinSize; stop at MaxSize at last. */
        end = i + MIN(n - i, HF_CHUNK_MAX - count);
        count += end - i;
        for (; i < end; i++) {
                uint8_t b = p[i];

                d = roll(c, d, win[wpos], b);
                win[wpos] = b;
                wpos = (wpos + 1) & (HF_CHUNK_WINDOW - 1);
                if (_unlikely_((d & SPLIT_MASK) == 0)) {
                        i++;
                        goto cut;
                }
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
