/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A strict, allocation-free pull parser for JSON (RFC 8259) over a buffer, for the documents
 * on the hot paths (tree blobs, index files): no DOM, exact uint64 numbers, bounded nesting.
 * Errors are sticky: after the first problem every call fails and hf_json_error() tells where
 * and what. Everything it reads may have been written by an attacker.
 *
 *     HfJson j;
 *     hf_json_init(&j, text, len);
 *     if (hf_json_enter_object(&j) < 0) ...
 *     while ((r = hf_json_next_key(&j, &key, &keylen)) > 0) {
 *             if (key is "nodes") ...hf_json_enter_array / hf_json_next_item...
 *             else hf_json_skip(&j);
 *     }
 *     ... hf_json_end(&j) checks that only whitespace follows.
 */

#include "buf.h"

#define HF_JSON_MAX_DEPTH 64

typedef struct HfJson {
        const char *p;
        const char *start;
        const char *end;
        int depth;
        int error; /* 0 or a negative errno (-EPROTO for malformed input) */
        const char *what;
        bool need_comma[HF_JSON_MAX_DEPTH + 1];
} HfJson;

void hf_json_init(HfJson *j, const void *text, size_t len);

/* Consumes '{'; the object's members follow through hf_json_next_key(). */
int hf_json_enter_object(HfJson *j);
/*
 * Returns 1 and the next member's key (the raw bytes between the quotes, escapes not decoded:
 * the keys we look for have none, so an escaped key is simply an unknown one), or 0 after
 * consuming the closing '}'.
 */
int hf_json_next_key(HfJson *j, const char **ret_key, size_t *ret_len);
/* Consumes '['. */
int hf_json_enter_array(HfJson *j);
/* Returns 1 when another element follows (positioned at it), 0 after consuming ']'. */
int hf_json_next_item(HfJson *j);

/* 1 (and consumes it) when the next value is null, 0 otherwise. */
int hf_json_null(HfJson *j);
/* A string value, decoded (escapes, surrogate pairs) and appended to out. */
int hf_json_string(HfJson *j, HfBuf *out);
/*
 * A string value without decoding: *ret points into the text. Fails with -EPROTO if the
 * string contains escapes (IDs, types and times never do).
 */
int hf_json_string_raw(HfJson *j, const char **ret, size_t *ret_len);
/* A non-negative integer up to UINT64_MAX (no sign, fraction or exponent). */
int hf_json_u64(HfJson *j, uint64_t *ret);
int hf_json_bool(HfJson *j, bool *ret);
/* Skips any value (objects and arrays within the depth limit). */
int hf_json_skip(HfJson *j);
/* Checks that nothing but whitespace is left. */
int hf_json_end(HfJson *j);

/* The sticky error, and a sentence with the byte offset ("at byte 12: expected ':'"). */
int hf_json_error(const HfJson *j, char *buf, size_t n);

static inline bool hf_json_key_is(const char *key, size_t len, const char *want)
{
        size_t n = __builtin_strlen(want);
        return len == n && __builtin_memcmp(key, want, n) == 0;
}
