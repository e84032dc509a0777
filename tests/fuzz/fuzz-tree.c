/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Tree blob JSON (restic-format.md §6.3). A parsed tree is what restore, ls and diff walk, so
 * what they rely on is checked too: names are non-empty, without '/' or NUL, not "." or "..",
 * sorted and unique (so lookups find every node), and a deep copy of each node is freeable.
 */
#include <string.h>

#include "../../src/repo/tree.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_buf_ HfBuf err = HF_BUF_INIT(4096);
        HfTree t = { 0 };
        int r;

        r = hf_tree_parse(data, size, &t, &err);
        if (r < 0) {
                FUZZ_CHECK(r != -EPROTO || err.len > 0);
                FUZZ_CHECK(t.n == 0 && t.nodes == NULL);
                return 0;
        }
        for (size_t i = 0; i < t.n; i++) {
                const HfNode *n = &t.nodes[i];
                HfNode copy = { 0 };
                char mode[HF_MODE_STRING_MAX];

                FUZZ_CHECK(n->name && n->name_len > 0);
                FUZZ_CHECK(n->name[n->name_len] == 0);
                FUZZ_CHECK(!memchr(n->name, '/', n->name_len) && !memchr(n->name, 0, n->name_len));
                FUZZ_CHECK(strcmp(n->name, ".") != 0 && strcmp(n->name, "..") != 0);
                FUZZ_CHECK(n->type < _HF_NODE_TYPE_MAX);
                FUZZ_CHECK(n->mtime.nsec >= 0 && n->mtime.nsec <= 999999999);
                FUZZ_CHECK(n->n_content == 0 || n->content);
                FUZZ_CHECK(!n->linktarget || n->linktarget[n->linktarget_len] == 0);
                FUZZ_CHECK(hf_tree_find(&t, n->name, n->name_len) == n);
                if (i > 0) {
                        const HfNode *p = &t.nodes[i - 1];
                        int c = memcmp(p->name, n->name, MIN(p->name_len, n->name_len));
                        FUZZ_CHECK(c < 0 || (c == 0 && p->name_len < n->name_len));
                }
                hf_mode_string(n->mode, n->type, mode);
                FUZZ_CHECK(strlen(mode) >= 10 && strlen(mode) < HF_MODE_STRING_MAX);
                (void)hf_mode_from_go(n->mode);
                if (hf_node_copy(n, &copy) == 0) {
                        FUZZ_CHECK(copy.name_len == n->name_len && copy.n_xattrs == n->n_xattrs &&
                                   copy.n_content == n->n_content);
                        hf_node_done(&copy);
                }
        }
        hf_tree_done(&t);
        return 0;
}
