/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <string.h>
#include <termios.h>
#include <time.h>

#include "../base/gojson.h"
#include "../base/log.h"
#include "../crypto/crypto.h"
#include "../repo/key.h"
#include "../repo/lock.h"
#include "cli.h"

#define KEYFILE_MAX (64u * 1024)
#define PASSWORD_MAX 4096
/* restic's target for a new key's scrypt cost. */
#define KDF_TARGET_MS 500

static const CliOption options[] = {
        { "new-password-file", 0, "FILE",
          "add/passwd: read the new password from the first line of FILE" },
        { "kdf-params", 0, "N,r,p",
          "add/passwd: scrypt parameters of the new key (default: calibrated to ~0.5 s of one core "
          "here)" },
        { "user", 0, "NAME", "add/passwd: user name recorded in the new key (default: yours)" },
        { "host", 0, "NAME",
          "add/passwd: host name recorded in the new key (default: this host's)" },
        { NULL, 0, NULL, NULL },
};

typedef struct KeyRow {
        HfId id;
        HfTime created;
        char *username;
        char *hostname;
        bool current;
} KeyRow;

static void rows_free(KeyRow *v, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(v[i].username);
                free(v[i].hostname);
        }
        free(v);
}

static int row_cmp(const void *x, const void *y)
{
        const KeyRow *a = x, *b = y;

        if (a->created.sec != b->created.sec)
                return a->created.sec < b->created.sec ? -1 : 1;
        if (a->created.nsec != b->created.nsec)
                return a->created.nsec < b->created.nsec ? -1 : 1;
        return hf_id_cmp(&a->id, &b->id);
}

/* "2006-01-02 15:04:05" in local time, restic's key list format. */
static void format_local(const HfTime *t, char *buf, size_t n)
{
        time_t sec = (time_t)t->sec;
        struct tm tm;

        if (!localtime_r(&sec, &tm) || strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm) == 0)
                (void)snprintf(buf, n, "?");
}

/* Reads every key file's public fields. Unreadable ones are named and counted. */
static int load_rows(HfRepo *repo, KeyRow **ret, size_t *ret_n, unsigned *ret_errors)
{
        HfBackend *b = hf_repo_backend(repo);
        _cleanup_free_ HfId *ids = NULL;
        KeyRow *v;
        size_t n = 0, m = 0;
        unsigned errors = 0;
        int r;

        r = hf_repo_list_ids(repo, HF_FILE_KEY, &ids, &n);
        if (r < 0)
                return log_error_errno(r, "%s/keys: cannot list: %m", b->location);
        v = calloc(MAX(n, (size_t)1), sizeof(KeyRow));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                _cleanup_buf_ HfBuf json = HF_BUF_INIT(KEYFILE_MAX), err = HF_BUF_INIT(256);
                char hex[HF_ID_HEX_LEN + 1];
                HfKeyFile kf;

                hf_id_hex(&ids[i], hex);
                r = hf_backend_load(b, HF_FILE_KEY, hex, 0, 0, &json);
                if (r < 0) {
                        log_warning_errno(r, "%s/keys/%s: cannot read: %m", b->location, hex);
                        errors++;
                        continue;
                }
                r = hf_keyfile_parse(json.data, json.len, &kf, &err);
                if (r < 0) {
                        log_warning("%s/keys/%s: %s", b->location, hex,
                                    err.len ? (char *)err.data : "malformed key file");
                        errors++;
                        continue;
                }
                v[m] = (KeyRow){
                        .id = ids[i],
                        .created = kf.created,
                        .username = TAKE_PTR(kf.username),
                        .hostname = TAKE_PTR(kf.hostname),
                        .current = hf_id_eq(&ids[i], hf_repo_key_id(repo)),
                };
                m++;
                hf_keyfile_done(&kf);
        }
        qsort(v, m, sizeof(KeyRow), row_cmp);
        *ret = v;
        *ret_n = m;
        *ret_errors = errors;
        return 0;
}

