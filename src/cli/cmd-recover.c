/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "../base/log.h"
#include "../base/util.h"
#include "../recover/recover.h"
#include "../repo/lock.h"
#include "cli.h"

#define DEFAULT_STATE "/var/lib/holdfast"

static const CliOption options[] = {
        { "incident", 0, "ID", "put back what incident ID touched" },
        { "process", 0, "PID", "put back what process PID changed (with --since)" },
        { "since", 0, "TIME", "with --process: from TIME on" },
        { "before", 0, "TIME", "put PATHs back as they were before TIME" },
        { "dry-run", 'n', NULL, "print what would be done, change nothing" },
        { "force", 0, NULL, "also overwrite files other processes changed after the incident" },
        { "state", 0, "DIR", "the sentinel's state folder (default " DEFAULT_STATE ")" },
        { "prune", 0, NULL, "release pre-images the retention policy allows (no recovery)" },
        { "window", 0, "HOURS", "with --prune: keep pre-images this long (default 24)" },
        { "max-share", 0, "PERCENT", "with --prune: store budget, % of its filesystem (10)" },
        { NULL, 0, NULL, NULL },
};

static bool have_repo(const CliContext *ctx)
{
        const char *v;
        return ctx->repo || ((v = getenv("HOLDFAST_REPOSITORY")) && *v) ||
               ((v = getenv("RESTIC_REPOSITORY")) && *v);
}

static int parse_positive(const char *v, double max, double *ret)
{
        char *e = NULL;
        double d = strtod(v, &e);
        if (!e || *e || !(d > 0 && d <= max))
                return -EINVAL;
        *ret = d;
        return 0;
}

static int run_prune(CliContext *ctx, int argc, const char *state, bool dry_run)
{
        _cleanup_(hf_repo_freep) HfRepo *repo = NULL;
        _cleanup_(hf_lock_releasep) HfLock *lock = NULL;
        HfPruneOptions p = { .state_dir = state, .dry_run = dry_run, .out = ctx->out };
        const char *v;
        int r;

        if (argc || cli_value(ctx, "incident") || cli_value(ctx, "process") ||
            cli_value(ctx, "before"))
                return cli_usage_error("--prune goes alone (with --window, --max-share, -r)");
        if ((v = cli_value(ctx, "window"))) {
                if (parse_positive(v, 24 * 3650, &p.window) < 0)
                        return cli_usage_error("--window wants hours, e.g. 24 or 0.5");
                p.window *= 3600;
        }
        if ((v = cli_value(ctx, "max-share"))) {
                if (parse_positive(v, 100, &p.max_share) < 0)
                        return cli_usage_error("--max-share wants a percentage (0..100]");
                p.max_share /= 100;
        }
        if (have_repo(ctx)) {
                r = cli_open_repo(ctx, &repo);
                if (r != EXIT_OK)
                        return r;
                if (!ctx->no_lock && hf_lock_acquire(repo, false, &lock) < 0)
                        return EXIT_FAILED;
                p.repo = repo;
        }
        r = hf_recover_prune(&p);
        return r == -ENOENT ? EXIT_FAILED : cli_exit_code(r);
}

