/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Listings from a REST server (v2 objects with name and size, v1 names): a hostile server
 * controls them. Every name handed on is 64 lowercase hex; the first input byte picks the
 * version.
 */
#include <string.h>

#include "../../src/backend/backend.h"
#include "fuzz.h"

static int seen(void *userdata, const char *name, uint64_t size)
{
        size_t *n = userdata;

        FUZZ_CHECK(strlen(name) == 64 && strspn(name, "0123456789abcdef") == 64);
        if (++*n > 3)
                return -ECANCELED; /* a callback's error stops the walk */
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        size_t n = 0;
        int r;

        if (size == 0)
                return 0;
        r = hf_rest_parse_list(data + 1, size - 1, data[0] & 1, seen, &n);
        FUZZ_CHECK(r == 0 || r == -EPROTO || r == -ECANCELED);
        FUZZ_CHECK(r != -ECANCELED || n == 4);
        return 0;
}
