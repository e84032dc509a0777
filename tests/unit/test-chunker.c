/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The chunker against restic/chunker's own vectors (chunker_test.go, polynomials_test.go) and
 * the extra vector of restic-format.md §7, plus the streaming contract of hf_chunker_scan.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <string.h>

#include "gorand-cooked.h"
#include "src/chunker/chunker.h"
#include "src/crypto/crypto.h"

/* The polynomial all of restic's chunker vectors use. */
#define TEST_POL ((HfPol)0x3DA3358B4DC173)
#define MIB (1024u * 1024)

typedef struct Chunk {
        size_t start;
        size_t len;
        uint64_t cut;
        bool has_cut; /* false for the tail that EOF ended */
} Chunk;

typedef struct Expect {
        size_t len;
        uint64_t cut;
        const char *sha256;
} Expect;

static void *xmalloc(size_t n)
{
        void *p = malloc(n);

        assert_non_null(p);
        return p;
}

static void assert_sha256(const void *p, size_t n, const char *want)
{
        char hex[HF_ID_HEX_LEN + 1];
        HfId id;

        hf_sha256(p, n, &id);
        hf_id_hex(&id, hex);
        assert_string_equal(hex, want);
}

/*
 * Splits data like a backup of one file would: blocks of the sizes in bs (cycled) go through
 * hf_chunker_scan, and the bytes left after the last cut form the final chunk.
 */
static size_t split(HfChunker *c, const uint8_t *data, size_t n, const size_t *bs, size_t nbs,
                    Chunk *out, size_t max)
{
        size_t pos = 0, start = 0, nout = 0, k = 0;

        hf_chunker_reset(c);
        while (pos < n) {
                size_t len = MIN(bs[k++ % nbs], n - pos);

                while (len > 0) {
                        uint64_t digest = 0;
                        bool cut;
                        size_t m;

                        m = hf_chunker_scan(c, data + pos, len, &cut, &digest);
                        assert_true(m <= len);
                        pos += m;
                        len -= m;
                        if (!cut) {
                                assert_int_equal(len, 0);
                                continue;
                        }
                        assert_true(nout < max);
                        out[nout++] = (Chunk){ start, pos - start, digest, true };
                        start = pos;
                }
        }
        if (pos > start) {
                assert_true(nout < max);
                out[nout++] = (Chunk){ start, pos - start, 0, false };
        }
        return nout;
}

static size_t split_whole(HfChunker *c, const uint8_t *data, size_t n, Chunk *out, size_t max)
{
        size_t all = n == 0 ? 1 : n;

        return split(c, data, n, &all, 1, out, max);
}

/*
 * Checks every chunk's length and SHA-256, and the cut value of every chunk a cut ended (the
 * API does not report restic's meaningless value for the EOF chunk).
 */
static void assert_chunks(const uint8_t *data, const Chunk *got, size_t ngot, const Expect *want,
                          size_t nwant)
{
        assert_int_equal(ngot, nwant);
        for (size_t i = 0; i < nwant; i++) {
                assert_int_equal(got[i].len, want[i].len);
                if (got[i].has_cut)
                        assert_int_equal(got[i].cut, want[i].cut);
                else
                        assert_int_equal(i, nwant - 1);
                assert_sha256(data + got[i].start, got[i].len, want[i].sha256);
        }
}

static void assert_same_chunks(const Chunk *a, size_t na, const Chunk *b, size_t nb)
{
        assert_int_equal(na, nb);
        for (size_t i = 0; i < na; i++) {
                assert_int_equal(a[i].start, b[i].start);
                assert_int_equal(a[i].len, b[i].len);
                assert_int_equal(a[i].has_cut, b[i].has_cut);
                assert_int_equal(a[i].cut, b[i].cut);
        }
}

/*
 * Go's math/rand source (rngSource): an additive lagged Fibonacci generator, x[n] = x[n-607] +
 * x[n-273] mod 2^64, whose register is seeded from a Lehmer generator mixed with a fixed table.
 * Only what rand.New(rand.NewSource(seed)).Uint32() needs.
 */
#define GO_RNG_LEN 607
#define GO_RNG_TAP 273

typedef struct GoRand {
        int tap;
        int feed;
        uint64_t vec[GO_RNG_LEN];
} GoRand;

