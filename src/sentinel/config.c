/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The sentinel's config file (dist/holdfast.conf documents every key). INI-like: [section],
 * "key = value", '#' or ';' comments. Strict: an unknown key or a bad value is an error that
 * names the line, so a typo never silently weakens protection. Fuzzed (fuzz-sentinel-config):
 * the file lives on a disk an intruder may have written to.
 */
#include <fcntl.h>
#include <string.h>

#include "../base/log.h"
#include "../base/util.h"
#include "sentinel.h"

#define MAX_LINE 4096
#define MAX_ENTRIES 256

void hf_sentinel_config_init(HfSentinelConfig *c)
{
        *c = (HfSentinelConfig){
                .action = HF_ACTION_KILL,
                .mode = HF_MODE_AUTO,
                .decoys = true,
                .raw_disk_guard = true,
                .pins = true,
                .threshold = 9,
                .alert_threshold = 3,
                .window = 300,
                .epoch = 300,
                .copy_limit = 256ULL << 20,
                .retention = 86400,
                .shadow_share = 0.10,
                .syslog = true,
        };
}

void hf_sentinel_config_done(HfSentinelConfig *c)
{
        for (size_t i = 0; i < c->n_paths; i++)
                free(c->paths[i]);
        free(c->paths);
        for (size_t i = 0; i < c->n_exclude; i++)
                free(c->exclude[i]);
        free(c->exclude);
        for (size_t i = 0; i < c->n_trusted; i++) {
                free(c->trusted[i].path);
                free(c->trusted[i].parent);
        }
        free(c->trusted);
        free(c->state_dir);
        free(c->alert_file);
        free(c->webhook);
        free(c->config_path);
        *c = (HfSentinelConfig){ 0 };
}

static const char *const action_names[] = { "alert", "stop", "kill" };

const char *hf_action_name(HfAction a)
{
        return (unsigned)a < ELEMENTSOF(action_names) ? action_names[a] : "?";
}

int hf_action_parse(const char *s, HfAction *ret)
{
        for (size_t i = 0; i < ELEMENTSOF(action_names); i++)
                if (strcmp(s, action_names[i]) == 0) {
                        *ret = (HfAction)i;
                        return 0;
                }
        return -EINVAL;
}

static int push_str(char ***v, size_t *n, const char *s)
{
        if (*n >= MAX_ENTRIES)
                return -E2BIG;
        char **nv = realloc(*v, (*n + 1) * sizeof(char *));
        if (!nv)
                return -ENOMEM;
        *v = nv;
        nv[*n] = strdup(s);
        if (!nv[*n])
                return -ENOMEM;
        (*n)++;
        return 0;
}

/* An absolute path without "." or ".." components, trailing '/' removed (except "/"). */
static int clean_path(const char *s, char *out, size_t n)
{
        size_t len = strlen(s);

        if (len == 0 || s[0] != '/' || len >= n)
                return -EINVAL;
        memcpy(out, s, len + 1);
        while (len > 1 && out[len - 1] == '/')
                out[--len] = 0;
        for (const char *p = out; *p; p++) {
                if (*p != '/')
                        continue;
                if (p[1] == '/')
                        return -EINVAL;
                if (p[1] == '.' && (p[2] == '/' || p[2] == 0))
                        return -EINVAL;
                if (p[1] == '.' && p[2] == '.' && (p[3] == '/' || p[3] == 0))
                        return -EINVAL;
        }
        return 0;
}

int hf_sentinel_config_add_path(HfSentinelConfig *c, const char *path)
{
        char p[4096];

        if (clean_path(path, p, sizeof(p)) < 0)
                return -EINVAL;
        for (size_t i = 0; i < c->n_paths; i++)
                if (strcmp(c->paths[i], p) == 0)
                        return 0;
        return push_str(&c->paths, &c->n_paths, p);
}

static int parse_bool(const char *v, bool *ret)
{
        if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "on") || !strcmp(v, "1"))
                *ret = true;
        else if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "off") || !strcmp(v, "0"))
                *ret = false;
        else
                return -EINVAL;
        return 0;
}

static int parse_number(const char *v, double lo, double hi, double *ret)
{
        char *end = NULL;
        double d;

        errno = 0;
        d = strtod(v, &end);
        if (errno || end == v || *end || !(d >= lo && d <= hi))
                return -EINVAL;
        *ret = d;
        return 0;
}

