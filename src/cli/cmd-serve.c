/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <math.h>
#include <string.h>

#include "../base/log.h"
#include "../server/server.h"
#include "cli.h"

static const CliOption options[] = {
        { "root", 0, "DIR", "folder holding the vaults (created when missing)" },
        { "backend", 0, "LOCATION",
          "keep the vaults in an S3 bucket (s3:http(s)://HOST:PORT/BUCKET[/PREFIX]); --root then "
          "holds only this instance's receipt log and lock" },
        { "listen", 0, "ADDR", "HOST:PORT, :PORT or [V6]:PORT to listen on (default :8000)" },
        { "append-only", 0, NULL, "refuse every DELETE except of locks" },
        { "retention", 0, "DAYS",
          "refuse deleting anything the server received less than DAYS ago (decimals allowed)" },
        { "htpasswd", 0, "FILE", "users and bcrypt hashes (default ROOT/.htpasswd; htpasswd -B)" },
        { "no-auth", 0, NULL, "serve without authentication" },
        { "private-repos", 0, NULL, "a user reaches only /USER/..." },
        { "tls-cert", 0, "FILE", "serve HTTPS with this PEM certificate (with --tls-key)" },
        { "tls-key", 0, "FILE", "the certificate's PEM private key" },
        { "max-object-size", 0, "SIZE", "largest object accepted (default 256M)" },
        { "timeout", 0, "SECONDS", "close connections idle this long (default 60)" },
        { "max-connections", 0, "N", "concurrent connections (default 256)" },
        { "heartbeat-timeout", 0, "SECONDS", "warn once when a host's heartbeat is this old" },
        { "metrics-no-auth", 0, NULL, "serve /metrics without authentication" },
        { "verify", 0, NULL,
          "check the receipt log and every object under --root instead of serving" },
        { "max-clock-skew", 0, "SECONDS",
          "--verify: how far a snapshot's time may run ahead of its receipt (default 300)" },
        { NULL, 0, NULL, NULL },
};

static int parse_seconds(const char *name, const char *v, double max, double *ret)
{
        char *end = NULL;
        double d;

        errno = 0;
        d = strtod(v, &end);
        if (errno || !end || *end || end == v || !isfinite(d) || d < 0 || d > max)
                return cli_usage_error("--%s wants a non-negative number, got \"%s\"", name, v);
        *ret = d;
        return 0;
}

static bool password_given(const CliContext *ctx)
{
        static const char *const vars[] = { "HOLDFAST_PASSWORD_FILE", "HOLDFAST_PASSWORD",
                                            "RESTIC_PASSWORD_FILE", "RESTIC_PASSWORD" };

        if (ctx->password_file)
                return true;
        for (size_t i = 0; i < ELEMENTSOF(vars); i++)
                if (getenv(vars[i]))
                        return true;
        return false;
}

static int run_verify(CliContext *ctx, const char *root)
{
        _cleanup_free_ char *pw = NULL;
        HfVerifyOptions vo = { .root = root, .max_clock_skew = 300, .json = ctx->json };
        const char *v;
        int r;

        if ((v = cli_value(ctx, "max-clock-skew")) &&
            parse_seconds("max-clock-skew", v, 1e9, &vo.max_clock_skew) != 0)
                return EXIT_USAGE;
        if (password_given(ctx)) {
                r = cli_password(ctx, false, &pw);
                if (r < 0)
                        return EXIT_FAILED;
                vo.password = pw;
        }
        r = hf_server_verify(&vo);
        if (pw)
                explicit_bzero(pw, strlen(pw));
        if (r == HF_INCOMPLETE)
                return EXIT_INCOMPLETE;
        return r < 0 ? EXIT_FAILED : EXIT_OK;
}