/* x * 48271 mod (2^31 - 1) by Schrage's method, which never overflows 32 bits. */
static int32_t go_seedrand(int32_t x)
{
        const int32_t a = 48271, q = 44488, r = 3399, m = INT32_MAX;
        int32_t hi = x / q, lo = x % q;

        x = a * lo - r * hi;
        if (x < 0)
                x += m;
        return x;
}

static void go_rand_seed(GoRand *g, int64_t seed)
{
        int32_t x;

        g->tap = 0;
        g->feed = GO_RNG_LEN - GO_RNG_TAP;

        seed %= INT32_MAX;
        if (seed < 0)
                seed += INT32_MAX;
        if (seed == 0)
                seed = 89482311;

        x = (int32_t)seed;
        /* The first 20 Lehmer outputs are thrown away, then three make up each register word. */
        for (int i = -20; i < GO_RNG_LEN; i++) {
                x = go_seedrand(x);
                if (i < 0)
                        continue;

                uint64_t u = (uint64_t)(uint32_t)x << 40;
                x = go_seedrand(x);
                u ^= (uint64_t)(uint32_t)x << 20;
                x = go_seedrand(x);
                u ^= (uint64_t)(uint32_t)x;
                u ^= (uint64_t)gorand_cooked[i];
                g->vec[i] = u;
        }
}

static uint32_t go_rand_uint32(GoRand *g)
{
        uint64_t x;

        if (--g->tap < 0)
                g->tap += GO_RNG_LEN;
        if (--g->feed < 0)
                g->feed += GO_RNG_LEN;

        x = g->vec[g->feed] + g->vec[g->tap];
        g->vec[g->feed] = x;
        /* Int63() drops bit 63; Uint32() is the top 32 of those 63 bits. */
        return (uint32_t)((x & INT64_MAX) >> 31);
}

/* restic's getRandom(23, 32 MiB): each Uint32 little-endian. */
static uint8_t *make_input_a(size_t n)
{
        uint8_t *buf = xmalloc(n);
        GoRand g;

        go_rand_seed(&g, 23);
        for (size_t i = 0; i < n; i += 4) {
                uint32_t r = go_rand_uint32(&g);

                buf[i] = (uint8_t)r;
                buf[i + 1] = (uint8_t)(r >> 8);
                buf[i + 2] = (uint8_t)(r >> 16);
                buf[i + 3] = (uint8_t)(r >> 24);
        }
        return buf;
}

/* Input C of restic-format.md §7: SHA-256(LE64(i)) for i = 0..n/32-1. */
static uint8_t *make_input_c(size_t n)
{
        uint8_t *buf = xmalloc(n);

        for (uint64_t i = 0; i < n / 32; i++) {
                uint8_t le[8];
                HfId id;

                for (size_t k = 0; k < sizeof(le); k++)
                        le[k] = (uint8_t)(i >> (8 * k));
                hf_sha256(le, sizeof(le), &id);
                memcpy(buf + 32 * i, id.b, 32);
        }
        return buf;
}

#define INPUT_A_SIZE (32 * MIB)
#define INPUT_C_SIZE (16 * MIB)