static int run(CliContext *ctx, int argc, char **argv)
{
        _cleanup_(hf_repo_freep) HfRepo *repo = NULL;
        _cleanup_(hf_lock_releasep) HfLock *lock = NULL;
        HfRecoverOptions o = { .out = ctx->out };
        HfRecoverResult res;
        const char *inc = cli_value(ctx, "incident"), *proc = cli_value(ctx, "process"),
                   *since = cli_value(ctx, "since"), *before = cli_value(ctx, "before");
        double now = hf_recover_now();
        char **paths = NULL;
        int r;

        o.state_dir = cli_value(ctx, "state") ? cli_value(ctx, "state") : DEFAULT_STATE;
        o.dry_run = cli_flag(ctx, "dry-run") > 0;
        o.force = cli_flag(ctx, "force") > 0;
        if (cli_flag(ctx, "prune"))
                return run_prune(ctx, argc, o.state_dir, o.dry_run);
        if (!!inc + !!proc + !!before != 1)
                return cli_usage_error("give exactly one of --incident ID, --process PID --since "
                                       "TIME, --before TIME PATH...");
        if (inc) {
                uint64_t id;
                if (argc)
                        return cli_usage_error("--incident takes no paths");
                if (hf_parse_u64(inc, &id) < 0 || id == 0 || id > INT64_MAX)
                        return cli_usage_error("--incident wants a positive number, got \"%s\"",
                                               inc);
                o.scope = HF_RECOVER_INCIDENT;
                o.incident = (int64_t)id;
        } else if (proc) {
                uint64_t pid;
                if (argc)
                        return cli_usage_error("--process takes no paths");
                if (hf_parse_u64(proc, &pid) < 0 || pid == 0 || pid > INT32_MAX)
                        return cli_usage_error("--process wants a process ID, got \"%s\"", proc);
                if (!since)
                        return cli_usage_error("--process needs --since TIME");
                if (hf_recover_parse_time(since, strlen(since), now, &o.since) < 0)
                        return cli_usage_error("--since: \"%s\" is not a time (Unix seconds, "
                                               "RFC 3339, \"YYYY-MM-DD HH:MM[:SS]\" or -15m)",
                                               since);
                o.scope = HF_RECOVER_PROCESS;
                o.pid = (pid_t)pid;
        } else {
                if (since)
                        return cli_usage_error("--since goes with --process");
                if (argc < 1)
                        return cli_usage_error("--before needs the paths to put back");
                if (hf_recover_parse_time(before, strlen(before), now, &o.before) < 0)
                        return cli_usage_error("--before: \"%s\" is not a time (Unix seconds, "
                                               "RFC 3339, \"YYYY-MM-DD HH:MM[:SS]\" or -15m)",
                                               before);
                paths = calloc((size_t)argc, sizeof(char *));
                if (!paths)
                        return EXIT_FAILED;
                for (int i = 0; i < argc; i++) {
                        /* The path may be gone (deleted by the attacker): make it absolute
                         * without resolving it. */
                        char *abs = realpath(argv[i], NULL);
                        if (!abs) {
                                if (argv[i][0] == '/')
                                        abs = strdup(argv[i]);
                                else {
                                        char cwd[4096];
                                        if (getcwd(cwd, sizeof(cwd)) &&
                                            asprintf(&abs, "%s/%s", cwd, argv[i]) < 0)
                                                abs = NULL;
                                }
                        }
                        if (!abs) {
                                hf_strv_free(paths, (size_t)i);
                                return EXIT_FAILED;
                        }
                        size_t l = strlen(abs);
                        while (l > 1 && abs[l - 1] == '/')
                                abs[--l] = 0;
                        paths[i] = abs;
                }
                o.scope = HF_RECOVER_BEFORE;
                o.paths = paths;
                o.n_paths = (size_t)argc;
        }

        if (have_repo(ctx)) {
                r = cli_open_repo(ctx, &repo);
                if (r != EXIT_OK)
                        goto out;
                if (!ctx->no_lock && hf_lock_acquire(repo, false, &lock) < 0) {
                        r = EXIT_FAILED;
                        goto out;
                }
                o.repo = repo;
        } else if (!ctx->json && !ctx->quiet)
                log_notice("no vault given (-r): files without a pre-image cannot be recovered");

        r = hf_recover(&o, &res);
        if (r == -ENOENT)
                r = EXIT_FAILED;
        else
                r = cli_exit_code(r);
out:
        hf_strv_free(paths, o.n_paths);
        return r;
}

const CliCommand cmd_recover = {
        .name = "recover",
        .usage = "--incident ID | --process PID --since TIME | --before TIME PATH... [--dry-run]"
                 " | --prune",
        .summary = "put back what an incident touched (pre-images, then the vault)",
        .details = "Puts back every file the incident (or process, or time) touched: "
                   "overwritten, truncated, deleted or renamed, with content, owner, mode, "
                   "times and xattrs; removes the files the attacker created (encrypted copies, "
                   "ransom notes); renames the folders it renamed back, makes again the "
                   "folders it removed and removes the empty ones it made; leaves alone what "
                   "other processes changed since. Each file "
                   "comes from its pre-image in the shadow store (a copy, or the bytes a write "
                   "overwrote put back into the file), the file itself when it was "
                   "only renamed, a hard-link pin when it was only deleted, or (with -r) the "
                   "newest vault snapshot older than the incident, and is hashed back before it "
                   "replaces anything. Prints one line per file: where it came from and its "
                   "verified SHA-256. Safe to interrupt and rerun (journal under "
                   "STATE/recover/). Exit 3 when something could not be recovered or proven. "
                   "--prune applies the shadow store's retention instead (24 h window, or "
                   "sooner when -r's vault provably holds a pre-image's bytes; a budget of 10 % "
                   "of the filesystem, oldest first; never a pre-image of an open incident); "
                   "while a sentinel runs it only reports, the sentinel prunes itself.",
        .options = options,
        .run = run,
};
