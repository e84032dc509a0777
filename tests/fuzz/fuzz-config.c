/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The vault config (restic-format.md §3): version, ID and chunker polynomial. The polynomial
 * check (Ben-Or irreducibility) runs on any 64-bit value the file holds.
 */
#include <string.h>

#include "../../src/chunker/chunker.h"
#include "../../src/repo/repo.h"
#include "fuzz.h"

static bool is_hex(const char *s)
{
        for (; *s; s++)
                if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
                        return false;
        return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_buf_ HfBuf out = HF_BUF_INIT(4096);
        char id[65], id2[65];
        int version, version2;
        HfPol pol, pol2;

        if (hf_config_parse(data, size, &version, id, &pol) < 0)
                return 0;
        FUZZ_CHECK(version == 1 || version == 2);
        FUZZ_CHECK(strnlen(id, sizeof(id)) > 0 && strnlen(id, sizeof(id)) < sizeof(id));
        FUZZ_CHECK(hf_pol_deg(pol) == 53 && hf_pol_irreducible(pol));
        if (!is_hex(id))
                return 0;
        FUZZ_CHECK(hf_config_format(version, id, pol, &out) >= 0);
        FUZZ_CHECK(hf_config_parse(out.data, out.len, &version2, id2, &pol2) == 0);
        FUZZ_CHECK(version == version2 && strcmp(id, id2) == 0 && pol == pol2);
        return 0;
}
