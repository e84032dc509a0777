/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Receipt log records (ROOT/.holdfast/receipts.log): anyone with write access to the server's
 * disk may have edited them. What parses formats to one canonical line that parses back to
 * the same record, and formatting is deterministic.
 */
#include <string.h>

#include "../../src/server/server.h"
#include "fuzz.h"

static bool same(const HfReceipt *a, const HfReceipt *b)
{
        return a->seq == b->seq && a->time.sec == b->time.sec && a->time.nsec == b->time.nsec &&
               a->op == b->op && strcmp(a->repo, b->repo) == 0 && a->type == b->type &&
               strcmp(a->name, b->name) == 0 && a->size == b->size &&
               hf_id_eq(&a->sha256, &b->sha256) && strcmp(a->user, b->user) == 0 &&
               hf_id_eq(&a->prev, &b->prev);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        HfReceipt r, again;
        HfBuf one = HF_BUF_INIT(8192), two = HF_BUF_INIT(8192);

        if (hf_receipt_parse((const char *)data, size, &r) == 0) {
                FUZZ_CHECK(r.seq > 0 && r.op < _HF_RECEIPT_OP_MAX && r.type < _HF_FILE_TYPE_MAX);
                FUZZ_CHECK(strlen(r.user) <= HF_USER_NAME_MAX);
                FUZZ_CHECK(hf_receipt_format(&r, &one) == 0);
                FUZZ_CHECK(hf_receipt_parse((const char *)one.data, one.len, &again) == 0);
                FUZZ_CHECK(same(&r, &again));
                FUZZ_CHECK(hf_receipt_format(&again, &two) == 0);
                FUZZ_CHECK(one.len == two.len && memcmp(one.data, two.data, one.len) == 0);
        }
        hf_buf_free(&one);
        hf_buf_free(&two);
        return 0;
}
