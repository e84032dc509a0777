/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Key files (restic-format.md §2.2) are plain JSON anyone with write access to keys/ can
 * replace. Only the parser is fuzzed: running scrypt on fuzzed parameters would measure scrypt,
 * not the parser. What hf_keyfile_open relies on is checked.
 */
#include "../../src/repo/key.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_buf_ HfBuf err = HF_BUF_INIT(4096);
        HfKeyFile k = { 0 };
        int r;

        r = hf_keyfile_parse(data, size, &k, &err);
        if (r < 0) {
                FUZZ_CHECK(r != -EPROTO || err.len > 0);
                return 0;
        }
        FUZZ_CHECK(k.params.N >= 2 && (k.params.N & (k.params.N - 1)) == 0);
        FUZZ_CHECK(k.params.r >= 1 && k.params.p >= 1);
        FUZZ_CHECK(k.data.len >= HF_CRYPTO_OVERHEAD);
        FUZZ_CHECK(k.username && k.hostname);
        FUZZ_CHECK(k.created.nsec >= 0 && k.created.nsec <= 999999999);
        hf_keyfile_done(&k);
        return 0;
}
