/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "snapshot.h"

#include <jansson.h>
#include <string.h>

#include "../base/log.h"

#define SNAPSHOT_MAX (64u * 1024 * 1024)

int hf_strv_push(char ***v, size_t *n, const char *s)
{
        char **nv = realloc(*v, (*n + 1) * sizeof(char *));
        char *d;

        if (!nv)
                return -ENOMEM;
        *v = nv;
        d = strdup(s);
        if (!d)
                return -ENOMEM;
        nv[(*n)++] = d;
        return 0;
}

void hf_strv_free(char **v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
}

void hf_snapshot_done(HfSnapshot *s)
{
        hf_strv_free(s->paths, s->n_paths);
        hf_strv_free(s->excludes, s->n_excludes);
        hf_strv_free(s->tags, s->n_tags);
        free(s->hostname);
        free(s->username);
        free(s->program_version);
        memset(s, 0, sizeof(*s));
}

HfSnapshot *hf_snapshot_free(HfSnapshot *s)
{
        if (s) {
                hf_snapshot_done(s);
                free(s);
        }
        return NULL;
}

void hf_snapshot_array_free(HfSnapshot *v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                hf_snapshot_done(&v[i]);
        free(v);
}

int64_t hf_time_cmp(const HfTime *a, const HfTime *b)
{
        if (a->sec != b->sec)
                return a->sec < b->sec ? -1 : 1;
        return (int64_t)a->nsec - b->nsec;
}

static int put_strv(HfBuf *out, const char *key, char **v, size_t n)
{
        int r = hf_buf_printf(out, ",\"%s\":[", key);

        for (size_t i = 0; r >= 0 && i < n; i++) {
                if (i)
                        r = hf_buf_putc(out, ',');
                if (r >= 0)
                        r = hf_json_put_string(out, v[i], strlen(v[i]));
        }
        if (r >= 0)
                r = hf_buf_putc(out, ']');
        return r;
}

static int put_idf(HfBuf *out, const char *key, const HfId *id)
{
        char hex[HF_ID_HEX_LEN + 1];

        hf_id_hex(id, hex);
        return hf_buf_printf(out, ",\"%s\":\"%s\"", key, hex);
}

static int put_timef(HfBuf *out, const char *key, const HfTime *t, bool first)
{
        int r = hf_buf_printf(out, "%s\"%s\":\"", first ? "" : ",", key);
        if (r >= 0)
                r = hf_time_format(out, t);
        if (r >= 0)
                r = hf_buf_putc(out, '"');
        return r;
}