static int key_list(CliContext *ctx, HfRepo *repo)
{
        KeyRow *v = NULL;
        size_t n = 0, wu = 4, wh = 4;
        unsigned errors = 0;
        int r;

        r = load_rows(repo, &v, &n, &errors);
        if (r < 0)
                return EXIT_FAILED;
        if (ctx->json) {
                /* restic's key list --json shape, so scripts work with both. */
                HfBuf out = HF_BUF_INIT(SIZE_MAX / 2);
                r = hf_buf_putc(&out, '[');
                for (size_t i = 0; r >= 0 && i < n; i++) {
                        char hex[HF_ID_HEX_LEN + 1], when[32];
                        hf_id_hex(&v[i].id, hex);
                        format_local(&v[i].created, when, sizeof(when));
                        r = hf_buf_printf(&out, "%s{\"current\":%s,\"id\":\"%.8s\",\"userName\":",
                                          i ? "," : "", v[i].current ? "true" : "false", hex);
                        if (r >= 0)
                                r = hf_json_put_string(&out, v[i].username, strlen(v[i].username));
                        if (r >= 0)
                                r = hf_buf_puts(&out, ",\"hostName\":");
                        if (r >= 0)
                                r = hf_json_put_string(&out, v[i].hostname, strlen(v[i].hostname));
                        if (r >= 0)
                                r = hf_buf_printf(&out, ",\"created\":\"%s\"}", when);
                }
                if (r >= 0)
                        r = hf_buf_puts(&out, "]\n");
                if (r >= 0)
                        fwrite(out.data, 1, out.len, stdout);
                hf_buf_free(&out);
        } else {
                for (size_t i = 0; i < n; i++) {
                        wu = MAX(wu, strlen(v[i].username));
                        wh = MAX(wh, strlen(v[i].hostname));
                }
                char rule[256];
                size_t rl = MIN(sizeof(rule) - 1, 9 + 2 + wu + 2 + wh + 2 + 19);
                memset(rule, '-', rl);
                rule[rl] = 0;
                printf(" %-8s  %-*s  %-*s  %s\n%s\n", "ID", (int)wu, "User", (int)wh, "Host",
                       "Created", rule);
                for (size_t i = 0; i < n; i++) {
                        char hex[HF_ID_HEX_LEN + 1], when[32];
                        hf_id_hex(&v[i].id, hex);
                        format_local(&v[i].created, when, sizeof(when));
                        printf("%c%.8s  %-*s  %-*s  %s\n", v[i].current ? '*' : ' ', hex, (int)wu,
                               v[i].username, (int)wh, v[i].hostname, when);
                }
                printf("%s\n", rule);
        }
        rows_free(v, n);
        if (r < 0)
                return EXIT_FAILED;
        return errors ? EXIT_INCOMPLETE : EXIT_OK;
}

static int read_first_line(const char *path, char **ret)
{
        _cleanup_buf_ HfBuf b = HF_BUF_INIT(PASSWORD_MAX);
        int r = hf_read_file_at(AT_FDCWD, path, PASSWORD_MAX, &b);

        if (r < 0)
                return log_error_errno(r, "%s: cannot read the new password file: %m", path);
        if (hf_buf_putc(&b, 0) < 0)
                return -ENOMEM;
        b.data[strcspn((char *)b.data, "\r\n")] = 0;
        *ret = strdup((char *)b.data);
        explicit_bzero(b.data, b.cap);
        return *ret ? 0 : -ENOMEM;
}

static int prompt(const char *text, char **ret)
{
        struct termios old, quiet;
        char buf[PASSWORD_MAX];
        bool echo_off;

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
        buf[strcspn(buf, "\r\n")] = 0;
        *ret = strdup(buf);
        explicit_bzero(buf, sizeof(buf));
        return *ret ? 0 : -ENOMEM;
}

static void free_password(char *p)
{
        if (p) {
                explicit_bzero(p, strlen(p));
                free(p);
        }
}