/* chunker_test.go chunks1: Input A under TEST_POL with the default parameters. */
static const Expect chunks1[] = {
        { 2163460, 0x000b98d4cdf00000,
          "4b94cb2cf293855ea43bf766731c74969b91aa6bf3c078719aabdd19860d590d" },
        { 643703, 0x000d4e8364d00000,
          "5727a63c0964f365ab8ed2ccf604912f2ea7be29759a2b53ede4d6841e397407" },
        { 1528956, 0x0015a25c2ef00000,
          "a73759636a1e7a2758767791c69e81b69fb49236c6929e5d1b654e06e37674ba" },
        { 1955808, 0x00102a8242e00000,
          "c955fb059409b25f07e5ae09defbbc2aadf117c97a3724e06ad4abd2787e6824" },
        { 2222372, 0x00045da878000000,
          "6ba5e9f7e1b310722be3627716cf469be941f7f3e39a4c3bcefea492ec31ee56" },
        { 2538687, 0x00198a8179900000,
          "8687937412f654b5cfe4a82b08f28393a0c040f77c6f95e26742c2fc4254bfde" },
        { 609606, 0x001d4e8d17100000,
          "5da820742ff5feb3369112938d3095785487456f65a8efc4b96dac4be7ebb259" },
        { 1205738, 0x000a7204dd600000,
          "cc70d8fad5472beb031b1aca356bcab86c7368f40faa24fe5f8922c6c268c299" },
        { 959742, 0x00183e71e1400000,
          "4065bdd778f95676c92b38ac265d361f81bff17d76e5d9452cf985a2ea5a4e39" },
        { 4036109, 0x001fec043c700000,
          "b9cf166e75200eb4993fc9b6e22300a6790c75e6b0fc8f3f29b68a752d42f275" },
        { 1525894, 0x000b1574b1500000,
          "2f238180e4ca1f7520a05f3d6059233926341090f9236ce677690c1823eccab3" },
        { 1352720, 0x00018965f2e00000,
          "afd12f13286a3901430de816e62b85cc62468c059295ce5888b76b3af9028d84" },
        { 811884, 0x00155628aa100000,
          "42d0cdb1ee7c48e552705d18e061abb70ae7957027db8ae8db37ec756472a70a" },
        { 1282314, 0x001909a0a1400000,
          "819721c2457426eb4f4c7565050c44c32076a56fa9b4515a1c7796441730eb58" },
        { 1318021, 0x001cceb980000000,
          "842eb53543db55bacac5e25cb91e43cc2e310fe5f9acc1aee86bdf5e91389374" },
        { 948640, 0x0011f7a470a00000,
          "b8e36bf7019bb96ac3fb7867659d2167d9d3b3148c09fe0de45850b8fe577185" },
        { 645464, 0x00030ce2d9400000,
          "5584bd27982191c3329f01ed846bfd266e96548dfa87018f745c33cfc240211d" },
        { 533758, 0x0004435c53c00000,
          "4da778a25b72a9a0d53529eccfe2e5865a789116cb1800f470d8df685a8ab05d" },
        { 1128303, 0x0000c48517800000,
          "08c6b0b38095b348d80300f0be4c5184d2744a17147c2cba5cc4315abf4c048f" },
        { 800374, 0x000968473f900000,
          "820284d2c8fd243429674c996d8eb8d3450cbc32421f43113e980f516282c7bf" },
        { 2453512, 0x001e197c92600000,
          "5fa870ed107c67704258e5e50abe67509fb73562caf77caa843b5f243425d853" },
        { 2651975, 0x000ae6c868000000,
          "181347d2bbec32bef77ad5e9001e6af80f6abcf3576549384d334ee00c1988d8" },
        { 237392, 0x0000000000000001,
          "fcd567f5d866357a8e299fd5b2359bb2c8157c30395229c4e9b0a353944a7978" },
};

/* polynomials_test.go polIrredTests. */
static const struct {
        HfPol pol;
        bool irreducible;
} irred_vectors[] = {
        { 0x38f1e565e288df, false }, { 0x3DA3358B4DC173, true },  { 0x30a8295b9d5c91, false },
        { 0x255f4350b962cb, false }, { 0x267f776110a235, false }, { 0x2f4dae10d41227, false },
        { 0x2482734cacca49, true },  { 0x312daf4b284899, false }, { 0x29dfb6553d01d1, false },
        { 0x3548245eb26257, false }, { 0x3199e7ef4211b3, false }, { 0x362f39017dae8b, false },
        { 0x200d57aa6fdacb, false }, { 0x35e0a4efa1d275, false }, { 0x2ced55b026577f, false },
        { 0x260b012010893d, false }, { 0x2df29cbcd59e9d, false }, { 0x3f2ac7488bd429, false },
        { 0x3e5cb1711669fb, false }, { 0x226d8de57a9959, false }, { 0x3c8de80aaf5835, false },
        { 0x2026a59efb219b, false }, { 0x39dfa4d13fb231, false }, { 0x3143d0464b3299, false },
};

static void test_pol_deg(void **state)
{
        (void)state;
        assert_int_equal(hf_pol_deg(0), -1);
        assert_int_equal(hf_pol_deg(1), 0);
        assert_int_equal(hf_pol_deg(2), 1);
        assert_int_equal(hf_pol_deg(0x3af4b284899), 41); /* BenchmarkPolDeg */
        assert_int_equal(hf_pol_deg(TEST_POL), 53);
        assert_int_equal(hf_pol_deg(UINT64_C(1) << 63), 63);
        assert_int_equal(hf_pol_deg(UINT64_MAX), 63);
}