int hf_snapshot_format(const HfSnapshot *s, HfBuf *out)
{
        char hex[HF_ID_HEX_LEN + 1];
        int r;

        r = hf_buf_putc(out, '{');
        if (r >= 0)
                r = put_timef(out, "time", &s->time, true);
        if (r >= 0 && s->has_parent)
                r = put_idf(out, "parent", &s->parent);
        if (r >= 0) {
                hf_id_hex(&s->tree, hex);
                r = hf_buf_printf(out, ",\"tree\":\"%s\"", hex);
        }
        /* paths has no omitempty in restic: an empty list is written as null. */
        if (r >= 0) {
                if (s->n_paths)
                        r = put_strv(out, "paths", s->paths, s->n_paths);
                else
                        r = hf_buf_puts(out, ",\"paths\":null");
        }
        if (r >= 0 && s->hostname && *s->hostname) {
                r = hf_buf_puts(out, ",\"hostname\":");
                if (r >= 0)
                        r = hf_json_put_string(out, s->hostname, strlen(s->hostname));
        }
        if (r >= 0 && s->username && *s->username) {
                r = hf_buf_puts(out, ",\"username\":");
                if (r >= 0)
                        r = hf_json_put_string(out, s->username, strlen(s->username));
        }
        if (r >= 0 && s->uid)
                r = hf_buf_printf(out, ",\"uid\":%u", s->uid);
        if (r >= 0 && s->gid)
                r = hf_buf_printf(out, ",\"gid\":%u", s->gid);
        if (r >= 0 && s->n_excludes)
                r = put_strv(out, "excludes", s->excludes, s->n_excludes);
        if (r >= 0 && s->n_tags)
                r = put_strv(out, "tags", s->tags, s->n_tags);
        if (r >= 0 && s->has_original)
                r = put_idf(out, "original", &s->original);
        if (r >= 0 && s->program_version && *s->program_version) {
                r = hf_buf_puts(out, ",\"program_version\":");
                if (r >= 0)
                        r = hf_json_put_string(out, s->program_version, strlen(s->program_version));
        }
        if (r >= 0 && s->has_summary) {
                const HfSnapshotSummary *m = &s->summary;
                r = hf_buf_puts(out, ",\"summary\":{");
                if (r >= 0)
                        r = put_timef(out, "backup_start", &m->backup_start, true);
                if (r >= 0)
                        r = put_timef(out, "backup_end", &m->backup_end, false);
                if (r >= 0)
                        r = hf_buf_printf(
                                out,
                                ",\"files_new\":%llu,\"files_changed\":%llu,"
                                "\"files_unmodified\":%llu,\"dirs_new\":%llu,\"dirs_changed\":%llu,"
                                "\"dirs_unmodified\":%llu,\"data_blobs\":%llu,\"tree_blobs\":%llu,"
                                "\"data_added\":%llu,\"data_added_packed\":%llu,"
                                "\"total_files_processed\":%llu,\"total_bytes_processed\":%llu}",
                                (unsigned long long)m->files_new,
                                (unsigned long long)m->files_changed,
                                (unsigned long long)m->files_unmodified,
                                (unsigned long long)m->dirs_new,
                                (unsigned long long)m->dirs_changed,
                                (unsigned long long)m->dirs_unmodified,
                                (unsigned long long)m->data_blobs,
                                (unsigned long long)m->tree_blobs,
                                (unsigned long long)m->data_added,
                                (unsigned long long)m->data_added_packed,
                                (unsigned long long)m->total_files_processed,
                                (unsigned long long)m->total_bytes_processed);
        }
        if (r >= 0)
                r = hf_buf_putc(out, '}');
        return r;
}

static int snap_error(HfBuf *err, const char *msg)
{
        if (err) {
                hf_buf_reset(err);
                (void)hf_buf_puts(err, msg);
        }
        return -EPROTO;
}

static int get_strv(json_t *o, const char *key, char ***v, size_t *n)
{
        json_t *a = json_object_get(o, key);

        if (!a || json_is_null(a))
                return 0;
        if (!json_is_array(a))
                return -EPROTO;
        for (size_t i = 0; i < json_array_size(a); i++) {
                json_t *s = json_array_get(a, i);
                int r;
                if (!json_is_string(s))
                        return -EPROTO;
                r = hf_strv_push(v, n, json_string_value(s));
                if (r < 0)
                        return r;
        }
        return 0;
}

static int get_opt_id(json_t *o, const char *key, HfId *ret, bool *has)
{
        json_t *v = json_object_get(o, key);

        *has = false;
        if (!v || json_is_null(v))
                return 0;
        if (!json_is_string(v) || hf_id_parse(json_string_value(v), json_string_length(v), ret) < 0)
                return -EPROTO;
        *has = true;
        return 0;
}

static char *get_opt_str(json_t *o, const char *key)
{
        json_t *v = json_object_get(o, key);
        return v && json_is_string(v) ? strdup(json_string_value(v)) : NULL;
}

static bool get_u(json_t *o, const char *key, uint64_t *ret)
{
        json_t *v = json_object_get(o, key);

        *ret = 0;
        if (!v || json_is_null(v))
                return true;
        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return false;
        *ret = (uint64_t)json_integer_value(v);
        return true;
}

static bool get_t(json_t *o, const char *key, HfTime *ret)
{
        json_t *v = json_object_get(o, key);

        return v && json_is_string(v) &&
               hf_time_parse(json_string_value(v), json_string_length(v), ret) >= 0;
}

