/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "../base/log.h"
#include "../base/util.h"
#include "../sentinel/sentinel.h"
#include "cli.h"

#define DEFAULT_STATE "/var/lib/holdfast"

static const CliOption sentinel_options[] = {
        { "config", 0, "FILE", "configuration file (see dist/holdfast.conf)" },
        { "action", 0, "ACTION", "alert, stop or kill (overrides the config)" },
        { "state", 0, "DIR", "database, evidence and control socket (default " DEFAULT_STATE ")" },
        { "mode", 0, "MODE", "auto, pre-content, open-perm or notify (test weaker kernels)" },
        { "no-decoys", 0, NULL, "do not plant decoy files" },
        { "no-raw-disk-guard", 0, NULL, "do not deny block-device writes" },
        { NULL, 0, NULL, NULL },
};

static int run_sentinel(CliContext *ctx, int argc, char **argv)
{
        HfSentinelConfig c;
        char err[256] = "";
        const char *v;
        int r;

        hf_sentinel_config_init(&c);
        if ((v = cli_value(ctx, "config"))) {
                r = hf_sentinel_config_load(&c, v, err, sizeof(err));
                if (r < 0) {
                        log_error("%s: %s", v, err);
                        hf_sentinel_config_done(&c);
                        return r == -EPROTO ? EXIT_USAGE : EXIT_FAILED;
                }
        }
        if ((v = cli_value(ctx, "action")) && hf_action_parse(v, &c.action) < 0) {
                hf_sentinel_config_done(&c);
                return cli_usage_error("--action wants alert, stop or kill, got \"%s\"", v);
        }
        if ((v = cli_value(ctx, "mode"))) {
                char line[64];
                (void)snprintf(line, sizeof(line), "[sentinel]\nmode = %s\n", v);
                if (hf_sentinel_config_parse(&c, line, strlen(line), err, sizeof(err)) < 0) {
                        hf_sentinel_config_done(&c);
                        return cli_usage_error("--mode wants auto, pre-content, open-perm or "
                                               "notify");
                }
        }
        if (cli_flag(ctx, "no-decoys"))
                c.decoys = false;
        if (cli_flag(ctx, "no-raw-disk-guard"))
                c.raw_disk_guard = false;
        v = cli_value(ctx, "state");
        if (v || !c.state_dir) {
                free(c.state_dir);
                c.state_dir = strdup(v ? v : DEFAULT_STATE);
        }
        for (int i = 0; i < argc; i++) {
                char *abs = realpath(argv[i], NULL);
                if (!abs || hf_sentinel_config_add_path(&c, abs) < 0) {
                        log_error("%s: not a usable folder", argv[i]);
                        free(abs);
                        hf_sentinel_config_done(&c);
                        return EXIT_USAGE;
                }
                free(abs);
        }
        if (!c.state_dir) {
                hf_sentinel_config_done(&c);
                return log_oom(), EXIT_FAILED;
        }
        r = hf_sentinel_run(&c);
        hf_sentinel_config_done(&c);
        return r < 0 ? EXIT_FAILED : EXIT_OK;
}

const CliCommand cmd_sentinel = {
        .name = "sentinel",
        .usage = "[--config FILE] [--action alert|stop|kill] [--state DIR] [PATH...]",
        .summary = "watch protected trees, keep pre-images, stop ransomware and wipers",
        .details = "Runs in the foreground as root until SIGTERM. PATHs are protected with the "
                   "defaults (added to the config's [protect] paths). Prints the mode in force "
                   "(kernel features found and missing) at start. Incidents go to "
                   "STATE/sentinel.db: see `holdfast incidents`. docs/internals/sentinel.md.",
        .options = sentinel_options,
        .run = run_sentinel,
};

static const CliOption state_options[] = {
        { "state", 0, "DIR", "the sentinel's state folder (default " DEFAULT_STATE ")" },
        { NULL, 0, NULL, NULL },
};

static const char *state_dir(const CliContext *ctx)
{
        const char *v = cli_value(ctx, "state");
        return v ? v : DEFAULT_STATE;
}

static int run_incidents(CliContext *ctx, int argc, char **argv)
{
        if (argc > 0)
                return cli_usage_error("incidents takes no arguments");
        int r = hf_incidents_list(state_dir(ctx), ctx->json, stdout);
        return r < 0 ? EXIT_FAILED : EXIT_OK;
}

const CliCommand cmd_incidents = {
        .name = "incidents",
        .usage = "[--state DIR] [--json]",
        .summary = "list the sentinel's incidents",
        .options = state_options,
        .run = run_incidents,
};

static int run_incident(CliContext *ctx, int argc, char **argv)
{
        uint64_t id;

        if (argc != 2 || strcmp(argv[0], "show") != 0)
                return cli_usage_error("usage: holdfast incident show ID");
        if (hf_parse_u64(argv[1], &id) < 0 || id == 0 || id > INT64_MAX)
                return cli_usage_error("incident ID must be a positive number, got \"%s\"",
                                       argv[1]);
        int r = hf_incident_show(state_dir(ctx), (int64_t)id, ctx->json, stdout);
        if (r == -ENOENT) {
                log_error("no incident %llu in %s/sentinel.db", (unsigned long long)id,
                          state_dir(ctx));
                return EXIT_FAILED;
        }
        return r < 0 ? EXIT_FAILED : EXIT_OK;
}

const CliCommand cmd_incident = {
        .name = "incident",
        .usage = "show ID [--state DIR] [--json]",
        .summary = "show one incident: processes, files touched, hashes, pre-images",
        .options = state_options,
        .run = run_incident,
};

static int run_allow_disk(CliContext *ctx, int argc, char **argv)
{
        if (argc < 1)
                return cli_usage_error("usage: holdfast allow-disk -- COMMAND [ARGS...]");
        (void)hf_allow_disk_exec(state_dir(ctx), argv);
        return EXIT_FAILED;
}

const CliCommand cmd_allow_disk = {
        .name = "allow-disk",
        .usage = "[--state DIR] -- COMMAND [ARGS...]",
        .summary = "run a disk tool (mkfs, dd, wipefs) that the raw-disk guard lets write",
        .details = "Asks the running sentinel to move this process into the cgroup its "
                   "raw-disk guard allows, which records the grant as an audit incident, then "
                   "runs COMMAND there (its children inherit the permission).",
        .options = state_options,
        .run = run_allow_disk,
};
