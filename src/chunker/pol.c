/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Polynomials over GF(2) packed into a uint64 (bit j = coefficient of x^j), as restic/chunker
 * uses them: addition is XOR, and products are reduced step by step so nothing ever needs more
 * than 64 bits.
 */
#include <assert.h>

#include "../crypto/crypto.h"
#include "chunker.h"

#define POL_DEGREE 53
/* restic gives up after this many random candidates; about 1 in 53 is irreducible. */
#define POL_RANDOM_TRIES 1000000

int hf_pol_deg(HfPol pol)
{
        if (pol == 0)
                return -1;
        return 63 - __builtin_clzll(pol);
}

/* Remainder of x divided by d (d != 0). */
static HfPol pol_mod(HfPol x, HfPol d)
{
        int dd = hf_pol_deg(d);

        assert(d != 0);
        for (int dx = hf_pol_deg(x); dx >= dd; dx = hf_pol_deg(x))
                x ^= d << (dx - dd);
        return x;
}

/*
 * a * b mod m by shift-and-add. a is kept reduced (degree below deg m), so shifting it left
 * by one reaches at most degree deg m <= 63 and one XOR with m reduces it again: unlike a
 * full product, this cannot overflow for any m.
 */
static HfPol pol_mulmod(HfPol a, HfPol b, HfPol m)
{
        HfPol top = (HfPol)1 << hf_pol_deg(m);
        HfPol r = 0;

        a = pol_mod(a, m);
        b = pol_mod(b, m);
        while (b != 0) {
                if (b & 1)
                        r ^= a;
                b >>= 1;
                a <<= 1;
                if (a & top)
                        a ^= m;
        }
        return r;
}

static HfPol pol_gcd(HfPol a, HfPol b)
{
        while (b != 0) {
                HfPol t = pol_mod(a, b);

                a = b;
                b = t;
        }
        return a;
}

/*
 * Ben-Or: f of degree n is irreducible iff it shares no factor with x^(2^i) - x for
 * i = 1..n/2 (any factor of degree <= n/2 would divide one of them). x^(2^i) mod f comes from
 * squaring the previous one, so each round costs one mulmod and one gcd.
 */
bool hf_pol_irreducible(HfPol pol)
{
        int n = hf_pol_deg(pol);
        HfPol h = 2; /* x */

        if (n != POL_DEGREE)
                return false;

        for (int i = 1; i <= n / 2; i++) {
                h = pol_mulmod(h, h, pol);
                /* Subtraction is XOR in GF(2): h - x. */
                if (pol_gcd(pol, h ^ 2) != 1)
                        return false;
        }
        return true;
}

int hf_pol_random(HfPol *ret)
{
        assert(ret);

        for (int i = 0; i < POL_RANDOM_TRIES; i++) {
                uint8_t b[8];
                HfPol f = 0;
                int r;

                r = hf_random_bytes(b, sizeof(b));
                if (r < 0)
                        return r;
                /* Little-endian, as restic reads it, so the same random bytes give the same f. */
                for (size_t k = 0; k < sizeof(b); k++)
                        f |= (HfPol)b[k] << (8 * k);

                f &= ((HfPol)1 << (POL_DEGREE + 1)) - 1;
                f |= ((HfPol)1 << POL_DEGREE) | 1;
                if (hf_pol_irreducible(f)) {
                        *ret = f;
                        return 0;
                }
        }

        /* Only a broken random source gets here (the odds are about (52/53)^1e6). */
        return -EIO;
}
