/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "../base/log.h"
#include "../repo/lock.h"
#include "cli.h"

static const CliOption options[] = {
        { "remove-all", 0, NULL, "remove every lock, also those of running processes" },
        { NULL, 0, NULL, NULL },
};

static int run(CliContext *ctx, int argc, char **argv)
{
        _cleanup_(hf_repo_freep) HfRepo *repo = NULL;
        bool all = cli_flag(ctx, "remove-all") > 0;
        unsigned removed = 0;
        int r;

        if (argc > 0)
                return cli_usage_error("unlock takes no arguments");
        r = cli_open_repo(ctx, &repo);
        if (r != EXIT_OK)
                return r;
        /* No lock of our own: unlock must work while the vault is (stale-)locked. */
        r = hf_lock_remove_stale(repo, all, &removed);
        if (r < 0) {
                log_error_errno(r, "%s/locks: cannot list: %m", hf_repo_backend(repo)->location);
                return EXIT_FAILED;
        }
        if (ctx->json)
                printf("{\"message_type\":\"summary\",\"removed\":%u,\"remove_all\":%s}\n", removed,
                       all ? "true" : "false");
        else if (!ctx->quiet)
                printf("removed %u %slock%s\n", removed, all ? "" : "stale ",
                       removed == 1 ? "" : "s");
        return EXIT_OK;
}

const CliCommand cmd_unlock = {
        .name = "unlock",
        .usage = "[--remove-all]",
        .summary = "remove stale locks",
        .details = "A lock is stale when it is older than 30 minutes (a live process refreshes "
                   "its lock every 5 minutes) or was made on this host by a process that no "
                   "longer runs; lock files that cannot be read are removed too. --remove-all "
                   "removes every lock: use it only when no other holdfast or restic process "
                   "is working on the vault.",
        .options = options,
        .run = run,
};
