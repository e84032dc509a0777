/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The sentinel's config file (dist/holdfast.conf) may sit on a disk an intruder wrote to;
 * the parser must reject or accept any bytes without crashing, and what it accepts must be
 * sane: absolute clean paths, a known action, bounded lists.
 */
#include <string.h>

#include "../../src/sentinel/sentinel.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        HfSentinelConfig c;
        char err[256];

        if (size > 1 << 20)
                return 0;
        hf_sentinel_config_init(&c);
        if (hf_sentinel_config_parse(&c, (const char *)data, size, err, sizeof(err)) == 0) {
                FUZZ_CHECK(c.action <= HF_ACTION_KILL);
                FUZZ_CHECK(c.n_paths <= 256 && c.n_trusted <= 256 && c.n_exclude <= 256);
                for (size_t i = 0; i < c.n_paths; i++) {
                        FUZZ_CHECK(c.paths[i][0] == '/');
                        FUZZ_CHECK(!strstr(c.paths[i], "/../") && !strstr(c.paths[i], "//"));
                }
                for (size_t i = 0; i < c.n_trusted; i++)
                        FUZZ_CHECK(c.trusted[i].path && c.trusted[i].path[0] == '/');
                FUZZ_CHECK(c.alert_threshold <= c.threshold);
                FUZZ_CHECK(!c.webhook || strncmp(c.webhook, "http", 4) == 0);
        } else
                FUZZ_CHECK(memchr(err, 0, sizeof(err)) != NULL);
        hf_sentinel_config_done(&c);
        return 0;
}
