/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "../base/log.h"
#include "../repo/pack.h"
#include "cli.h"

static const CliOption options[] = {
        { "tag", 0, "TAG", "add a tag to the snapshot (repeatable)" },
        { "host", 'H', "HOST", "host name to record (default: this host's name)" },
        { "parent", 0, "SNAPSHOT",
          "compare against this snapshot instead of the latest one of "
          "the same host and paths" },
        { "force", 'f', NULL, "read every file again, ignoring the parent snapshot" },
        { "exclude", 'e', "GLOB", "skip files and folders that match (repeatable)" },
        { "exclude-file", 0, "FILE", "read exclude patterns from FILE (repeatable)" },
        { "one-file-system", 'x', NULL, "do not cross into other filesystems" },
        { "compression", 0, "MODE", "auto (default), off, max or fastest" },
        { "pack-size", 0, "MIB", "target pack size in MiB (4 to 128, default 16)" },
        { "dry-run", 'n', NULL, "read and count everything, write nothing to the vault" },
        { NULL, 0, NULL, NULL },
};

static int run(CliContext *ctx, int argc, char **argv)
{
        _cleanup_(hf_repo_freep) HfRepo *repo = NULL;
        HfBackupOptions o = { .paths = argv, .n_paths = (size_t)argc, .out = ctx->out };
        HfBackupResult res = { 0 };
        char **files = NULL;
        size_t n_files = 0;
        const char *v;
        int r;

        if (argc == 0)
                return cli_usage_error("backup needs at least one path");
        o.host = cli_value(ctx, "host");
        o.parent = cli_value(ctx, "parent");
        o.force = cli_flag(ctx, "force") > 0;
        o.one_file_system = cli_flag(ctx, "one-file-system") > 0;
        o.dry_run = cli_flag(ctx, "dry-run") > 0;
        if (o.force && o.parent)
                return cli_usage_error("--force and --parent cannot be combined");
        r = cli_values(ctx, "tag", &o.tags, &o.n_tags);
        if (r < 0)
                return EXIT_FAILED;
        /* Excludes: the list given plus every file's patterns (copied, the list is ours). */
        {
                char **given = NULL;
                size_t n_given = 0;
                r = cli_values(ctx, "exclude", &given, &n_given);
                for (size_t i = 0; r >= 0 && i < n_given; i++)
                        r = hf_strv_push(&o.excludes, &o.n_excludes, given[i]);
                free(given);
        }
        if (r >= 0)
                r = cli_values(ctx, "exclude-file", &files, &n_files);
        for (size_t i = 0; r >= 0 && i < n_files; i++) {
                r = hf_exclude_read_file(files[i], &o.excludes, &o.n_excludes);
                if (r < 0) {
                        log_error_errno(r, "%s: cannot read the exclude file: %m", files[i]);
                        goto out;
                }
        }
        if (r < 0)
                goto out;

        r = cli_open_repo(ctx, &repo);
        if (r != EXIT_OK)
                goto done;
        if ((v = cli_value(ctx, "compression"))) {
                HfCompression c;
                if (hf_compression_from_string(v, &c) < 0) {
                        r = cli_usage_error("--compression must be auto, off, max or fastest");
                        goto done;
                }
                if (c != HF_COMPRESSION_OFF && hf_repo_version(repo) < 2) {
                        r = cli_usage_error("compression needs a version 2 vault (this one is "
                                            "version 1)");
                        goto done;
                }
                hf_repo_set_compression(repo, c);
        }
        if ((v = cli_value(ctx, "pack-size"))) {
                uint64_t mib;
                if (hf_parse_u64(v, &mib) < 0 || mib < 4 || mib > 128) {
                        r = cli_usage_error("--pack-size must be a number of MiB from 4 to 128");
                        goto done;
                }
                hf_repo_set_pack_size(repo, (size_t)mib << 20);
        }
        r = cli_exit_code(hf_backup(repo, &o, &res));
        goto done;
out:
        r = EXIT_FAILED;
done:
        free(o.tags);
        free(files);
        hf_strv_free(o.excludes, o.n_excludes);
        return r;
}

const CliCommand cmd_backup = {
        .name = "backup",
        .usage = "[OPTIONS] PATH...",
        .summary = "save a snapshot of files and folders",
        .details = "Files unchanged since the parent snapshot (same size, mtime, ctime and inode) "
                   "are not read again.\nExit code 3: the snapshot was saved, but some files "
                   "could not be read.",
        .options = options,
        .run = run,
};
