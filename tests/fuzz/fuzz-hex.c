/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Hex IDs (every object name, every ID in JSON) and hex decoding into fixed buffers: the
 * output bound must hold for any input length, and what decodes encodes back to the input
 * (lowercased).
 */
#include <ctype.h>
#include <string.h>

#include "../../src/base/util.h"
#include "fuzz.h"

static bool same_hex(const char *enc, const uint8_t *in, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (enc[i] != tolower(in[i]))
                        return false;
        return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const size_t outmaxes[] = { 0, 1, 16, 32, 4096 };
        uint8_t buf[4096 + 16];
        char hex[HF_ID_HEX_LEN + 1];
        HfId id;

        /* The trailing guard bytes must never be written. */
        for (size_t k = 0; k < ELEMENTSOF(outmaxes); k++) {
                size_t got = SIZE_MAX;
                memset(buf, 0xa5, sizeof(buf));
                if (hf_hex_decode((const char *)data, size, buf, outmaxes[k], &got) == 0) {
                        _cleanup_free_ char *enc = malloc(2 * got + 1);
                        FUZZ_CHECK(got == size / 2 && got <= outmaxes[k]);
                        if (!enc)
                                return 0;
                        hf_hex_encode(buf, got, enc);
                        FUZZ_CHECK(same_hex(enc, data, size));
                }
                for (size_t i = outmaxes[k]; i < sizeof(buf); i++)
                        FUZZ_CHECK(buf[i] == 0xa5);
        }

        if (hf_id_parse((const char *)data, size, &id) == 0) {
                FUZZ_CHECK(size == HF_ID_HEX_LEN);
                hf_id_hex(&id, hex);
                FUZZ_CHECK(same_hex(hex, data, size));
                FUZZ_CHECK(hf_id_is_zero(&id) == (strspn(hex, "0") == HF_ID_HEX_LEN));
        }
        return 0;
}