int hf_snapshot_parse(const void *json, size_t n, HfSnapshot *ret, HfBuf *err)
{
        HfSnapshot s = { 0 };
        json_error_t jerr;
        json_t *root, *sum;
        bool has_tree;
        uint64_t u;
        int r = -EPROTO;

        root = json_loadb(json, n, 0, &jerr);
        if (!root || !json_is_object(root)) {
                if (err) {
                        hf_buf_reset(err);
                        (void)hf_buf_printf(err, "malformed JSON at line %d column %d: %s",
                                            jerr.line, jerr.column, jerr.text);
                }
                goto out;
        }
        if (!get_t(root, "time", &s.time)) {
                r = snap_error(err, "no valid \"time\"");
                goto out;
        }
        if (get_opt_id(root, "tree", &s.tree, &has_tree) < 0 || !has_tree) {
                r = snap_error(err, "no valid \"tree\"");
                goto out;
        }
        if (get_opt_id(root, "parent", &s.parent, &s.has_parent) < 0 ||
            get_opt_id(root, "original", &s.original, &s.has_original) < 0) {
                r = snap_error(err, "invalid \"parent\" or \"original\"");
                goto out;
        }
        if (get_strv(root, "paths", &s.paths, &s.n_paths) < 0 ||
            get_strv(root, "excludes", &s.excludes, &s.n_excludes) < 0 ||
            get_strv(root, "tags", &s.tags, &s.n_tags) < 0) {
                r = snap_error(err, "invalid \"paths\", \"excludes\" or \"tags\"");
                goto out;
        }
        s.hostname = get_opt_str(root, "hostname");
        s.username = get_opt_str(root, "username");
        s.program_version = get_opt_str(root, "program_version");
        if (!get_u(root, "uid", &u) || u > UINT32_MAX) {
                r = snap_error(err, "invalid \"uid\"");
                goto out;
        }
        s.uid = (uint32_t)u;
        if (!get_u(root, "gid", &u) || u > UINT32_MAX) {
                r = snap_error(err, "invalid \"gid\"");
                goto out;
        }
        s.gid = (uint32_t)u;
        sum = json_object_get(root, "summary");
        if (sum && json_is_object(sum)) {
                HfSnapshotSummary *m = &s.summary;
                s.has_summary = true;
                (void)get_t(sum, "backup_start", &m->backup_start);
                (void)get_t(sum, "backup_end", &m->backup_end);
                (void)get_u(sum, "files_new", &m->files_new);
                (void)get_u(sum, "files_changed", &m->files_changed);
                (void)get_u(sum, "files_unmodified", &m->files_unmodified);
                (void)get_u(sum, "dirs_new", &m->dirs_new);
                (void)get_u(sum, "dirs_changed", &m->dirs_changed);
                (void)get_u(sum, "dirs_unmodified", &m->dirs_unmodified);
                (void)get_u(sum, "data_blobs", &m->data_blobs);
                (void)get_u(sum, "tree_blobs", &m->tree_blobs);
                (void)get_u(sum, "data_added", &m->data_added);
                (void)get_u(sum, "data_added_packed", &m->data_added_packed);
                (void)get_u(sum, "total_files_processed", &m->total_files_processed);
                (void)get_u(sum, "total_bytes_processed", &m->total_bytes_processed);
        }
        *ret = s;
        s = (HfSnapshot){ 0 };
        r = 0;
out:
        json_decref(root);
        hf_snapshot_done(&s);
        return r;
}

int hf_snapshot_save(HfRepo *r, HfSnapshot *s)
{
        _cleanup_buf_ HfBuf json = HF_BUF_INIT(SNAPSHOT_MAX);
        int k = hf_snapshot_format(s, &json);

        if (k < 0)
                return k;
        return hf_repo_save_file(r, HF_FILE_SNAPSHOT, json.data, json.len, &s->id);
}

