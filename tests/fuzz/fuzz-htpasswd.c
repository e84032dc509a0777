/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * htpasswd files for holdfast serve. The parser keeps only "user:hash" lines with a hash
 * crypt(3) can check, bounded in count and length. No password is checked here: a bcrypt
 * cost taken from the input could make one check take minutes.
 */
#include "../../src/server/server.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        HfHtpasswd *h = NULL;
        unsigned skipped = 0;

        if (hf_htpasswd_parse((const char *)data, size, &h, &skipped) == 0) {
                FUZZ_CHECK(hf_htpasswd_count(h) <= 10000);
                FUZZ_CHECK(hf_htpasswd_count(h) + skipped <= size);
        }
        hf_htpasswd_free(h);
        return 0;
}
