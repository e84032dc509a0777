/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "../base/log.h"
#include "../base/util.h"
#include "../recover/recover.h"
#include "cli.h"

static const CliOption drill_options[] = {
        { "attack", 'a', "KIND", "run this attack (repeatable, comma-separated, or \"all\")" },
        { "keep", 0, NULL, "keep the scratch folder (image, vault, logs) afterwards" },
        { "scratch", 0, "DIR", "create the scratch folder in DIR (default $TMPDIR or /var/tmp)" },
        { "fs", 0, "FS", "filesystem of the drill's image: xfs (default), ext4 or btrfs" },
        { "decoys", 0, NULL,
          "let the sentinel plant decoy files (most attacks then stop at once)" },
        { NULL, 0, NULL, NULL },
};

static int self_path(char *buf, size_t n)
{
        ssize_t k = readlink("/proc/self/exe", buf, n - 1);
        if (k <= 0)
                return -errno;
        buf[k] = 0;
        return 0;
}

static int run_drill(CliContext *ctx, int argc, char **argv)
{
        HfDrillOptions o = { .out = ctx->out };
        char self[4096], **kinds = NULL;
        size_t n_kinds = 0, n_vals = 0;
        char **vals = NULL;
        int r;

        if (argc)
                return cli_usage_error("drill takes no arguments");
        o.keep = cli_flag(ctx, "keep") > 0;
        o.scratch = cli_value(ctx, "scratch");
        o.fs = cli_value(ctx, "fs");
        o.decoys = cli_flag(ctx, "decoys") > 0;
        if (o.fs && strcmp(o.fs, "xfs") != 0 && strcmp(o.fs, "ext4") != 0 &&
            strcmp(o.fs, "btrfs") != 0)
                return cli_usage_error("--fs wants xfs, ext4 or btrfs");
        if (cli_values(ctx, "attack", &vals, &n_vals) < 0)
                return EXIT_FAILED;
        for (size_t i = 0; i < n_vals; i++) {
                _cleanup_free_ char *copy = strdup(vals[i]);
                char *save = NULL;
                if (!copy)
                        break;
                for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                        if (strcmp(t, "all") == 0) {
                                for (size_t k = 0; hf_sim_kinds[k]; k++)
                                        (void)hf_strv_push(&kinds, &n_kinds, hf_sim_kinds[k]);
                                continue;
                        }
                        if (!hf_sim_kind_valid(t)) {
                                free(vals);
                                hf_strv_free(kinds, n_kinds);
                                return cli_usage_error("unknown attack \"%s\" (holdfast simulate "
                                                       "list names them)",
                                                       t);
                        }
                        (void)hf_strv_push(&kinds, &n_kinds, t);
                }
        }
        free(vals);
        if (self_path(self, sizeof(self)) < 0) {
                hf_strv_free(kinds, n_kinds);
                return EXIT_FAILED;
        }
        o.self = self;
        o.attacks = kinds;
        o.n_attacks = n_kinds;
        r = hf_drill(&o);
        hf_strv_free(kinds, n_kinds);
        return r == 0 ? EXIT_OK : r == HF_INCOMPLETE ? EXIT_INCOMPLETE : EXIT_FAILED;
}

const CliCommand cmd_drill = {
        .name = "drill",
        .usage = "[--attack KIND|all] [--keep] [--fs xfs|ext4|btrfs]",
        .summary = "prove recovery: protect a sample tree, attack it, recover, verify",
        .details = "As root: makes a filesystem image of its own (loop-mounted, so pre-content "
                   "events work even when the scratch folder is on tmpfs), a sample tree of a "
                   "public service (documents, images, a SQLite database, logs), a local vault "
                   "and a first snapshot; starts the sentinel; runs each attack of the built-in "
                   "simulator in turn, waits for containment, recovers and verifies every file "
                   "against its pre-attack hash while a trusted service process keeps writing; "
                   "then checks the vault round trip. Prints the time to detect, contain and "
                   "recover, files touched, files and bytes lost. Exit 0 only when nothing was "
                   "lost, 3 otherwise.",
        .options = drill_options,
        .run = run_drill,
};

