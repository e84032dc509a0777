/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <string.h>
#include <termios.h>

#include "../base/log.h"
#include "../base/util.h"
#include "cli.h"

#define PASSWORD_MAX 4096

const CliOption cli_filter_options[] = {
        { "host", 'H', "HOST", "only snapshots of this host" },
        { "tag", 0, "TAG", "only snapshots with this tag (repeatable: all must match)" },
        { "path", 0, "PATH", "only snapshots of exactly these paths (repeatable)" },
        { NULL, 0, NULL, NULL },
};

int cli_filter(const CliContext *ctx, HfSnapshotFilter *ret)
{
        HfSnapshotFilter f = { .host = cli_value(ctx, "host") };
        int r;

        r = cli_values(ctx, "tag", &f.tags, &f.n_tags);
        if (r >= 0)
                r = cli_values(ctx, "path", &f.paths, &f.n_paths);
        if (r < 0) {
                cli_filter_done(&f);
                return r;
        }
        *ret = f;
        return 0;
}

void cli_filter_done(HfSnapshotFilter *f)
{
        free(f->tags);
        free(f->paths);
        memset(f, 0, sizeof(*f));
}

static int read_password_file(const char *path, char **ret)
{
        _cleanup_buf_ HfBuf b = HF_BUF_INIT(PASSWORD_MAX);
        int r = hf_read_file_at(AT_FDCWD, path, PASSWORD_MAX, &b);
        char *nl;

        if (r < 0) {
                log_error_errno(r, "%s: cannot read the password file: %m", path);
                return r;
        }
        if (!b.data)
                (void)hf_buf_putc(&b, 0);
        nl = strpbrk((char *)b.data, "\r\n");
        if (nl)
                *nl = 0;
        *ret = strdup((char *)b.data);
        explicit_bzero(b.data, b.cap);
        return *ret ? 0 : -ENOMEM;
}

static int prompt(const char *text, char **ret)
{
        struct termios old, quiet;
        char buf[PASSWORD_MAX];
        bool echo_off;
        size_t len;

        fputs(text, stderr);
        fflush(stderr);
        echo_off = tcgetattr(STDIN_FILENO, &old) == 0;
        if (echo_off) {
                quiet = old;
                quiet.c_lflag &= ~(tcflag_t)ECHO;
                (void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
        }
        if (!fgets(buf, sizeof(buf), stdin))
                buf[0] = 0;
        if (echo_off)
                (void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fputc('\n', stderr);
        len = strcspn(buf, "\r\n");
        buf[len] = 0;
        *ret = strdup(buf);
        explicit_bzero(buf, sizeof(buf));
        return *ret ? 0 : -ENOMEM;
}

int cli_password(const CliContext *ctx, bool confirm, char **ret)
{
        const char *v;
        char *p = NULL, *q = NULL;
        int r;

        if (ctx->password_file)
                return read_password_file(ctx->password_file, ret);
        if ((v = getenv("HOLDFAST_PASSWORD_FILE")) && *v)
                return read_password_file(v, ret);
        if ((v = getenv("HOLDFAST_PASSWORD")))
                return (*ret = strdup(v)) ? 0 : -ENOMEM;
        if ((v = getenv("RESTIC_PASSWORD_FILE")) && *v)
                return read_password_file(v, ret);
        if ((v = getenv("RESTIC_PASSWORD")))
                return (*ret = strdup(v)) ? 0 : -ENOMEM;
        if (!isatty(STDIN_FILENO)) {
                log_error("no password given: set HOLDFAST_PASSWORD or HOLDFAST_PASSWORD_FILE, "
                          "or pass --password-file");
                return -ENOKEY;
        }
        r = prompt(confirm ? "new password for the vault: " : "password for the vault: ", &p);
        if (r < 0)
                return r;
        if (confirm) {
                r = prompt("enter it again: ", &q);
                if (r < 0 || strcmp(p, q) != 0) {
                        free(p);
                        free(q);
                        if (r < 0)
                                return r;
                        log_error("the two passwords differ");
                        return -EINVAL;
                }
                free(q);
        }
        if (!*p) {
                free(p);
                log_error("an empty password is not allowed");
                return -EINVAL;
        }
        *ret = p;
        return 0;
}

static const char *repo_location(const CliContext *ctx)
{
        const char *v;

        if (ctx->repo)
                return ctx->repo;
        if ((v = getenv("HOLDFAST_REPOSITORY")) && *v)
                return v;
        if ((v = getenv("RESTIC_REPOSITORY")) && *v)
                return v;
        return NULL;
}

int cli_open_repo(CliContext *ctx, HfRepo **ret)
{
        const char *loc = repo_location(ctx);
        _cleanup_free_ char *pw = NULL;
        HfBackend *b = NULL;
        int r;

        if (!loc)
                return cli_usage_error("no vault given: use -r LOCATION or set "
                                       "HOLDFAST_REPOSITORY");
        r = hf_backend_open(loc, false, &b);
        if (r < 0 && strncmp(loc, "s3:", 3) == 0)
                return EXIT_FAILED; /* the S3 backend explained it (one sentence) */
        if (r == -EPROTONOSUPPORT) {
                log_error("%s: this kind of location is not supported yet (use a local path)", loc);
                return EXIT_FAILED;
        }
        if (r == -ENOENT || r == -ENOTDIR) {
                log_error("%s: there is no vault there (the folder does not exist); "
                          "\"holdfast init\" creates one",
                          loc);
                return EXIT_FAILED;
        }
        if (r < 0) {
                log_error_errno(r, "%s: cannot open: %m", loc);
                return EXIT_FAILED;
        }
        r = cli_password(ctx, false, &pw);
        if (r < 0) {
                hf_backend_free(b);
                return EXIT_FAILED;
        }
        r = hf_repo_open(b, pw, ret);
        explicit_bzero(pw, strlen(pw));
        if (r == -ENOMEDIUM) {
                log_error("%s: is not a vault (it has no config file); \"holdfast init\" "
                          "creates one",
                          loc);
                return EXIT_FAILED;
        }
        if (r == -ENOKEY) {
                log_error("no key in this vault opens with that password");
                return EXIT_FAILED;
        }
        if (r < 0)
                return EXIT_FAILED; /* explained where it happened */
        return EXIT_OK;
}

int cli_exit_code(int r)
{
        if (r == HF_INCOMPLETE)
                return EXIT_INCOMPLETE;
        return r < 0 ? EXIT_FAILED : EXIT_OK;
}
