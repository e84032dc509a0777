/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "../base/log.h"
#include "../repo/lock.h"
#include "cli.h"

static const CliOption options[] = {
        { "target", 't', "DIR", "restore into DIR (created if missing; required)" },
        { "include", 'i', "GLOB", "restore only what matches (repeatable)" },
        { "exclude", 'e', "GLOB", "do not restore what matches (repeatable)" },
        { "verify", 0, NULL, "read every restored file back and check its hashes" },
        { "delete", 0, NULL, "remove files in the target that the snapshot does not have" },
        { "host", 'H', "HOST", "for \"latest\": only snapshots of this host" },
        { "tag", 0, "TAG", "for \"latest\": only snapshots with this tag" },
        { "path", 0, "PATH", "for \"latest\": only snapshots of exactly these paths" },
        { NULL, 0, NULL, NULL },
};

static int run(CliContext *ctx, int argc, char **argv)
{
        _cleanup_(hf_repo_freep) HfRepo *repo = NULL;
        _cleanup_(hf_lock_releasep) HfLock *lock = NULL;
        _cleanup_free_ char *what = NULL;
        HfRestoreOptions o = { .out = ctx->out };
        HfRestoreResult res = { 0 };
        HfSnapshotFilter f = { 0 };
        HfSnapshot snap = { 0 };
        char *colon;
        int r;

        if (argc != 1)
                return cli_usage_error("restore needs exactly one snapshot (ID, prefix or "
                                       "\"latest\", optionally ID:SUBFOLDER)");
        o.target = cli_value(ctx, "target");
        if (!o.target || !*o.target)
                return cli_usage_error("restore needs --target DIR");
        o.verify = cli_flag(ctx, "verify") > 0;
        o.delete_extra = cli_flag(ctx, "delete") > 0;
        what = strdup(argv[0]);
        if (!what)
                return EXIT_FAILED;
        colon = strchr(what, ':');
        if (colon) {
                *colon = 0;
                o.subpath = colon + 1;
        }
        if (cli_values(ctx, "include", &o.includes, &o.n_includes) < 0 ||
            cli_values(ctx, "exclude", &o.excludes, &o.n_excludes) < 0)
                return EXIT_FAILED;
        if (o.delete_extra && o.n_includes)
                log_warning("--delete is ignored together with --include");

        r = cli_open_repo(ctx, &repo);
        if (r != EXIT_OK)
                goto out;
        /* The lock protocol's wait (a second look for a competing lock) overlaps finding the
         * snapshot and loading the index; nothing is written before hf_lock_confirm(). */
        if (!ctx->no_lock && hf_lock_begin(repo, false, &lock) < 0) {
                r = EXIT_FAILED;
                goto out;
        }
        if (cli_filter(ctx, &f) < 0) {
                r = EXIT_FAILED;
                goto out;
        }
        r = hf_snapshot_find(repo, what, &f, &snap);
        cli_filter_done(&f);
        if (r < 0) {
                r = EXIT_FAILED;
                goto out;
        }
        r = hf_repo_load_index(repo, NULL);
        if (r >= 0 && lock)
                r = hf_lock_confirm(&lock);
        if (r >= 0)
                r = hf_restore(repo, &snap, &o, &res);
        if (r >= 0) {
                char hex[HF_ID_HEX_LEN + 1], b[32], t[32];
                hf_id_hex(&snap.id, hex);
                if (ctx->json)
                        printf("{\"message_type\":\"summary\",\"snapshot_id\":\"%s\","
                               "\"files_restored\":%llu,\"dirs_restored\":%llu,"
                               "\"others_restored\":%llu,\"bytes_restored\":%llu,"
                               "\"files_failed\":%llu,\"files_verified\":%llu,"
                               "\"verify_failed\":%llu,\"deleted\":%llu,"
                               "\"total_duration\":%.3f}\n",
                               hex, (unsigned long long)res.files, (unsigned long long)res.dirs,
                               (unsigned long long)res.others, (unsigned long long)res.bytes,
                               (unsigned long long)res.files_failed,
                               (unsigned long long)res.verified,
                               (unsigned long long)res.verify_failed,
                               (unsigned long long)res.deleted, res.seconds);
                else if (!ctx->quiet) {
                        printf("restored snapshot %.8s to %s: %llu files, %llu folders, %llu "
                               "other items, %s in %s\n",
                               hex, o.target, (unsigned long long)res.files,
                               (unsigned long long)res.dirs, (unsigned long long)res.others,
                               hf_format_bytes(b, sizeof(b), res.bytes),
                               hf_format_duration(t, sizeof(t), res.seconds));
                        if (o.verify)
                                printf("verified %llu files: %llu failed\n",
                                       (unsigned long long)res.verified,
                                       (unsigned long long)res.verify_failed);
                        if (res.deleted)
                                printf("removed %llu items the snapshot does not have\n",
                                       (unsigned long long)res.deleted);
                        if (res.files_failed)
                                printf("%llu items could NOT be restored (listed above)\n",
                                       (unsigned long long)res.files_failed);
                }
        }
        r = cli_exit_code(r);
out:
        hf_snapshot_done(&snap);
        free(o.includes);
        free(o.excludes);
        return r;
}

const CliCommand cmd_restore = {
        .name = "restore",
        .usage = "[OPTIONS] SNAPSHOT[:SUBFOLDER] --target DIR",
        .summary = "restore a snapshot",
        .details = "Every recorded field is put back: content (sparse where the data is zero), "
                   "mode, owner (as root), extended attributes, hard links, times (last).\n"
                   "Files are written under a temporary name and renamed into place when "
                   "complete. Nothing that is not in the snapshot is removed unless --delete "
                   "is given.\nExit code 3: some items could not be restored (damaged or "
                   "missing data); they are listed, and what could be read of a damaged file "
                   "is kept as NAME.holdfast-partial.",
        .options = options,
        .run = run,
};