/* The new password: --new-password-file, $HOLDFAST_NEW_PASSWORD, or asked twice. */
static int new_password(const CliContext *ctx, char **ret)
{
        const char *file = cli_value(ctx, "new-password-file"), *env;
        char *p = NULL, *q = NULL;
        int r;

        if (file)
                r = read_first_line(file, &p);
        else if ((env = getenv("HOLDFAST_NEW_PASSWORD")))
                r = (p = strdup(env)) ? 0 : -ENOMEM;
        else if (!isatty(STDIN_FILENO))
                return log_error_errno(ENOKEY, "no new password given: pass --new-password-file "
                                               "or set HOLDFAST_NEW_PASSWORD");
        else {
                r = prompt("new password: ", &p);
                if (r >= 0)
                        r = prompt("enter the new password again: ", &q);
                if (r >= 0 && p && q && strcmp(p, q) != 0)
                        r = log_error_errno(EINVAL, "the two passwords differ");
                free_password(q);
        }
        if (r >= 0 && (!p || !*p))
                r = log_error_errno(EINVAL, "an empty password is not allowed");
        if (r < 0) {
                free_password(p);
                return r;
        }
        *ret = p;
        return 0;
}

/* Writes a new key file wrapping the vault's master key; *ret_id names it. */
static int add_key(const CliContext *ctx, HfRepo *repo, HfId *ret_id)
{
        HfBackend *b = hf_repo_backend(repo);
        _cleanup_buf_ HfBuf json = HF_BUF_INIT(KEYFILE_MAX);
        const char *v, *user, *host;
        char hex[HF_ID_HEX_LEN + 1];
        char *pw = NULL;
        HfKdfParams kdf;
        int r;

        if ((v = cli_value(ctx, "kdf-params"))) {
                if (hf_kdf_params_parse(v, &kdf) < 0)
                        return log_error_errno(EINVAL, "--kdf-params wants N,r,p with N a power "
                                                       "of two, e.g. 32768,8,1");
        }
        r = new_password(ctx, &pw);
        if (r < 0)
                return r;
        if (!v) {
                r = hf_kdf_calibrate(KDF_TARGET_MS, &kdf);
                if (r < 0) {
                        free_password(pw);
                        return log_error_errno(r, "cannot calibrate scrypt: %m");
                }
        }
        user = cli_value(ctx, "user") ?: hf_username();
        host = cli_value(ctx, "host") ?: hf_hostname();
        r = hf_keyfile_create(pw, hf_repo_key(repo), &kdf, user, host, &json);
        free_password(pw);
        if (r < 0)
                return log_error_errno(r, "cannot create the key: %m");
        hf_sha256(json.data, json.len, ret_id);
        hf_id_hex(ret_id, hex);
        r = hf_backend_save(b, HF_FILE_KEY, hex, json.data, json.len);
        if (r < 0)
                return log_error_errno(r, "%s/keys/%s: cannot write: %m", b->location, hex);
        return 0;
}

static int remove_key(HfRepo *repo, const HfId *id)
{
        HfBackend *b = hf_repo_backend(repo);
        char hex[HF_ID_HEX_LEN + 1];
        int r;

        hf_id_hex(id, hex);
        r = hf_backend_remove(b, HF_FILE_KEY, hex);
        if (r < 0)
                return log_error_errno(r, "%s/keys/%s: cannot remove: %m", b->location, hex);
        return 0;
}

static void report(const CliContext *ctx, const char *type, const char *text, const HfId *id)
{
        char hex[HF_ID_HEX_LEN + 1];

        hf_id_hex(id, hex);
        if (ctx->json)
                printf("{\"message_type\":\"%s\",\"id\":\"%s\"}\n", type, hex);
        else if (!ctx->quiet)
                printf("%s %.8s\n", text, hex);
}

