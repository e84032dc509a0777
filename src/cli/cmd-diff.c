/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "../repo/lock.h"
#include "cli.h"

static const CliOption options[] = {
        { "host", 'H', "HOST", "for \"latest\": only snapshots of this host" },
        { "tag", 0, "TAG", "for \"latest\": only snapshots with this tag (repeatable)" },
        { "path", 0, "PATH", "for \"latest\": only snapshots of exactly these paths" },
        { NULL, 0, NULL, NULL },
};

static int run(CliContext *ctx, int argc, char **argv)
{
        _cleanup_(hf_repo_freep) HfRepo *repo = NULL;
        _cleanup_(hf_lock_releasep) HfLock *lock = NULL;
        HfSnapshotFilter f = { 0 };
        HfSnapshot a = { 0 }, b = { 0 };
        int r;

        if (argc != 2)
                return cli_usage_error("diff needs two snapshots (IDs, ID prefixes or "
                                       "\"latest\")");
        r = cli_open_repo(ctx, &repo);
        if (r != EXIT_OK)
                return r;
        if (!ctx->no_lock && hf_lock_acquire(repo, false, &lock) < 0)
                return EXIT_FAILED;
        if (cli_filter(ctx, &f) < 0)
                return EXIT_FAILED;
        /* Snapshots are found before the index is loaded (restic's read order). */
        r = hf_snapshot_find(repo, argv[0], &f, &a);
        if (r >= 0)
                r = hf_snapshot_find(repo, argv[1], &f, &b);
        cli_filter_done(&f);
        if (r >= 0)
                r = hf_repo_load_index(repo, NULL);
        if (r >= 0)
                r = hf_diff(repo, &a, &b, &ctx->out);
        hf_snapshot_done(&a);
        hf_snapshot_done(&b);
        return cli_exit_code(r);
}

const CliCommand cmd_diff = {
        .name = "diff",
        .usage = "[OPTIONS] SNAPSHOT1 SNAPSHOT2",
        .summary = "show what changed from one snapshot to another",
        .details = "SNAPSHOTs are IDs, unique ID prefixes or \"latest\". One line per change, "
                   "folders with a trailing '/':\n"
                   "  +  added            -  removed\n"
                   "  M  file content changed\n"
                   "  U  metadata only changed (mode, owner, times, links, xattrs, link target)\n"
                   "  T  type changed (e.g. a file became a symlink)\n"
                   "Folders whose content is identical in both snapshots are skipped without being "
                   "read. A summary follows: items added and removed, and the blobs and bytes "
                   "(plaintext) that only one side refers to, counted over the parts that differ.\n"
                   "--quiet prints only the summary. Exit code 3: some folders could not be read "
                   "(named above), so the list is incomplete.",
        .options = options,
        .run = run,
};
