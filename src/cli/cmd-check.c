/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "../repo/lock.h"
#include "cli.h"

static const CliOption options[] = {
        { "read-data", 0, NULL,
          "also read every pack and verify every blob (reads the whole "
          "vault)" },
        { NULL, 0, NULL, NULL },
};

static int run(CliContext *ctx, int argc, char **argv)
{
        _cleanup_(hf_repo_freep) HfRepo *repo = NULL;
        _cleanup_(hf_lock_releasep) HfLock *lock = NULL;
        HfCheckOptions o = { .read_data = cli_flag(ctx, "read-data") > 0, .out = ctx->out };
        HfCheckResult res = { 0 };
        int r;

        if (argc > 0)
                return cli_usage_error("check takes no arguments");
        r = cli_open_repo(ctx, &repo);
        if (r != EXIT_OK)
                return r;
        /* Exclusive, as restic's check: nothing may add or remove files while it looks. The
         * lock protocol's pause overlaps loading the indexes and reading the first packs;
         * hf_check() shows nothing of the packs before it has confirmed the lock. */
        if (!ctx->no_lock && hf_lock_begin(repo, true, &lock) < 0)
                return EXIT_FAILED;
        o.lock = &lock;
        return cli_exit_code(hf_check(repo, &o, &res));
}

const CliCommand cmd_check = {
        .name = "check",
        .usage = "[--read-data]",
        .summary = "verify the vault's structure and, with --read-data, all of its data",
        .details =
                "Without --read-data, check reads every index file and snapshot, checks that\n"
                "each pack the index names exists and that its header lists exactly the blobs,\n"
                "offsets and lengths the index gives, and walks every tree of every snapshot:\n"
                "each tree must load, decrypt and parse, and each data blob a file names must\n"
                "be indexed.\n"
                "\n"
                "--read-data also reads every pack whole: its SHA-256 must equal its name, and\n"
                "each blob in it must decrypt (MAC), decompress and hash to its ID. Files whose\n"
                "blobs are damaged or in a missing pack are named.\n"
                "\n"
                "Each problem is one line on stderr naming the vault file (index/ID, data/xx/ID\n"
                "or snapshots/ID) and the blob; with --json, one error line each and then a\n"
                "summary line on stdout (docs/cli.md). Packs that no index lists are noted; they\n"
                "are errors only when snapshots use their blobs (the index is then incomplete).\n"
                "The vault is locked exclusively while check runs (--no-lock skips that).\n"
                "\n"
                "Exit codes: 0 no errors, 3 errors were found, 1 check could not run.",
        .options = options,
        .run = run,
};
