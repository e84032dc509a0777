/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fnmatch.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>

#include "../base/gojson.h"
#include "../base/log.h"
#include "vault.h"

static pthread_mutex_t out_mutex = PTHREAD_MUTEX_INITIALIZER;

void hf_out_lock(void)
{
        pthread_mutex_lock(&out_mutex);
}

void hf_out_unlock(void)
{
        pthread_mutex_unlock(&out_mutex);
}

void hf_report_error(const HfOutput *out, const char *during, const char *item, int err,
                     const char *fmt, ...)
{
        char msg[2048];
        va_list ap;
        int e = err < 0 ? -err : err;

        errno = e;
        va_start(ap, fmt);
        (void)vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);

        hf_out_lock();
        if (out && out->json) {
                HfBuf b = HF_BUF_INIT(1u << 20);
                (void)hf_buf_puts(&b, "{\"message_type\":\"error\",\"error\":{\"message\":");
                (void)hf_json_put_string(&b, msg, strlen(msg));
                (void)hf_buf_printf(&b, "},\"during\":\"%s\",\"item\":", during);
                (void)hf_json_put_string(&b, item ? item : "", item ? strlen(item) : 0);
                (void)hf_buf_puts(&b, "}\n");
                fwrite(b.data, 1, b.len, stdout);
                fflush(stdout);
                hf_buf_free(&b);
        } else
                fprintf(stderr, "holdfast: %s%s%s\n", item ? item : "", item ? ": " : "", msg);
        hf_out_unlock();
}

int hf_load_tree(HfRepo *repo, HfCodec *codec, const HfId *id, HfTree *ret)
{
        _cleanup_buf_ HfBuf json = HF_BUF_INIT(HF_BLOB_MAX_PLAIN), err = HF_BUF_INIT(512);
        char hex[HF_ID_HEX_LEN + 1];
        int r;

        hf_id_hex(id, hex);
        r = hf_repo_load_blob(repo, codec, HF_BLOB_TREE, id, &json);
        if (r == -ENOENT)
                return log_error_errno(r,
                                       "tree %.16s is not in the index (missing from the "
                                       "vault)",
                                       hex);
        if (r == -EBADMSG)
                return log_error_errno(r, "tree %.16s is damaged (MAC or hash mismatch)", hex);
        if (r < 0)
                return log_error_errno(r, "tree %.16s cannot be loaded: %m", hex);
        r = hf_tree_parse(json.data, json.len, ret, &err);
        if (r == -EPROTO)
                return log_error_errno(r, "tree %.16s is malformed: %s", hex, (char *)err.data);
        return r;
}

/* A pattern without a leading '/' may match at any folder level, as in restic. */
static bool match_anywhere(const char *p, const char *path)
{
        if (p[0] == '/')
                return fnmatch(p, path, 0) == 0;
        for (const char *s = path; s; s = strchr(s + 1, '/')) {
                const char *tail = s[0] == '/' ? s + 1 : s;
                if (fnmatch(p, tail, 0) == 0)
                        return true;
        }
        return false;
}

bool hf_exclude_match(char **patterns, size_t n, const char *path, const char *name)
{
        for (size_t i = 0; i < n; i++) {
                const char *p = patterns[i];
                if (strchr(p, '/')) {
                        if (match_anywhere(p, path))
                                return true;
                } else if (fnmatch(p, name, 0) == 0)
                        return true;
        }
        return false;
}

int hf_exclude_read_file(const char *path, char ***v, size_t *n)
{
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        int r = 0;

        if (!f)
                return -errno;
        while ((len = getline(&line, &cap, f)) >= 0) {
                char *s = line;
                while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' ' ||
                                   s[len - 1] == '\t'))
                        s[--len] = 0;
                while (*s == ' ' || *s == '\t')
                        s++;
                if (!*s || *s == '#')
                        continue;
                r = hf_strv_push(v, n, s);
                if (r < 0)
                        break;
        }
        free(line);
        return r;
}
