/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The command line: a table of commands, each with a table of options that --help prints, so
 * the help text is generated from what the parser accepts. Exit codes (docs/cli.md): 0 ok,
 * 1 failed, 2 usage, 3 incomplete.
 */

#include <getopt.h>

#include "../repo/repo.h"
#include "../vault/vault.h"

enum {
        EXIT_OK = 0,
        EXIT_FAILED = 1,
        EXIT_USAGE = 2,
        EXIT_INCOMPLETE = 3,
};

typedef struct CliOption {
        const char *name; /* long name */
        int short_name;   /* 0 for none */
        const char *arg;  /* argument name for help, NULL for a flag */
        const char *help;
} CliOption;

typedef struct CliValue {
        const CliOption *opt;
        const char *value; /* NULL for flags */
} CliValue;

typedef struct CliContext {
        const char *repo;
        const char *password_file;
        bool json;
        bool no_lock;
        int quiet;
        int verbose;
        CliValue *values; /* command options in the order given */
        size_t n_values;
        HfOutput out;
} CliContext;

typedef struct CliCommand {
        const char *name;
        const char *usage;        /* arguments after the command, e.g. "PATH..." */
        const char *summary;      /* one line */
        const char *details;      /* paragraph for --help, may be NULL */
        const CliOption *options; /* NULL-name terminated, may be NULL */
        int (*run)(CliContext *ctx, int argc, char **argv);
} CliCommand;

/* Last value of a command option (NULL when not given). */
const char *cli_value(const CliContext *ctx, const char *name);
/* How often a flag was given. */
unsigned cli_flag(const CliContext *ctx, const char *name);
/* Every value of a repeatable option, in order (the array is the caller's, strings are not). */
int cli_values(const CliContext *ctx, const char *name, char ***ret, size_t *ret_n);

/* Prints "holdfast: <message>" and returns EXIT_USAGE. */
int cli_usage_error(const char *fmt, ...) _printf_(1, 2);

/*
 * Reads the password (--password-file, HOLDFAST_PASSWORD_FILE, HOLDFAST_PASSWORD,
 * RESTIC_PASSWORD_FILE, RESTIC_PASSWORD, or a prompt on a terminal; twice when confirm).
 */
int cli_password(const CliContext *ctx, bool confirm, char **ret);
/* Opens the vault named by -r/HOLDFAST_REPOSITORY/RESTIC_REPOSITORY; returns an exit code. */
int cli_open_repo(CliContext *ctx, HfRepo **ret);
/* Maps an operation's return value to an exit code. */
int cli_exit_code(int r);

/* Shared for several commands: the snapshot filter options. */
extern const CliOption cli_filter_options[];
int cli_filter(const CliContext *ctx, HfSnapshotFilter *ret);
void cli_filter_done(HfSnapshotFilter *f);

extern const CliCommand cmd_init, cmd_backup, cmd_snapshots, cmd_ls, cmd_restore, cmd_check,
        cmd_diff, cmd_cat, cmd_key, cmd_unlock, cmd_serve;
extern const CliCommand cmd_sentinel, cmd_incidents, cmd_incident, cmd_allow_disk;
extern const CliCommand cmd_recover, cmd_drill, cmd_simulate;