/* "PATH [parent=PATH] [sha256=HEX] [tree]" */
static int parse_trusted(HfSentinelConfig *c, char *v)
{
        HfTrusted t = { 0 };
        char p[4096];
        char *save = NULL;
        int r = -EINVAL;

        if (c->n_trusted >= MAX_ENTRIES)
                return -E2BIG;
        for (char *tok = strtok_r(v, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
                if (!t.path) {
                        if (clean_path(tok, p, sizeof(p)) < 0)
                                goto fail;
                        t.path = strdup(p);
                        if (!t.path) {
                                r = -ENOMEM;
                                goto fail;
                        }
                } else if (strncmp(tok, "parent=", 7) == 0) {
                        if (t.parent || clean_path(tok + 7, p, sizeof(p)) < 0)
                                goto fail;
                        t.parent = strdup(p);
                        if (!t.parent) {
                                r = -ENOMEM;
                                goto fail;
                        }
                } else if (strncmp(tok, "sha256=", 7) == 0) {
                        size_t got = 0;
                        if (t.has_sha256 || strlen(tok + 7) != 64 ||
                            hf_hex_decode(tok + 7, 64, t.sha256, 32, &got) < 0 || got != 32)
                                goto fail;
                        t.has_sha256 = true;
                } else if (strcmp(tok, "tree") == 0) {
                        t.tree = true;
                } else
                        goto fail;
        }
        if (!t.path)
                goto fail;
        HfTrusted *nt = realloc(c->trusted, (c->n_trusted + 1) * sizeof(HfTrusted));
        if (!nt) {
                r = -ENOMEM;
                goto fail;
        }
        c->trusted = nt;
        nt[c->n_trusted++] = t;
        return 0;
fail:
        free(t.path);
        free(t.parent);
        return r;
}

static int set_str(char **dst, const char *v)
{
        char *s = strdup(v);
        if (!s)
                return -ENOMEM;
        free(*dst);
        *dst = s;
        return 0;
}

static int apply(HfSentinelConfig *c, const char *section, const char *k, char *v)
{
        double d;
        uint64_t u;
        char p[4096];

        if (strcmp(section, "sentinel") == 0) {
                if (!strcmp(k, "action"))
                        return hf_action_parse(v, &c->action);
                if (!strcmp(k, "mode")) {
                        if (!strcmp(v, "auto"))
                                c->mode = HF_MODE_AUTO;
                        else if (!strcmp(v, "pre-content"))
                                c->mode = HF_MODE_PRE_CONTENT;
                        else if (!strcmp(v, "open-perm"))
                                c->mode = HF_MODE_OPEN_PERM;
                        else if (!strcmp(v, "notify"))
                                c->mode = HF_MODE_NOTIFY;
                        else
                                return -EINVAL;
                        return 0;
                }
                if (!strcmp(k, "state")) {
                        if (clean_path(v, p, sizeof(p)) < 0)
                                return -EINVAL;
                        return set_str(&c->state_dir, p);
                }
                if (!strcmp(k, "threshold") || !strcmp(k, "alert-threshold")) {
                        if (parse_number(v, 0.5, 1e6, &d) < 0)
                                return -EINVAL;
                        *(k[0] == 't' ? &c->threshold : &c->alert_threshold) = d;
                        return 0;
                }
                if (!strcmp(k, "window") || !strcmp(k, "epoch")) {
                        if (parse_number(v, 1, 86400 * 7, &d) < 0)
                                return -EINVAL;
                        *(k[0] == 'w' ? &c->window : &c->epoch) = (unsigned)d;
                        return 0;
                }
                if (!strcmp(k, "retention")) {
                        if (parse_number(v, 60, 86400 * 365, &d) < 0)
                                return -EINVAL;
                        c->retention = d;
                        return 0;
                }
                if (!strcmp(k, "shadow-share")) {
                        /* percent of the filesystem */
                        if (parse_number(v, 1, 90, &d) < 0)
                                return -EINVAL;
                        c->shadow_share = d / 100;
                        return 0;
                }
                if (!strcmp(k, "copy-limit")) {
                        if (hf_parse_size(v, &u) < 0)
                                return -EINVAL;
                        c->copy_limit = u;
                        return 0;
                }
                if (!strcmp(k, "decoys"))
                        return parse_bool(v, &c->decoys);
                if (!strcmp(k, "raw-disk-guard"))
                        return parse_bool(v, &c->raw_disk_guard);
                if (!strcmp(k, "pins"))
                        return parse_bool(v, &c->pins);
                return -ENOKEY;
        }
        if (strcmp(section, "protect") == 0) {
                if (!strcmp(k, "path"))
                        return hf_sentinel_config_add_path(c, v);
                if (!strcmp(k, "exclude")) {
                        if (clean_path(v, p, sizeof(p)) < 0)
                                return -EINVAL;
                        return push_str(&c->exclude, &c->n_exclude, p);
                }
                return -ENOKEY;
        }
        if (strcmp(section, "trust") == 0) {
                if (!strcmp(k, "program"))
                        return parse_trusted(c, v);
                return -ENOKEY;
        }
        if (strcmp(section, "alerts") == 0) {
                if (!strcmp(k, "syslog"))
                        return parse_bool(v, &c->syslog);
                if (!strcmp(k, "file")) {
                        if (!*v || strstr(v, ".."))
                                return -EINVAL;
                        return set_str(&c->alert_file, v);
                }
                if (!strcmp(k, "webhook")) {
                        if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0)
                                return -EINVAL;
                        for (const char *q = v; *q; q++)
                                if ((unsigned char)*q <= ' ' || *q == '\'' || *q == '"')
                                        return -EINVAL;
                        return set_str(&c->webhook, v);
                }
                return -ENOKEY;
        }
        return -ENOKEY;
}

