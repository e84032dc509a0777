/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Snapshot JSON (restic-format.md §6.2). A parsed snapshot is listed, filtered and formatted
 * again (holdfast re-encodes snapshots it copies or tags), so on success the target formats it
 * and checks the result parses back to the same snapshot.
 */
#include <string.h>

#include "../../src/repo/snapshot.h"
#include "fuzz.h"

static bool same_str(const char *a, const char *b)
{
        return strcmp(a ? a : "", b ? b : "") == 0;
}

static bool same_strv(char **a, size_t na, char **b, size_t nb)
{
        if (na != nb)
                return false;
        for (size_t i = 0; i < na; i++)
                if (strcmp(a[i], b[i]) != 0)
                        return false;
        return true;
}

static bool same_time(const HfTime *a, const HfTime *b)
{
        return a->sec == b->sec && a->nsec == b->nsec && a->off == b->off;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_buf_ HfBuf err = HF_BUF_INIT(4096), out = HF_BUF_INIT(64u << 20);
        HfSnapshot s = { 0 }, t = { 0 };
        HfSnapshotFilter f = { 0 };
        int r;

        r = hf_snapshot_parse(data, size, &s, &err);
        if (r < 0) {
                FUZZ_CHECK(r != -EPROTO || err.len > 0);
                return 0;
        }
        /* Filters compare against whatever the file holds. */
        f.host = s.hostname;
        f.tags = s.tags;
        f.n_tags = s.n_tags;
        f.paths = s.paths;
        f.n_paths = s.n_paths;
        FUZZ_CHECK(hf_snapshot_match(&s, &f));
        FUZZ_CHECK(hf_time_cmp(&s.time, &s.time) == 0);

        FUZZ_CHECK(hf_snapshot_format(&s, &out) == 0);
        FUZZ_CHECK(hf_snapshot_parse(out.data, out.len, &t, &err) == 0);
        FUZZ_CHECK(same_time(&s.time, &t.time));
        FUZZ_CHECK(hf_id_eq(&s.tree, &t.tree));
        FUZZ_CHECK(s.has_parent == t.has_parent &&
                   (!s.has_parent || hf_id_eq(&s.parent, &t.parent)));
        FUZZ_CHECK(s.has_original == t.has_original &&
                   (!s.has_original || hf_id_eq(&s.original, &t.original)));
        FUZZ_CHECK(same_strv(s.paths, s.n_paths, t.paths, t.n_paths));
        FUZZ_CHECK(same_strv(s.excludes, s.n_excludes, t.excludes, t.n_excludes));
        FUZZ_CHECK(same_strv(s.tags, s.n_tags, t.tags, t.n_tags));
        FUZZ_CHECK(same_str(s.hostname, t.hostname) && same_str(s.username, t.username));
        FUZZ_CHECK(same_str(s.program_version, t.program_version));
        FUZZ_CHECK(s.uid == t.uid && s.gid == t.gid);
        FUZZ_CHECK(s.has_summary == t.has_summary);
        if (s.has_summary) {
                FUZZ_CHECK(same_time(&s.summary.backup_start, &t.summary.backup_start));
                FUZZ_CHECK(same_time(&s.summary.backup_end, &t.summary.backup_end));
                FUZZ_CHECK(s.summary.files_new == t.summary.files_new &&
                           s.summary.data_added == t.summary.data_added &&
                           s.summary.total_bytes_processed == t.summary.total_bytes_processed);
        }
        hf_snapshot_done(&s);
        hf_snapshot_done(&t);
        return 0;
}