static const CliOption sim_options[] = {
        { "disk", 0, NULL, "prepare: also a disk image attached to a loop device (root)" },
        { "scale", 0, "N", "prepare: N times the sample tree (default 1)" },
        { "files", 0, "N", "prepare: N text files instead of the sample tree (benchmarks)" },
        { "file-size", 0, "BYTES", "prepare: their size (default 16384)" },
        { "interval", 0, "SECONDS", "attack slow: seconds between files (default 5)" },
        { "max-files", 0, "N", "attack: stop after N files" },
        { NULL, 0, NULL, NULL },
};

static int run_simulate(CliContext *ctx, int argc, char **argv)
{
        const char *v;
        int r;

        if (argc >= 1 && strcmp(argv[0], "list") == 0) {
                for (size_t i = 0; hf_sim_kinds[i]; i++)
                        printf("%-16s %s\n", hf_sim_kinds[i], hf_sim_kind_help(hf_sim_kinds[i]));
                return EXIT_OK;
        }
        if (argc == 2 && strcmp(argv[0], "prepare") == 0) {
                HfSimPrepareOptions o = { .scale = 1, .disk = cli_flag(ctx, "disk") > 0 };
                if ((v = cli_value(ctx, "scale"))) {
                        uint64_t s;
                        if (hf_parse_u64(v, &s) < 0 || s < 1 || s > 1000)
                                return cli_usage_error("--scale wants 1..1000");
                        o.scale = (unsigned)s;
                }
                if ((v = cli_value(ctx, "files"))) {
                        uint64_t s;
                        if (hf_parse_u64(v, &s) < 0 || s < 1 || s > 10000000)
                                return cli_usage_error("--files wants 1..10000000");
                        o.files = (unsigned)s;
                }
                if ((v = cli_value(ctx, "file-size"))) {
                        uint64_t s;
                        if (hf_parse_size(v, &s) < 0 || s < 1 || s > (64u << 20))
                                return cli_usage_error("--file-size wants 1..64M");
                        o.file_size = (unsigned)s;
                }
                r = hf_sim_prepare(argv[1], &o);
                return r < 0 ? EXIT_FAILED : EXIT_OK;
        }
        if (argc == 2 && strcmp(argv[0], "cleanup") == 0)
                return hf_sim_cleanup(argv[1]) < 0 ? EXIT_FAILED : EXIT_OK;
        if (argc == 3 && strcmp(argv[0], "attack") == 0) {
                HfSimAttackOptions o = { .quiet = ctx->quiet > 0 };
                HfSimResult res;
                if ((v = cli_value(ctx, "interval"))) {
                        char *e = NULL;
                        o.interval = strtod(v, &e);
                        if (!e || *e || !(o.interval >= 0 && o.interval <= 3600))
                                return cli_usage_error("--interval wants seconds (0..3600)");
                }
                if ((v = cli_value(ctx, "max-files"))) {
                        uint64_t m;
                        if (hf_parse_u64(v, &m) < 0 || m > UINT32_MAX)
                                return cli_usage_error("--max-files wants a number");
                        o.max_files = (unsigned)m;
                }
                if (!hf_sim_kind_valid(argv[1]))
                        return cli_usage_error("unknown attack \"%s\" (holdfast simulate list)",
                                               argv[1]);
                r = hf_sim_attack(argv[2], argv[1], &o, &res);
                return r < 0 ? EXIT_FAILED : EXIT_OK;
        }
        return cli_usage_error("usage: holdfast simulate list | prepare DIR [--disk] | attack "
                               "KIND DIR | cleanup DIR");
}

const CliCommand cmd_simulate = {
        .name = "simulate",
        .usage = "list | prepare DIR [--disk] [--scale N] | attack KIND DIR | cleanup DIR",
        .summary = "the attack simulator (sandbox folders it created itself only)",
        .details = "prepare DIR creates DIR (it must not exist) with a sample tree and a token "
                   "bound to that folder; attack KIND DIR destroys the files listed in the token "
                   "the way KIND does (\"list\" names the kinds) and refuses any folder without a "
                   "valid token; cleanup DIR detaches the sandbox's loop device. For tests and "
                   "drills: run the sentinel, then an attack, then holdfast recover.",
        .options = sim_options,
        .run = run_simulate,
};
