/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Times given to recover --since/--before (and to scripts that pass them on). Any bytes either
 * fail cleanly or give a finite time.
 */
#include <math.h>

#include "../../src/recover/recover.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        double t;

        if (hf_recover_parse_time((const char *)data, size, 1764216000.0, &t) == 0)
                FUZZ_CHECK(isfinite(t));
        return 0;
}
