/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Key files (restic-format.md §2.2): plain JSON holding scrypt parameters, a salt and the
 * master key encrypted with the key scrypt derives from the password.
 */

#include "../base/buf.h"
#include "../base/gojson.h"
#include "../crypto/crypto.h"

typedef struct HfKdfParams {
        uint64_t N;
        uint32_t r;
        uint32_t p;
} HfKdfParams;

/* Parameters that take about target_ms here, within restic's 60 MiB memory cap. */
int hf_kdf_calibrate(unsigned target_ms, HfKdfParams *ret);
/* The same with timer() telling how long scrypt takes with given parameters (for tests). */
int hf_kdf_calibrate_with(unsigned target_ms, double (*timer)(const HfKdfParams *),
                          HfKdfParams *ret);
/* "N,r,p" as given on a command line. */
int hf_kdf_params_parse(const char *s, HfKdfParams *ret);

typedef struct HfKeyFile {
        HfTime created;
        char *username;
        char *hostname;
        HfKdfParams params;
        HfBuf salt;
        HfBuf data; /* IV || CT || MAC of the master key JSON */
} HfKeyFile;

void hf_keyfile_done(HfKeyFile *k);
/* -EPROTO (with a sentence in err) for malformed JSON, a kdf other than scrypt, bad base64. */
int hf_keyfile_parse(const void *json, size_t n, HfKeyFile *ret, HfBuf *err);
/* Derives the user key and decrypts the master key. -EBADMSG when the password is wrong. */
int hf_keyfile_open(const HfKeyFile *k, const char *password, HfKey *ret_master);
/* Writes the JSON of a new key file for master under password into out. */
int hf_keyfile_create(const char *password, const HfKey *master, const HfKdfParams *params,
                      const char *username, const char *hostname, HfBuf *out);

/* The master key JSON restic stores inside a key file, and its parser. */
int hf_masterkey_format(const HfKey *k, HfBuf *out);
int hf_masterkey_parse(const void *json, size_t n, HfKey *ret);
