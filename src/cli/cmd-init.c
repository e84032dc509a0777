/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "../base/gojson.h"
#include "../base/log.h"
#include "cli.h"

static const CliOption options[] = {
        { "repository-version", 0, "N", "vault format version: 2 (default, compressed) or 1" },
        { "kdf-params", 0, "N,r,p",
          "scrypt parameters for the key (default: calibrated to ~0.5 s of one core here)" },
        { "object-lock", 0, "DAYS",
          "s3: vaults: a bucket with S3 Object Lock; everything written is kept from deletion for "
          "DAYS (created when missing; an existing bucket must have Object Lock)" },
        { "lock-mode", 0, "MODE",
          "with --object-lock: compliance (default: nobody can delete early) or governance "
          "(the bucket owner can, with a bypass)" },
        { NULL, 0, NULL, NULL },
};

static int run(CliContext *ctx, int argc, char **argv)
{
        const char *loc = ctx->repo ? ctx->repo : getenv("HOLDFAST_REPOSITORY");
        const char *v;
        _cleanup_free_ char *pw = NULL;
        HfRepoOptions o = { .version = 2 };
        HfKdfParams kdf;
        HfBackendS3Lock lock = { 0 };
        HfBackend *b = NULL;
        HfRepo *repo = NULL;
        int r;

        if (!loc || !*loc)
                loc = getenv("RESTIC_REPOSITORY");
        if (!loc || !*loc)
                return cli_usage_error("no vault given: use -r LOCATION or set "
                                       "HOLDFAST_REPOSITORY");
        if (argc > 0)
                return cli_usage_error("init takes no arguments");
        if ((v = cli_value(ctx, "repository-version"))) {
                if (strcmp(v, "1") == 0)
                        o.version = 1;
                else if (strcmp(v, "2") == 0 || strcmp(v, "latest") == 0)
                        o.version = 2;
                else
                        return cli_usage_error("--repository-version must be 1 or 2");
        }
        if ((v = cli_value(ctx, "kdf-params"))) {
                if (hf_kdf_params_parse(v, &kdf) < 0)
                        return cli_usage_error("--kdf-params wants N,r,p with N a power of two, "
                                               "e.g. 32768,8,1");
                o.kdf = &kdf;
        }
        if ((v = cli_value(ctx, "object-lock"))) {
                uint64_t days;
                if (hf_parse_u64(v, &days) < 0 || days < 1 || days > 36500)
                        return cli_usage_error("--object-lock wants a number of days, 1..36500");
                if (strncmp(loc, "s3:", 3) != 0)
                        return cli_usage_error("--object-lock needs an s3: vault location");
                lock.days = (uint32_t)days;
        }
        if ((v = cli_value(ctx, "lock-mode"))) {
                if (!lock.days)
                        return cli_usage_error("--lock-mode goes with --object-lock");
                if (strcmp(v, "governance") == 0)
                        lock.governance = true;
                else if (strcmp(v, "compliance") != 0)
                        return cli_usage_error("--lock-mode must be compliance or governance");
        }
        r = cli_password(ctx, true, &pw);
        if (r < 0)
                return EXIT_FAILED;
        if (strncmp(loc, "s3:", 3) == 0) {
                /* The S3 backend explains its failures itself (one sentence). */
                r = hf_backend_s3_open(loc + 3, true, lock.days ? &lock : NULL, &b);
                if (r < 0)
                        return EXIT_FAILED;
        } else
                r = hf_backend_open(loc, true, &b);
        if (r == -EPROTONOSUPPORT) {
                log_error("%s: this kind of location is not supported yet (use a local path)", loc);
                return EXIT_FAILED;
        }
        if (r < 0) {
                log_error_errno(r, "%s: cannot create the vault folder: %m", loc);
                return EXIT_FAILED;
        }
        r = hf_repo_init(b, pw, &o, &repo);
        explicit_bzero(pw, strlen(pw));
        if (r < 0)
                return EXIT_FAILED;
        if (ctx->json) {
                HfBuf out = HF_BUF_INIT(1 << 16);
                (void)hf_buf_printf(&out,
                                    "{\"message_type\":\"initialized\",\"id\":\"%s\","
                                    "\"version\":%d,\"repository\":",
                                    hf_repo_config_id(repo), hf_repo_version(repo));
                (void)hf_json_put_string(&out, loc, strlen(loc));
                (void)hf_buf_puts(&out, "}\n");
                fwrite(out.data, 1, out.len, stdout);
                hf_buf_free(&out);
        } else if (!ctx->quiet) {
                printf("created vault %.10s (format version %d) at %s\n", hf_repo_config_id(repo),
                       hf_repo_version(repo), loc);
                if (lock.days)
                        printf("Object Lock: every object is kept from deletion for %u day(s) "
                               "(%s mode), lock files excepted.\n",
                               lock.days, lock.governance ? "governance" : "compliance");
                printf("Keep the password safe: without it the vault cannot be read.\n");
        }
        hf_repo_free(repo);
        return EXIT_OK;
}

const CliCommand cmd_init = {
        .name = "init",
        .usage = NULL,
        .summary = "create a new vault",
        .details = "Creates a vault in restic's repository format (version 2 by default), so "
                   "restic can read it too. For an s3: location the bucket is created when "
                   "missing; with --object-lock it gets S3 Object Lock with a default retention "
                   "of DAYS, every object holdfast writes carries its own retain-until date, and "
                   "backups extend the retention of what their snapshot still needs.",
        .options = options,
        .run = run,
};
