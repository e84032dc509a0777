/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The master key JSON inside a key file. It is behind the key file's MAC, but that MAC is keyed
 * by a password, so whoever knows one password can write any master key JSON for the others.
 * A key that parses must be valid and survive format -> parse unchanged.
 */
#include <string.h>

#include "../../src/repo/key.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_buf_ HfBuf out = HF_BUF_INIT(4096);
        HfKey k, k2;

        if (hf_masterkey_parse(data, size, &k) < 0)
                return 0;
        FUZZ_CHECK(hf_key_valid(&k));
        FUZZ_CHECK(hf_masterkey_format(&k, &out) == 0);
        FUZZ_CHECK(hf_masterkey_parse(out.data, out.len, &k2) == 0);
        FUZZ_CHECK(memcmp(&k, &k2, sizeof(k)) == 0);
        hf_key_wipe(&k);
        hf_key_wipe(&k2);
        return 0;
}
