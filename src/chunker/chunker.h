/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * restic's content-defined chunker (restic-format.md §7): a Rabin fingerprint over a 64-byte
 * window modulo a random irreducible polynomial of degree 53. A chunk ends after byte p when its
 * length L >= HF_CHUNK_MIN and (L >= HF_CHUNK_MAX or (H & 0xFFFFF) == 0).
 */

#include "../base/macro.h"

#define HF_CHUNK_MIN (512u * 1024)
#define HF_CHUNK_MAX (8u * 1024 * 1024)
#define HF_CHUNK_WINDOW 64

typedef uint64_t HfPol;

/* True when pol has degree 53 and is irreducible over GF(2) (Ben-Or). */
bool hf_pol_irreducible(HfPol pol);
/* Degree of pol, -1 for 0. */
int hf_pol_deg(HfPol pol);
/* A random irreducible polynomial of degree 53, as restic derives it. */
int hf_pol_random(HfPol *ret);

typedef struct HfChunker HfChunker;

/* -EINVAL when pol is not of degree 53. Tables are derived from pol once per chunker. */
int hf_chunker_new(HfPol pol, HfChunker **ret);
HfChunker *hf_chunker_free(HfChunker *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(HfChunker *, hf_chunker_free);

/* Starts a new chunk (call at the start of every file). */
void hf_chunker_reset(HfChunker *c);

/*
 * Streams data of the current chunk. Returns how many bytes of p belong to the current chunk:
 * when *ret_cut is true the chunk ends after that many bytes (and the chunker is reset for the
 * next one); when false all n bytes were consumed and the chunk continues. ret_digest, if not
 * NULL, receives the fingerprint at the cut. The caller keeps the chunk's bytes; the chunker
 * keeps only its rolling state, so data may come in any block sizes.
 */
size_t hf_chunker_scan(HfChunker *c, const uint8_t *p, size_t n, bool *ret_cut,
                       uint64_t *ret_digest);