static void test_pol_irreducible(void **state)
{
        (void)state;
        for (size_t i = 0; i < ELEMENTSOF(irred_vectors); i++) {
                if (hf_pol_irreducible(irred_vectors[i].pol) != irred_vectors[i].irreducible)
                        fail_msg("pol 0x%" PRIx64 ": want irreducible=%d", irred_vectors[i].pol,
                                 irred_vectors[i].irreducible);
        }
        /* Irreducible, but the contract only accepts degree 53. */
        assert_false(hf_pol_irreducible(0x7));   /* x^2 + x + 1 */
        assert_false(hf_pol_irreducible(0x201)); /* x^9 + 1 is reducible anyway */
        assert_false(hf_pol_irreducible(0));
        assert_false(hf_pol_irreducible(TEST_POL << 1));
        /* x^53 alone is divisible by x. */
        assert_false(hf_pol_irreducible(UINT64_C(1) << 53));
}

static void test_pol_random(void **state)
{
        HfPol prev = 0;

        (void)state;
        for (int i = 0; i < 8; i++) {
                HfPol p = 0;

                assert_int_equal(hf_pol_random(&p), 0);
                assert_int_equal(hf_pol_deg(p), 53);
                assert_true(p & 1);
                assert_true(hf_pol_irreducible(p));
                /* About 2^47 candidates are irreducible: a repeat means the source is broken. */
                assert_true(p != prev);
                prev = p;
        }
}

static void test_chunker_new_rejects_degree(void **state)
{
        static const HfPol bad[] = {
                0, 1, TEST_POL >> 1, TEST_POL << 1, UINT64_C(1) << 63, UINT64_MAX,
        };
        _cleanup_(hf_chunker_freep) HfChunker *c = NULL;

        (void)state;
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                HfChunker *x = NULL;

                assert_int_equal(hf_chunker_new(bad[i], &x), -EINVAL);
                assert_null(x);
        }
        assert_int_equal(hf_chunker_new(TEST_POL, &c), 0);
        assert_non_null(c);
        assert_null(hf_chunker_free(NULL));
}

static void test_input_a_chunks1(void **state)
{
        _cleanup_(hf_chunker_freep) HfChunker *c = NULL;
        _cleanup_free_ uint8_t *a = NULL;
        Chunk got[64], got2[64];
        size_t n, n2, bs = MIB + 1;

        (void)state;
        a = make_input_a(INPUT_A_SIZE);
        /* Pins the Go RNG port before any chunk is compared. */
        assert_sha256(a, INPUT_A_SIZE,
                      "529617b3a6df2372a77f656f14a5baaf997dc03c1fc458d196f933fed0a46573");

        assert_int_equal(hf_chunker_new(TEST_POL, &c), 0);
        n = split_whole(c, a, INPUT_A_SIZE, got, ELEMENTSOF(got));
        assert_chunks(a, got, n, chunks1, ELEMENTSOF(chunks1));

        /* restic's TestChunkerReset: the same chunker gives the same chunks again. */
        n2 = split(c, a, INPUT_A_SIZE, &bs, 1, got2, ELEMENTSOF(got2));
        assert_same_chunks(got, n, got2, n2);
}

static void test_input_b_zeros(void **state)
{
        static const Expect zero_chunk = {
                HF_CHUNK_MIN, 0, "07854d2fef297a06ba81685e660c332de36d5d18d546927d30daad6d7fda1541"
        };
        _cleanup_(hf_chunker_freep) HfChunker *c = NULL;
        _cleanup_free_ uint8_t *z = NULL;
        Expect want[4];
        Chunk got[8];
        size_t n;

        (void)state;
        z = calloc(4, HF_CHUNK_MIN);
        assert_non_null(z);
        for (size_t i = 0; i < ELEMENTSOF(want); i++)
                want[i] = zero_chunk;

        assert_int_equal(hf_chunker_new(TEST_POL, &c), 0);
        n = split_whole(c, z, 4 * HF_CHUNK_MIN, got, ELEMENTSOF(got));
        /* The length is a multiple of MinSize, so even the last chunk ends on a real cut. */
        assert_int_equal(n, 4);
        for (size_t i = 0; i < n; i++)
                assert_true(got[i].has_cut);
        assert_chunks(z, got, n, want, ELEMENTSOF(want));
}

