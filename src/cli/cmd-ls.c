/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "../repo/lock.h"
#include "cli.h"

static const CliOption options[] = {
        { "long", 'l', NULL, "long listing: mode, owner, size, time" },
        { "host", 'H', "HOST", "for \"latest\": only snapshots of this host" },
        { "tag", 0, "TAG", "for \"latest\": only snapshots with this tag" },
        { "path", 0, "PATH", "for \"latest\": only snapshots of exactly these paths" },
        { NULL, 0, NULL, NULL },
};

static int run(CliContext *ctx, int argc, char **argv)
{
        _cleanup_(hf_repo_freep) HfRepo *repo = NULL;
        _cleanup_(hf_lock_releasep) HfLock *lock = NULL;
        HfSnapshotFilter f = { 0 };
        HfSnapshot snap = { 0 };
        HfLsOptions o = { .long_format = cli_flag(ctx, "long") > 0, .out = ctx->out };
        int r;

        if (argc < 1)
                return cli_usage_error("ls needs a snapshot ID (or \"latest\")");
        o.paths = argv + 1;
        o.n_paths = (size_t)argc - 1;
        r = cli_open_repo(ctx, &repo);
        if (r != EXIT_OK)
                return r;
        if (!ctx->no_lock && hf_lock_acquire(repo, false, &lock) < 0)
                return EXIT_FAILED;
        if (cli_filter(ctx, &f) < 0)
                return EXIT_FAILED;
        r = hf_snapshot_find(repo, argv[0], &f, &snap);
        cli_filter_done(&f);
        if (r < 0)
                return EXIT_FAILED;
        r = hf_repo_load_index(repo, NULL);
        if (r >= 0)
                r = hf_ls(repo, &snap, &o);
        hf_snapshot_done(&snap);
        return cli_exit_code(r);
}

const CliCommand cmd_ls = {
        .name = "ls",
        .usage = "[OPTIONS] SNAPSHOT [PATH...]",
        .summary = "list the files of a snapshot",
        .details = "SNAPSHOT is an ID, a unique ID prefix or \"latest\". With PATHs, only what is "
                   "at or below them is listed.",
        .options = options,
        .run = run,
};