static int run(CliContext *ctx, int argc, char **argv)
{
        _cleanup_(hf_server_freep) HfServer *s = NULL;
        HfServerOptions o = { .listen_fd = -1 };
        const char *v;
        double d = 0;
        uint64_t u;
        int r;

        if (argc > 0)
                return cli_usage_error("serve takes no arguments");
        o.root = cli_value(ctx, "root");
        if (!o.root)
                return cli_usage_error("serve needs --root DIR");
        if (cli_flag(ctx, "verify"))
                return run_verify(ctx, o.root);

        o.backend = cli_value(ctx, "backend");
        if (o.backend && strncmp(o.backend, "s3:", 3) != 0)
                return cli_usage_error("--backend takes an s3: location");
        if (o.backend && cli_value(ctx, "retention"))
                return cli_usage_error("--retention keeps files on disk; for a bucket use S3 "
                                       "Object Lock (holdfast init --object-lock DAYS)");
        o.listen = cli_value(ctx, "listen");
        o.append_only = cli_flag(ctx, "append-only") > 0;
        o.no_auth = cli_flag(ctx, "no-auth") > 0;
        o.private_repos = cli_flag(ctx, "private-repos") > 0;
        o.metrics_no_auth = cli_flag(ctx, "metrics-no-auth") > 0;
        o.htpasswd = cli_value(ctx, "htpasswd");
        o.tls_cert = cli_value(ctx, "tls-cert");
        o.tls_key = cli_value(ctx, "tls-key");
        o.json = ctx->json;
        if (o.no_auth && o.htpasswd)
                return cli_usage_error("--no-auth and --htpasswd exclude each other");
        if (o.no_auth && o.private_repos)
                return cli_usage_error("--private-repos needs authentication (not --no-auth)");
        if (!!o.tls_cert != !!o.tls_key)
                return cli_usage_error("--tls-cert and --tls-key go together");
        if ((v = cli_value(ctx, "retention"))) {
                if (parse_seconds("retention", v, 365.0 * 1000, &o.retention_days) != 0)
                        return EXIT_USAGE;
        }
        if ((v = cli_value(ctx, "max-object-size"))) {
                if (hf_parse_size(v, &u) < 0 || u == 0)
                        return cli_usage_error("--max-object-size wants a size like 64M");
                o.max_object_size = u;
        }
        if ((v = cli_value(ctx, "timeout"))) {
                if (parse_seconds("timeout", v, 86400, &d) != 0)
                        return EXIT_USAGE;
                if (d < 1)
                        return cli_usage_error("--timeout must be at least 1 second");
                o.timeout = (unsigned)d;
        }
        if ((v = cli_value(ctx, "max-connections"))) {
                if (hf_parse_u64(v, &u) < 0 || u == 0 || u > 65536)
                        return cli_usage_error("--max-connections wants 1..65536");
                o.max_connections = (unsigned)u;
        }
        if ((v = cli_value(ctx, "heartbeat-timeout")) &&
            parse_seconds("heartbeat-timeout", v, 1e9, &o.heartbeat_timeout) != 0)
                return EXIT_USAGE;
        /* systemd socket activation: one socket passed as fd 3. */
        if (!o.listen && (v = getenv("LISTEN_FDS")) && strcmp(v, "1") == 0 &&
            (v = getenv("LISTEN_PID")) && hf_parse_u64(v, &u) == 0 && u == (uint64_t)getpid())
                o.listen_fd = 3;

        if (ctx->verbose == 0 && !ctx->quiet)
                hf_log_set_level(HF_LOG_NOTICE);
        r = hf_server_new(&o, &s);
        if (r < 0)
                return EXIT_FAILED;
        r = hf_server_run(s);
        return r < 0 ? EXIT_FAILED : EXIT_OK;
}

const CliCommand cmd_serve = {
        .name = "serve",
        .usage = "--root DIR [--listen ADDR] [OPTIONS]",
        .summary = "serve vaults over restic's REST protocol, append-only and retention-locked",
        .details =
                "Serves the vaults under --root to holdfast and restic "
                "(rest:http://HOST:PORT/PATH) "
                "in the local layout, so they also open directly. Objects are never overwritten; "
                "uploads are checked against their names (SHA-256) before they become visible. "
                "Every accepted object is recorded in ROOT/.holdfast/receipts.log, a hash chain "
                "that --verify checks against the files; with a password (--password-file), "
                "--verify also flags snapshots whose time is later than the time the server "
                "received them (forged). Sentinels POST /.holdfast/heartbeat/HOST; /metrics "
                "shows how long each host has been silent. SIGHUP reloads the htpasswd file.\n"
                "Exit codes: 0 served until SIGTERM or verified clean, 1 failed to start or "
                "check, 2 usage, 3 --verify found a problem.",
        .options = options,
        .run = run,
};