static const size_t input_c_lengths[] = {
        1015968, 1087132, 693439, 2344058, 903280,  1709091, 1791277,
        1802453, 1190352, 528291, 868679,  1105126, 1738070,
};

static void test_input_c(void **state)
{
        _cleanup_(hf_chunker_freep) HfChunker *c = NULL;
        _cleanup_free_ uint8_t *data = NULL;
        Chunk got[64];
        size_t n;

        (void)state;
        data = make_input_c(INPUT_C_SIZE);
        assert_sha256(data, INPUT_C_SIZE,
                      "01c65c8d6d336a8f1e9acf8bbfe807f7c1d0ec666ff41bc2db9f679849f03c03");

        assert_int_equal(hf_chunker_new(TEST_POL, &c), 0);
        n = split_whole(c, data, INPUT_C_SIZE, got, ELEMENTSOF(got));
        assert_int_equal(n, ELEMENTSOF(input_c_lengths));
        for (size_t i = 0; i < n; i++)
                assert_int_equal(got[i].len, input_c_lengths[i]);
        assert_true(got[0].has_cut);
        assert_int_equal(got[0].cut, UINT64_C(0x001051a055300000));
        assert_sha256(data, got[0].len,
                      "f3d509f80ced030c820556a720ed8a395ba468bf124218fde1df63139d2df0ae");
}

/* xorshift64: reproducible block sizes for the streaming test. */
static uint64_t xorshift64(uint64_t *s)
{
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        return *s;
}

static void test_streaming_independent_of_blocks(void **state)
{
        static const size_t fixed[] = { 1, 7, 64 * 1024, MIB + 1, 63, 64, 65, HF_CHUNK_MIN - 64 };
        _cleanup_(hf_chunker_freep) HfChunker *c = NULL;
        _cleanup_free_ uint8_t *data = NULL;
        size_t random_bs[997];
        uint64_t seed = 0x9e3779b97f4a7c15;
        Chunk ref[64], got[64];
        size_t nref, n;

        (void)state;
        data = make_input_c(INPUT_C_SIZE);
        assert_int_equal(hf_chunker_new(TEST_POL, &c), 0);
        nref = split_whole(c, data, INPUT_C_SIZE, ref, ELEMENTSOF(ref));
        assert_int_equal(nref, ELEMENTSOF(input_c_lengths));

        for (size_t i = 0; i < ELEMENTSOF(fixed); i++) {
                n = split(c, data, INPUT_C_SIZE, &fixed[i], 1, got, ELEMENTSOF(got));
                assert_same_chunks(ref, nref, got, n);
        }

        /* Mixed sizes, from single bytes to a few hundred KiB, so edges fall everywhere. */
        for (size_t i = 0; i < ELEMENTSOF(random_bs); i++) {
                uint64_t r = xorshift64(&seed);

                random_bs[i] = (r & 1) ? 1 + (r >> 1) % 300 : 1 + (r >> 1) % (300 * 1024);
        }
        n = split(c, data, INPUT_C_SIZE, random_bs, ELEMENTSOF(random_bs), got, ELEMENTSOF(got));
        assert_same_chunks(ref, nref, got, n);
}

/*
 * A long range is rolled as several streams at once, each starting from the fingerprint of
 * its own first window (chunker.c, scan_streams). Blocks of 3000 bytes are too short for that,
 * so they give the one-stream answer to compare with. On 48 MiB of pseudo-random bytes every
 * cut (about 30) falls at some point of some stream for the other block sizes. The same bytes
 * with 64 zero bytes put in at 1500 random places (64 zeros hash to 0, a cut) have several
 * candidate cuts in most ranges, in streams that find them in any order: the earliest in the
 * data must win.
 */