static char *trim(char *s)
{
        while (*s == ' ' || *s == '\t')
                s++;
        size_t n = strlen(s);
        while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
                s[--n] = 0;
        return s;
}

int hf_sentinel_config_parse(HfSentinelConfig *c, const char *text, size_t len, char *err,
                             size_t errn)
{
        char line[MAX_LINE + 1];
        char section[32] = "";
        size_t pos = 0;
        unsigned lineno = 0;
        int r;

        while (pos < len) {
                const char *nl = memchr(text + pos, '\n', len - pos);
                size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
                lineno++;
                if (n > MAX_LINE) {
                        (void)snprintf(err, errn, "line %u: longer than %d bytes", lineno,
                                       MAX_LINE);
                        return -EPROTO;
                }
                memcpy(line, text + pos, n);
                line[n] = 0;
                pos += n + (nl ? 1 : 0);
                if (memchr(line, 0, n)) {
                        (void)snprintf(err, errn, "line %u: NUL byte", lineno);
                        return -EPROTO;
                }
                char *s = trim(line);
                if (!*s || *s == '#' || *s == ';')
                        continue;
                if (*s == '[') {
                        char *e = strchr(s, ']');
                        if (!e || e[1] || (size_t)(e - s - 1) >= sizeof(section)) {
                                (void)snprintf(err, errn, "line %u: bad section header", lineno);
                                return -EPROTO;
                        }
                        *e = 0;
                        (void)snprintf(section, sizeof(section), "%s", s + 1);
                        if (strcmp(section, "sentinel") != 0 && strcmp(section, "protect") != 0 &&
                            strcmp(section, "trust") != 0 && strcmp(section, "alerts") != 0) {
                                (void)snprintf(err, errn, "line %u: unknown section [%.20s]",
                                               lineno, section);
                                return -EPROTO;
                        }
                        continue;
                }
                char *eq = strchr(s, '=');
                if (!eq || !*section) {
                        (void)snprintf(err, errn, "line %u: expected key = value in a [section]",
                                       lineno);
                        return -EPROTO;
                }
                *eq = 0;
                char *k = trim(s), *v = eq + 1;
                /* A comment after the value needs whitespace before '#'. */
                for (char *q = v; *q; q++)
                        if ((*q == '#' || *q == ';') && q > v && (q[-1] == ' ' || q[-1] == '\t')) {
                                *q = 0;
                                break;
                        }
                v = trim(v);
                r = apply(c, section, k, v);
                if (r == -ENOKEY) {
                        (void)snprintf(err, errn, "line %u: unknown key \"%.40s\" in [%s]", lineno,
                                       k, section);
                        return -EPROTO;
                }
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        (void)snprintf(err, errn, "line %u: bad value for %.40s: \"%.80s\"", lineno,
                                       k, v);
                        return -EPROTO;
                }
        }
        if (c->alert_threshold > c->threshold)
                c->alert_threshold = c->threshold;
        return 0;
}

/* *path with its symbolic links resolved, when it exists (a tree that does not is reported
 * when the sentinel starts; a program that does not is never trusted). */
static void resolve_link(char **path)
{
        char *real = *path ? realpath(*path, NULL) : NULL;

        if (!real || strcmp(real, *path) == 0) {
                free(real);
                return;
        }
        log_notice("%s: taken as %s (symbolic links resolved)", *path, real);
        free(*path);
        *path = real;
}

int hf_sentinel_config_load(HfSentinelConfig *c, const char *path, char *err, size_t errn)
{
        _cleanup_buf_ HfBuf b = HF_BUF_INIT(1 << 20);
        int r = hf_read_file_at(AT_FDCWD, path, 1 << 20, &b);

        if (r < 0) {
                (void)snprintf(err, errn, "cannot read: %s", strerror(-r));
                return r;
        }
        char *abs = realpath(path, NULL);
        free(c->config_path);
        c->config_path = abs;
        r = hf_sentinel_config_parse(c, (const char *)b.data, b.len, err, errn);
        if (r < 0)
                return r;
        /* The kernel names files and executables by their real paths: a tree given through a
         * symbolic link (/var/www -> /srv/www) would match none of them and go unprotected,
         * a trusted program so given (/usr/bin/python3 -> python3.11) would never be trusted. */
        for (size_t i = 0; i < c->n_paths; i++)
                resolve_link(&c->paths[i]);
        for (size_t i = 0; i < c->n_exclude; i++)
                resolve_link(&c->exclude[i]);
        for (size_t i = 0; i < c->n_trusted; i++) {
                resolve_link(&c->trusted[i].path);
                resolve_link(&c->trusted[i].parent);
        }
        return 0;
}