static int run(CliContext *ctx, int argc, char **argv)
{
        _cleanup_(hf_repo_freep) HfRepo *repo = NULL;
        _cleanup_(hf_lock_releasep) HfLock *lock = NULL;
        const char *sub = argc > 0 ? argv[0] : NULL;
        bool exclusive;
        HfKdfParams kdf;
        HfId id;
        int r;

        if (!sub)
                return cli_usage_error("key needs a subcommand: list, add, remove ID or passwd");
        if (strcmp(sub, "remove") == 0) {
                if (argc != 2)
                        return cli_usage_error("key remove needs one key ID (or a unique "
                                               "prefix)");
        } else if (strcmp(sub, "list") == 0 || strcmp(sub, "add") == 0 ||
                   strcmp(sub, "passwd") == 0) {
                if (argc != 1)
                        return cli_usage_error("key %s takes no arguments", sub);
        } else
                return cli_usage_error("unknown key subcommand \"%s\" (list, add, remove, "
                                       "passwd)",
                                       sub);
        /* Bad parameters are a usage error before any password is asked for. */
        if (cli_value(ctx, "kdf-params") &&
            hf_kdf_params_parse(cli_value(ctx, "kdf-params"), &kdf) < 0)
                return cli_usage_error("--kdf-params wants N,r,p with N a power of two, e.g. "
                                       "32768,8,1");

        r = cli_open_repo(ctx, &repo);
        if (r != EXIT_OK)
                return r;
        /* Removing a key is destructive; listing and adding are not (as in restic). */
        exclusive = strcmp(sub, "remove") == 0 || strcmp(sub, "passwd") == 0;
        if (!ctx->no_lock && hf_lock_acquire(repo, exclusive, &lock) < 0)
                return EXIT_FAILED;

        if (strcmp(sub, "list") == 0)
                return key_list(ctx, repo);

        if (strcmp(sub, "add") == 0) {
                if (add_key(ctx, repo, &id) < 0)
                        return EXIT_FAILED;
                report(ctx, "key_added", "added key", &id);
                return EXIT_OK;
        }

        if (strcmp(sub, "remove") == 0) {
                if (hf_repo_find_id(repo, HF_FILE_KEY, argv[1], &id) < 0)
                        return EXIT_FAILED;
                if (hf_id_eq(&id, hf_repo_key_id(repo))) {
                        char hex[HF_ID_HEX_LEN + 1];
                        hf_id_hex(&id, hex);
                        log_error("key %.8s is the one this password opened the vault with, so "
                                  "it is not removed: open the vault with another key's "
                                  "password to remove it, or use \"holdfast key passwd\" to "
                                  "replace it",
                                  hex);
                        return EXIT_FAILED;
                }
                if (remove_key(repo, &id) < 0)
                        return EXIT_FAILED;
                report(ctx, "key_removed", "removed key", &id);
                return EXIT_OK;
        }

        /* passwd: the new key is stored before the old one goes, so one always opens. */
        if (add_key(ctx, repo, &id) < 0)
                return EXIT_FAILED;
        if (remove_key(repo, hf_repo_key_id(repo)) < 0) {
                log_error("the new key was added but the old one is still there: remove it "
                          "with \"holdfast key remove\"");
                return EXIT_FAILED;
        }
        report(ctx, "key_changed", "changed the password; new key", &id);
        return EXIT_OK;
}

const CliCommand cmd_key = {
        .name = "key",
        .usage = "list | add | remove ID | passwd",
        .summary = "manage the passwords (key files) that open the vault",
        .details = "list      every key: ID, '*' for the key that opened the vault, user, host, "
                   "creation time\n"
                   "add       a new password for the same vault (a new key file wrapping the same "
                   "master key)\n"
                   "remove    a key (by ID or unique prefix); the key in use cannot be removed\n"
                   "passwd    replace the key in use by one with a new password\n"
                   "The new password comes from --new-password-file, $HOLDFAST_NEW_PASSWORD, or is "
                   "asked twice on a terminal. list and add take a non-exclusive lock, remove and "
                   "passwd an exclusive one.\n"
                   "Removing a key does not make a copy of the master key useless: whoever saw "
                   "\"holdfast cat masterkey\" can still read the vault.",
        .options = options,
        .run = run,
};