static void test_streams_match_one_stream(void **state)
{
        static const size_t one_stream = 3000;
        static const size_t sizes[] = { 20000, 70001, 200000, MIB + 1, 4 * MIB, 48 * MIB };
        const size_t n = 48 * MIB, max = 256;
        _cleanup_(hf_chunker_freep) HfChunker *c = NULL;
        _cleanup_free_ uint8_t *data = NULL;
        _cleanup_free_ Chunk *ref = NULL, *got = NULL;
        uint64_t seed = 0x2545f4914f6cdd1d;
        size_t nref;

        (void)state;
        data = malloc(n);
        ref = calloc(max, sizeof(Chunk));
        got = calloc(max, sizeof(Chunk));
        assert_non_null(data);
        assert_non_null(ref);
        assert_non_null(got);
        for (size_t i = 0; i < n; i += 8) {
                uint64_t r = xorshift64(&seed);
                memcpy(data + i, &r, 8);
        }
        assert_int_equal(hf_chunker_new(TEST_POL, &c), 0);
        for (int pass = 0; pass < 2; pass++) {
                if (pass == 1)
                        for (size_t i = 0; i < 1500; i++)
                                memset(data + xorshift64(&seed) % (n - 64), 0, 64);
                nref = split(c, data, n, &one_stream, 1, ref, max);
                if (pass == 0)
                        assert_in_range(nref, 20, 127);
                else
                        assert_in_range(nref, 80, max - 1);
                for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                        size_t k = split(c, data, n, &sizes[i], 1, got, max);
                        assert_same_chunks(ref, nref, got, k);
                }
        }
}

static void test_short_files(void **state)
{
        static const size_t sizes[] = { 1, 64, 1000, HF_CHUNK_MIN - 65, HF_CHUNK_MIN - 1 };
        _cleanup_(hf_chunker_freep) HfChunker *c = NULL;
        _cleanup_free_ uint8_t *data = NULL;
        Chunk got[4];
        size_t n;

        (void)state;
        data = make_input_c(HF_CHUNK_MIN);
        assert_int_equal(hf_chunker_new(TEST_POL, &c), 0);

        /* An empty file has no chunks at all. */
        assert_int_equal(split_whole(c, data, 0, got, ELEMENTSOF(got)), 0);

        for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                n = split_whole(c, data, sizes[i], got, ELEMENTSOF(got));
                assert_int_equal(n, 1);
                assert_int_equal(got[0].len, sizes[i]);
                assert_false(got[0].has_cut);
        }
}

/*
 * Chunks never exceed MaxSize. Zeros are no test of that: H of 64 zero bytes is 0, which
 * matches the split mask, so zeros cut at every MinSize. A run of 0x01 bytes hashes to a
 * constant whose low 20 bits are not zero, so only the MaxSize rule can cut it.
 */
static void test_max_size(void **state)
{
        const size_t size = 20 * MIB, bs = 4093;
        _cleanup_(hf_chunker_freep) HfChunker *c = NULL;
        _cleanup_free_ uint8_t *data = NULL;
        Chunk got[64], got2[64];
        size_t n, n2;

        (void)state;
        data = xmalloc(size);
        assert_int_equal(hf_chunker_new(TEST_POL, &c), 0);

        memset(data, 0, size);
        n = split_whole(c, data, size, got, ELEMENTSOF(got));
        assert_int_equal(n, size / HF_CHUNK_MIN);
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(got[i].len, HF_CHUNK_MIN);
                assert_true(got[i].has_cut);
                assert_int_equal(got[i].cut, 0);
        }

        memset(data, 0x01, size);
        n = split_whole(c, data, size, got, ELEMENTSOF(got));
        assert_int_equal(n, 3);
        assert_int_equal(got[0].len, HF_CHUNK_MAX);
        assert_int_equal(got[1].len, HF_CHUNK_MAX);
        assert_int_equal(got[2].len, 4 * MIB);
        assert_true(got[0].has_cut);
        assert_true(got[1].has_cut);
        assert_false(got[2].has_cut);
        /* Both cuts came from the MaxSize rule, with the same window contents. */
        assert_true((got[0].cut & 0xFFFFF) != 0);
        assert_int_equal(got[0].cut, got[1].cut);

        /* The same in small blocks: the MaxSize cut must land on the same byte. */
        n2 = split(c, data, size, &bs, 1, got2, ELEMENTSOF(got2));
        assert_same_chunks(got, n, got2, n2);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_pol_deg),
                cmocka_unit_test(test_pol_irreducible),
                cmocka_unit_test(test_pol_random),
                cmocka_unit_test(test_chunker_new_rejects_degree),
                cmocka_unit_test(test_input_a_chunks1),
                cmocka_unit_test(test_input_b_zeros),
                cmocka_unit_test(test_input_c),
                cmocka_unit_test(test_streaming_independent_of_blocks),
                cmocka_unit_test(test_streams_match_one_stream),
                cmocka_unit_test(test_short_files),
                cmocka_unit_test(test_max_size),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
