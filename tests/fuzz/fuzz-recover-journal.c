/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The recover journal (state/recover/NAME.journal): read back on every rerun after a crash, so a
 * torn or damaged file must never crash recover or make it believe a path it never wrote. Every
 * parsed entry formats back to a line that parses to the same entry.
 */
#include <string.h>

#include "../../src/recover/recover.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        HfJournal j, k;

        if (hf_journal_parse((const char *)data, size, &j) < 0)
                return 0;
        FUZZ_CHECK(j.n <= size / 5);
        for (size_t i = 0; i < j.n; i++) {
                _cleanup_buf_ HfBuf b = HF_BUF_INIT(1 << 16);
                const HfJournalEntry *e = &j.v[i];
                FUZZ_CHECK(e->path && e->path[0]);
                FUZZ_CHECK(e->verb == HF_JOURNAL_DONE || e->verb == HF_JOURNAL_REMOVED ||
                           e->verb == HF_JOURNAL_KEPT);
                FUZZ_CHECK(e->sha256[0] == 0 || strlen(e->sha256) == 64);
                FUZZ_CHECK(e->verb != HF_JOURNAL_DONE || e->sha256[0]);
                FUZZ_CHECK(hf_buf_puts(&b, "holdfast-recover-journal 1\n") == 0);
                FUZZ_CHECK(hf_journal_format(&b, e->verb, e->sha256, e->path) == 0);
                FUZZ_CHECK(hf_journal_parse((const char *)b.data, b.len, &k) == 0);
                FUZZ_CHECK(k.n == 1 && k.v[0].verb == e->verb &&
                           strcmp(k.v[0].path, e->path) == 0 &&
                           strcmp(k.v[0].sha256, e->sha256) == 0);
                hf_journal_done(&k);
        }
        hf_journal_done(&j);
        return 0;
}
