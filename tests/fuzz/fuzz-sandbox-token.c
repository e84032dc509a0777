/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The attack simulator's sandbox token (.holdfast-sandbox): the only thing that keeps the
 * simulator inside folders it created. Whatever the bytes, a token that parses names only
 * relative paths that stay below the sandbox and never the token itself, and a loop device.
 */
#include <string.h>

#include "../../src/recover/recover.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        HfSandboxToken t;

        if (hf_sandbox_token_parse((const char *)data, size, &t) < 0)
                return 0;
        FUZZ_CHECK(strlen(t.nonce) == 32);
        for (size_t i = 0; i < t.n_files; i++) {
                const char *p = t.files[i];
                FUZZ_CHECK(p[0] && p[0] != '/');
                FUZZ_CHECK(strcmp(p, HF_SANDBOX_TOKEN) != 0);
                FUZZ_CHECK(strncmp(p, "../", 3) != 0 && strcmp(p, "..") != 0);
                FUZZ_CHECK(!strstr(p, "/../") && !strstr(p, "//"));
                size_t n = strlen(p);
                FUZZ_CHECK(!(n >= 3 && strcmp(p + n - 3, "/..") == 0));
        }
        FUZZ_CHECK(!t.disk || strncmp(t.disk, "/dev/loop", 9) == 0);
        hf_sandbox_token_done(&t);
        return 0;
}
