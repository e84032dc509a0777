/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Content analysis reads files an attacker wrote (in the privsep child). The input is split
 * at its first byte into a pre-image and a post-image; the features must stay in range and
 * the verdict must be one of the known ones, for any bytes.
 */
#include <math.h>

#include "../../src/sentinel/sentinel.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        HfFeatures f;

        if (size < 1)
                return 0;
        size_t cut = (size_t)data[0] * (size - 1) / 255;
        const uint8_t *pre = data + 1, *post = data + 1 + cut;
        size_t pn = cut, qn = size - 1 - cut;

        for (int with_pre = 0; with_pre < 2; with_pre++) {
                hf_analyze_buffers(with_pre ? pre : NULL, pn, pn, post, qn, qn, &f);
                FUZZ_CHECK(f.changed <= qn);
                FUZZ_CHECK(f.entropy_changed >= 0 && f.entropy_changed <= 8.0001);
                FUZZ_CHECK(f.entropy_after >= 0 && f.entropy_after <= 8.0001);
                FUZZ_CHECK(f.b64_changed >= 0 && f.b64_changed <= 1);
                FUZZ_CHECK(f.blocks_changed <= f.blocks_total);
                FUZZ_CHECK((unsigned)f.magic_after < _HF_MAGIC_MAX);
                HfFileVerdict v = hf_file_verdict(&f);
                FUZZ_CHECK((unsigned)v <= HF_FILE_NEW_RANDOM);
                FUZZ_CHECK(hf_file_verdict_name(v)[0] != '?');
        }
        return 0;
}
