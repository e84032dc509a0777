/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Tree blobs must survive parse -> format -> parse: a tree holdfast re-encodes has to hash like
 * the one it read, so the same nodes must come back (names, types, modes, owners, sizes,
 * content and subtree IDs, link targets, xattrs), and formatting must be deterministic and
 * idempotent (zstd's round-trip fuzzers check the same for their encoders).
 */
#include <string.h>

#include "../../src/repo/tree.h"
#include "fuzz.h"

static bool same_str(const char *a, const char *b)
{
        /* NULL and "" are both "absent": the encoder omits both. */
        return strcmp(a ? a : "", b ? b : "") == 0;
}

static bool same_bytes(const void *a, size_t alen, const void *b, size_t blen)
{
        return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static bool same_time(const HfTime *a, const HfTime *b)
{
        return a->sec == b->sec && a->nsec == b->nsec && a->off == b->off;
}

static void check_same_node(const HfNode *a, const HfNode *b)
{
        FUZZ_CHECK(same_bytes(a->name, a->name_len, b->name, b->name_len));
        FUZZ_CHECK(a->type == b->type);
        FUZZ_CHECK(a->mode == b->mode);
        FUZZ_CHECK(same_time(&a->mtime, &b->mtime));
        FUZZ_CHECK(same_time(&a->atime, &b->atime));
        FUZZ_CHECK(same_time(&a->ctime, &b->ctime));
        FUZZ_CHECK(a->uid == b->uid && a->gid == b->gid);
        FUZZ_CHECK(same_str(a->user, b->user) && same_str(a->group, b->group));
        FUZZ_CHECK(same_str(a->error, b->error));
        FUZZ_CHECK(a->inode == b->inode && a->device_id == b->device_id && a->size == b->size &&
                   a->links == b->links && a->device == b->device);
        FUZZ_CHECK(same_bytes(a->linktarget, a->linktarget ? a->linktarget_len : 0, b->linktarget,
                              b->linktarget ? b->linktarget_len : 0));
        FUZZ_CHECK(a->n_xattrs == b->n_xattrs);
        for (size_t i = 0; i < a->n_xattrs; i++) {
                FUZZ_CHECK(strcmp(a->xattrs[i].name, b->xattrs[i].name) == 0);
                FUZZ_CHECK(same_bytes(a->xattrs[i].value, a->xattrs[i].len, b->xattrs[i].value,
                                      b->xattrs[i].len));
        }
        FUZZ_CHECK(same_bytes(a->content, a->n_content * sizeof(HfId), b->content,
                              b->n_content * sizeof(HfId)));
        FUZZ_CHECK(a->has_subtree == b->has_subtree);
        FUZZ_CHECK(!a->has_subtree || hf_id_eq(&a->subtree, &b->subtree));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_buf_ HfBuf out1 = HF_BUF_INIT(64u << 20), out2 = HF_BUF_INIT(64u << 20),
                            out3 = HF_BUF_INIT(64u << 20), err = HF_BUF_INIT(4096);
        HfTree t1 = { 0 }, t2 = { 0 };

        if (hf_tree_parse(data, size, &t1, NULL) < 0)
                return 0;
        FUZZ_CHECK(hf_tree_format(&t1, &out1) == 0);
        FUZZ_CHECK(hf_tree_format(&t1, &out2) == 0);
        FUZZ_CHECK(same_bytes(out1.data, out1.len, out2.data, out2.len));

        /* What holdfast writes, holdfast must read back as the same nodes. */
        FUZZ_CHECK(hf_tree_parse(out1.data, out1.len, &t2, &err) == 0);
        FUZZ_CHECK(t1.n == t2.n);
        for (size_t i = 0; i < t1.n; i++)
                check_same_node(&t1.nodes[i], &t2.nodes[i]);

        /* And writing it again gives the same bytes (the same blob ID). */
        FUZZ_CHECK(hf_tree_format(&t2, &out3) == 0);
        FUZZ_CHECK(same_bytes(out1.data, out1.len, out3.data, out3.len));

        hf_tree_done(&t1);
        hf_tree_done(&t2);
        return 0;
}