int hf_snapshot_load(HfRepo *r, const HfId *id, HfSnapshot *ret)
{
        _cleanup_buf_ HfBuf json = HF_BUF_INIT(SNAPSHOT_MAX), err = HF_BUF_INIT(512);
        int k;

        k = hf_repo_load_file(r, HF_FILE_SNAPSHOT, id, &json, false);
        if (k < 0)
                return k;
        k = hf_snapshot_parse(json.data, json.len, ret, &err);
        if (k == -EPROTO) {
                char hex[HF_ID_HEX_LEN + 1];
                hf_id_hex(id, hex);
                return log_error_errno(k, "%s/snapshots/%s: malformed snapshot: %s",
                                       hf_repo_backend(r)->location, hex, (char *)err.data);
        }
        if (k < 0)
                return k;
        ret->id = *id;
        return 0;
}

static bool strv_contains(char **v, size_t n, const char *s)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(v[i], s) == 0)
                        return true;
        return false;
}

bool hf_snapshot_match(const HfSnapshot *s, const HfSnapshotFilter *f)
{
        if (!f)
                return true;
        if (f->host && *f->host && (!s->hostname || strcmp(s->hostname, f->host) != 0))
                return false;
        for (size_t i = 0; i < f->n_tags; i++)
                if (!strv_contains(s->tags, s->n_tags, f->tags[i]))
                        return false;
        if (f->n_paths) {
                if (f->n_paths != s->n_paths)
                        return false;
                for (size_t i = 0; i < f->n_paths; i++)
                        if (!strv_contains(s->paths, s->n_paths, f->paths[i]))
                                return false;
        }
        return true;
}

static int snap_cmp(const void *x, const void *y)
{
        const HfSnapshot *a = x, *b = y;
        int64_t c = hf_time_cmp(&a->time, &b->time);

        if (c)
                return c < 0 ? -1 : 1;
        return hf_id_cmp(&a->id, &b->id);
}

int hf_snapshot_load_all(HfRepo *r, HfSnapshot **ret, size_t *ret_n, unsigned *ret_errors)
{
        _cleanup_free_ HfId *ids = NULL;
        HfSnapshot *v;
        unsigned errors = 0;
        size_t n = 0, m = 0;
        int k;

        k = hf_repo_list_ids(r, HF_FILE_SNAPSHOT, &ids, &n);
        if (k < 0)
                return log_error_errno(k, "%s/snapshots: cannot list: %m",
                                       hf_repo_backend(r)->location);
        v = calloc(MAX(n, (size_t)1), sizeof(HfSnapshot));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                k = hf_snapshot_load(r, &ids[i], &v[m]);
                if (k == -ENOMEM) {
                        hf_snapshot_array_free(v, m);
                        return k;
                }
                if (k < 0) {
                        errors++;
                        continue;
                }
                m++;
        }
        qsort(v, m, sizeof(HfSnapshot), snap_cmp);
        *ret = v;
        *ret_n = m;
        if (ret_errors)
                *ret_errors = errors;
        return 0;
}

int hf_snapshot_find(HfRepo *r, const char *what, const HfSnapshotFilter *f, HfSnapshot *ret)
{
        HfId id;
        int k;

        if (strcmp(what, "latest") == 0) {
                HfSnapshot *v;
                size_t n;
                ssize_t best = -1;

                k = hf_snapshot_load_all(r, &v, &n, NULL);
                if (k < 0)
                        return k;
                for (size_t i = 0; i < n; i++)
                        if (hf_snapshot_match(&v[i], f))
                                best = (ssize_t)i;
                if (best < 0) {
                        hf_snapshot_array_free(v, n);
                        return log_error_errno(ENOENT, "no snapshot matches \"latest\"%s",
                                               f && (f->host || f->n_tags || f->n_paths)
                                                       ? " with the given filters"
                                                       : " (the vault has no snapshots)");
                }
                *ret = v[best];
                memset(&v[best], 0, sizeof(HfSnapshot));
                hf_snapshot_array_free(v, n);
                return 0;
        }
        k = hf_repo_find_id(r, HF_FILE_SNAPSHOT, what, &id);
        if (k < 0)
                return k;
        return hf_snapshot_load(r, &id, ret);
}
