/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A small, strict, allocation-free XML reader for S3 replies (fuzzed: tests/fuzz/fuzz-s3-xml.c).
 * It knows elements, attributes (skipped), character data with the five predefined entities and
 * numeric references, CDATA, comments and processing instructions. It refuses DOCTYPE (no
 * entity definitions, so no expansion attacks), mismatched tags, a second root, text outside
 * the root, and anything past the limits in s3.h.
 */
#include <string.h>

#include "../base/util.h"
#include "s3.h"

typedef struct Walker {
        const char *p, *end;
        char path[HF_S3_XML_DEPTH * (HF_S3_XML_NAME_MAX + 1) + 1];
        size_t path_len;
        size_t level_start[HF_S3_XML_DEPTH]; /* where each level's name starts in path */
        bool had_child[HF_S3_XML_DEPTH];
        unsigned depth;
        bool root_done; /* the root element was closed: nothing but space may follow */
        char text[HF_S3_XML_TEXT_MAX + 1];
        size_t text_len;
        bool text_overflow;
        HfS3XmlFn fn;
        void *userdata;
} Walker;

static bool name_char(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-' || c == '.' || c == ':';
}

static bool space(char c)
{
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool starts(const Walker *w, const char *s)
{
        size_t n = strlen(s);
        return (size_t)(w->end - w->p) >= n && memcmp(w->p, s, n) == 0;
}

/* Moves past the next occurrence of s; -EPROTO when there is none. */
static int skip_past(Walker *w, const char *s)
{
        size_t n = strlen(s);
        const char *q = memmem(w->p, (size_t)(w->end - w->p), s, n);

        if (!q)
                return -EPROTO;
        w->p = q + n;
        return 0;
}

static int text_add(Walker *w, const char *s, size_t n)
{
        if (w->depth == 0) {
                /* Outside the root only white space is allowed. */
                for (size_t i = 0; i < n; i++)
                        if (!space(s[i]))
                                return -EPROTO;
                return 0;
        }
        if (w->text_len + n > HF_S3_XML_TEXT_MAX) {
                /* Text around child elements (indentation) may be long; a leaf's may not. */
                w->text_overflow = true;
                return 0;
        }
        memcpy(w->text + w->text_len, s, n);
        w->text_len += n;
        return 0;
}

static int utf8_put(Walker *w, uint32_t cp)
{
        char b[4];
        size_t n;

        if (cp == 0 || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
                return -EPROTO;
        if (cp < 0x80) {
                b[0] = (char)cp;
                n = 1;
        } else if (cp < 0x800) {
                b[0] = (char)(0xc0 | (cp >> 6));
                b[1] = (char)(0x80 | (cp & 0x3f));
                n = 2;
        } else if (cp < 0x10000) {
                b[0] = (char)(0xe0 | (cp >> 12));
                b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
                b[2] = (char)(0x80 | (cp & 0x3f));
                n = 3;
        } else {
                b[0] = (char)(0xf0 | (cp >> 18));
                b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
                b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
                b[3] = (char)(0x80 | (cp & 0x3f));
                n = 4;
        }
        return text_add(w, b, n);
}

/* At '&': one entity or character reference. */
static int entity(Walker *w)
{
        static const struct {
                const char *name;
                char c;
        } named[] = {
                { "lt;", '<' }, { "gt;", '>' }, { "amp;", '&' }, { "quot;", '"' }, { "apos;", '\'' }
        };
        const char *q = w->p + 1;
        uint32_t cp = 0;
        unsigned digits = 0;

        for (size_t i = 0; i < ELEMENTSOF(named); i++) {
                size_t n = strlen(named[i].name);
                if ((size_t)(w->end - q) >= n && memcmp(q, named[i].name, n) == 0) {
                        w->p = q + n;
                        return text_add(w, &named[i].c, 1);
                }
        }
        if (q >= w->end || *q != '#')
                return -EPROTO;
        q++;
        if (q < w->end && *q == 'x') {
                for (q++; q < w->end && *q != ';'; q++, digits++) {
                        int v = *q >= '0' && *q <= '9'   ? *q - '0'
                                : *q >= 'a' && *q <= 'f' ? *q - 'a' + 10
                                : *q >= 'A' && *q <= 'F' ? *q - 'A' + 10
                                                         : -1;
                        if (v < 0 || digits >= 6)
                                return -EPROTO;
                        cp = cp * 16 + (uint32_t)v;
                }
        } else {
                for (; q < w->end && *q != ';'; q++, digits++) {
                        if (*q < '0' || *q > '9' || digits >= 7)
                                return -EPROTO;
                        cp = cp * 10 + (uint32_t)(*q - '0');
                }
        }
        if (q >= w->end || digits == 0)
                return -EPROTO;
        w->p = q + 1;
        return utf8_put(w, cp);
}

/* Leaves the current element. */
static void pop(Walker *w)
{
        w->depth--;
        w->path_len = w->depth ? w->level_start[w->depth] - 1 : 0;
        w->path[w->path_len] = 0;
        if (w->depth == 0)
                w->root_done = true;
        w->text_len = 0;
        w->text_overflow = false;
}

static int start_tag(Walker *w)
{
        const char *name = ++w->p, *local;
        size_t n;
        bool empty = false;
        int r;

        while (w->p < w->end && name_char(*w->p))
                w->p++;
        n = (size_t)(w->p - name);
        if (n == 0)
                return -EPROTO;
        local = memrchr(name, ':', n);
        local = local ? local + 1 : name;
        n -= (size_t)(local - name);
        if (n == 0 || n > HF_S3_XML_NAME_MAX)
                return -EPROTO;
        /* Attributes: name="value" or name='value', skipped. */
        for (;;) {
                while (w->p < w->end && space(*w->p))
                        w->p++;
                if (w->p >= w->end)
                        return -EPROTO;
                if (*w->p == '>') {
                        w->p++;
                        break;
                }
                if (*w->p == '/') {
                        if (w->p + 1 >= w->end || w->p[1] != '>')
                                return -EPROTO;
                        w->p += 2;
                        empty = true;
                        break;
                }
                if (!name_char(*w->p))
                        return -EPROTO;
                while (w->p < w->end && name_char(*w->p))
                        w->p++;
                while (w->p < w->end && space(*w->p))
                        w->p++;
                if (w->p >= w->end || *w->p != '=')
                        return -EPROTO;
                w->p++;
                while (w->p < w->end && space(*w->p))
                        w->p++;
                if (w->p >= w->end || (*w->p != '"' && *w->p != '\''))
                        return -EPROTO;
                {
                        char quote = *w->p++;
                        const char *e = memchr(w->p, quote, (size_t)(w->end - w->p));
                        if (!e || memchr(w->p, '<', (size_t)(e - w->p)))
                                return -EPROTO;
                        w->p = e + 1;
                }
        }
        if (w->depth == 0 && w->root_done)
                return -EPROTO; /* a second root */
        if (w->depth == HF_S3_XML_DEPTH)
                return -EPROTO;
        if (w->depth > 0)
                w->had_child[w->depth - 1] = true;
        w->level_start[w->depth] = w->path_len + (w->depth ? 1 : 0);
        if (w->depth)
                w->path[w->path_len++] = '/';
        memcpy(w->path + w->path_len, local, n);
        w->path_len += n;
        w->path[w->path_len] = 0;
        w->had_child[w->depth] = false;
        w->depth++;
        w->text_len = 0;
        w->text_overflow = false;
        if (!empty)
                return 0;
        /* <a/>: an element without text. */
        w->text[0] = 0;
        r = w->fn(w->userdata, w->path, w->text, 0);
        if (r < 0)
                return r;
        pop(w);
        return 0;
}

static int end_tag(Walker *w)
{
        const char *name = w->p + 2, *local;
        size_t n, have;
        const char *q = name;
        int r;

        while (q < w->end && name_char(*q))
                q++;
        n = (size_t)(q - name);
        while (q < w->end && space(*q))
                q++;
        if (q >= w->end || *q != '>' || n == 0 || w->depth == 0)
                return -EPROTO;
        w->p = q + 1;
        local = memrchr(name, ':', n);
        local = local ? local + 1 : name;
        n -= (size_t)(local - name);
        have = w->path_len - w->level_start[w->depth - 1];
        if (n != have || memcmp(local, w->path + w->level_start[w->depth - 1], n) != 0)
                return -EPROTO;
        if (w->had_child[w->depth - 1]) {
                w->text_len = 0;
        } else if (w->text_overflow)
                return -EPROTO;
        w->text[w->text_len] = 0;
        r = w->fn(w->userdata, w->path, w->text, w->text_len);
        if (r < 0)
                return r;
        pop(w);
        return 0;
}

int hf_s3_xml_walk(const void *xml, size_t n, HfS3XmlFn fn, void *userdata)
{
        Walker *w;
        int r = 0;

        if (n > HF_S3_XML_MAX)
                return -EPROTO;
        w = malloc(sizeof(*w));
        if (!w)
                return -ENOMEM;
        memset(w, 0, offsetof(Walker, text));
        w->p = xml;
        w->end = w->p + n;
        w->fn = fn;
        w->userdata = userdata;
        if (n >= 3 && memcmp(w->p, "\xef\xbb\xbf", 3) == 0)
                w->p += 3;
        while (w->p < w->end && r >= 0) {
                const char *lt;

                if (*w->p == '<') {
                        if (starts(w, "<?"))
                                r = skip_past(w, "?>");
                        else if (starts(w, "<!--"))
                                r = skip_past(w, "-->");
                        else if (starts(w, "<![CDATA[")) {
                                const char *s = w->p + 9;
                                if (w->depth == 0) {
                                        r = -EPROTO;
                                        break;
                                }
                                w->p = s;
                                r = skip_past(w, "]]>");
                                if (r >= 0)
                                        r = text_add(w, s, (size_t)(w->p - 3 - s));
                        } else if (starts(w, "<!"))
                                r = -EPROTO; /* DOCTYPE and friends */
                        else if (starts(w, "</"))
                                r = end_tag(w);
                        else
                                r = start_tag(w);
                        continue;
                }
                if (*w->p == '&') {
                        r = w->depth ? entity(w) : -EPROTO;
                        continue;
                }
                /* Character data up to the next markup. */
                lt = w->p;
                while (lt < w->end && *lt != '<' && *lt != '&' && *lt != 0)
                        lt++;
                if (lt < w->end && *lt == 0) {
                        r = -EPROTO;
                        break;
                }
                r = text_add(w, w->p, (size_t)(lt - w->p));
                w->p = lt;
        }
        if (r >= 0 && (w->depth != 0 || !w->root_done))
                r = -EPROTO; /* unclosed elements, or no root at all */
        free(w);
        return r;
}

/* ---- replies ---- */

static void copy_cut(char *dst, size_t cap, const char *s, size_t n)
{
        n = MIN(n, cap - 1);
        memcpy(dst, s, n);
        dst[n] = 0;
}

typedef struct ErrorCtx {
        char *code, *message;
        bool is_error;
} ErrorCtx;

static int on_error(void *userdata, const char *path, const char *text, size_t n)
{
        ErrorCtx *e = userdata;

        if (strcmp(path, "Error") == 0)
                e->is_error = true;
        else if (strcmp(path, "Error/Code") == 0)
                copy_cut(e->code, 64, text, n);
        else if (strcmp(path, "Error/Message") == 0)
                copy_cut(e->message, 256, text, n);
        return 0;
}

int hf_s3_parse_error(const void *xml, size_t n, char code[64], char message[256])
{
        ErrorCtx e = { .code = code, .message = message };
        int r;

        code[0] = message[0] = 0;
        r = hf_s3_xml_walk(xml, n, on_error, &e);
        if (r < 0)
                return r;
        return e.is_error ? 0 : -ENOENT;
}

static int parse_u64(const char *s, size_t n, uint64_t *ret)
{
        uint64_t v = 0;

        if (n == 0 || n > 20)
                return -EPROTO;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EPROTO;
                if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
                        return -EPROTO;
                v = v * 10 + (uint64_t)(s[i] - '0');
        }
        *ret = v;
        return 0;
}

static int parse_bool(const char *s, size_t n, bool *ret)
{
        if (n == 4 && memcmp(s, "true", 4) == 0)
                *ret = true;
        else if (n == 5 && memcmp(s, "false", 5) == 0)
                *ret = false;
        else
                return -EPROTO;
        return 0;
}

typedef struct ListCtx {
        HfS3ObjectFn fn;
        void *userdata;
        char key[HF_S3_KEY_MAX + 1];
        size_t key_len;
        bool has_key, has_size;
        HfS3Object obj;
        bool *truncated;
        char *token;
} ListCtx;

static int on_list(void *userdata, const char *path, const char *text, size_t n)
{
        ListCtx *l = userdata;
        const char *sub;

        if (strncmp(path, "ListBucketResult/", 17) != 0)
                return strcmp(path, "ListBucketResult") == 0 ? 0 : -EPROTO;
        sub = path + 17;
        if (strcmp(sub, "Contents/Key") == 0) {
                if (n == 0 || n > HF_S3_KEY_MAX || memchr(text, 0, n))
                        return -EPROTO;
                memcpy(l->key, text, n);
                l->key[n] = 0;
                l->key_len = n;
                l->has_key = true;
        } else if (strcmp(sub, "Contents/Size") == 0) {
                if (parse_u64(text, n, &l->obj.size) < 0)
                        return -EPROTO;
                l->has_size = true;
        } else if (strcmp(sub, "Contents/LastModified") == 0) {
                if (hf_s3_parse_iso_date(text, n, &l->obj.mtime) < 0)
                        return -EPROTO;
        } else if (strcmp(sub, "Contents") == 0) {
                int r;
                if (!l->has_key || !l->has_size)
                        return -EPROTO;
                l->obj.key = l->key;
                l->obj.key_len = l->key_len;
                r = l->fn(l->userdata, &l->obj);
                l->has_key = l->has_size = false;
                l->obj = (HfS3Object){ 0 };
                if (r < 0)
                        return r;
        } else if (strcmp(sub, "IsTruncated") == 0) {
                if (parse_bool(text, n, l->truncated) < 0)
                        return -EPROTO;
        } else if (strcmp(sub, "NextContinuationToken") == 0) {
                if (n > HF_S3_TOKEN_MAX || memchr(text, 0, n))
                        return -EPROTO;
                memcpy(l->token, text, n);
                l->token[n] = 0;
        }
        return 0;
}

int hf_s3_parse_list(const void *xml, size_t n, HfS3ObjectFn fn, void *userdata,
                     bool *ret_truncated, char token[HF_S3_TOKEN_MAX + 1])
{
        ListCtx *l = calloc(1, sizeof(*l));
        bool truncated = false;
        int r;

        if (!l)
                return -ENOMEM;
        token[0] = 0;
        l->fn = fn;
        l->userdata = userdata;
        l->truncated = &truncated;
        l->token = token;
        r = hf_s3_xml_walk(xml, n, on_list, l);
        free(l);
        if (r < 0) {
                token[0] = 0;
                return r;
        }
        if (truncated && !token[0])
                return -EPROTO; /* a truncated page must say where the next one starts */
        *ret_truncated = truncated;
        return 0;
}

typedef struct VersionsCtx {
        HfS3VersionFn fn;
        void *userdata;
        char key[HF_S3_KEY_MAX + 1];
        size_t key_len;
        char vid[HF_S3_TOKEN_MAX + 1];
        bool has_key, has_vid, latest;
        bool *truncated;
        char *key_marker, *version_marker;
} VersionsCtx;

static int token_copy(char *dst, const char *text, size_t n)
{
        if (n > HF_S3_TOKEN_MAX || memchr(text, 0, n))
                return -EPROTO;
        memcpy(dst, text, n);
        dst[n] = 0;
        return 0;
}

static int on_versions(void *userdata, const char *path, const char *text, size_t n)
{
        VersionsCtx *v = userdata;
        const char *sub, *leaf;
        bool marker;

        if (strncmp(path, "ListVersionsResult/", 19) != 0)
                return strcmp(path, "ListVersionsResult") == 0 ? 0 : -EPROTO;
        sub = path + 19;
        if (strcmp(sub, "IsTruncated") == 0)
                return parse_bool(text, n, v->truncated);
        if (strcmp(sub, "NextKeyMarker") == 0)
                return token_copy(v->key_marker, text, n);
        if (strcmp(sub, "NextVersionIdMarker") == 0)
                return token_copy(v->version_marker, text, n);
        marker = strncmp(sub, "DeleteMarker", 12) == 0;
        if (!marker && strncmp(sub, "Version", 7) != 0)
                return 0;
        leaf = sub + (marker ? 12 : 7);
        if (*leaf == 0) {
                HfS3Version ver = { .key = v->key,
                                    .key_len = v->key_len,
                                    .version_id = v->vid,
                                    .delete_marker = marker,
                                    .latest = v->latest };
                int r;
                if (!v->has_key || !v->has_vid)
                        return -EPROTO;
                r = v->fn(v->userdata, &ver);
                v->has_key = v->has_vid = v->latest = false;
                return r;
        }
        if (strcmp(leaf, "/Key") == 0) {
                if (n == 0 || n > HF_S3_KEY_MAX || memchr(text, 0, n))
                        return -EPROTO;
                memcpy(v->key, text, n);
                v->key[n] = 0;
                v->key_len = n;
                v->has_key = true;
        } else if (strcmp(leaf, "/VersionId") == 0) {
                if (n == 0 || token_copy(v->vid, text, n) < 0)
                        return -EPROTO;
                v->has_vid = true;
        } else if (strcmp(leaf, "/IsLatest") == 0)
                return parse_bool(text, n, &v->latest);
        return 0;
}

int hf_s3_parse_versions(const void *xml, size_t n, HfS3VersionFn fn, void *userdata,
                         bool *ret_truncated, char key_marker[HF_S3_TOKEN_MAX + 1],
                         char version_marker[HF_S3_TOKEN_MAX + 1])
{
        VersionsCtx *v = calloc(1, sizeof(*v));
        bool truncated = false;
        int r;

        if (!v)
                return -ENOMEM;
        key_marker[0] = version_marker[0] = 0;
        v->fn = fn;
        v->userdata = userdata;
        v->truncated = &truncated;
        v->key_marker = key_marker;
        v->version_marker = version_marker;
        r = hf_s3_xml_walk(xml, n, on_versions, v);
        free(v);
        if (r >= 0 && truncated && !key_marker[0])
                r = -EPROTO;
        if (r < 0) {
                key_marker[0] = version_marker[0] = 0;
                return r;
        }
        *ret_truncated = truncated;
        return 0;
}

typedef struct LockCtx {
        HfS3LockConfig c;
        uint64_t days, years;
        bool has_days, has_years, has_rule, is_root;
} LockCtx;

static int on_lock(void *userdata, const char *path, const char *text, size_t n)
{
        LockCtx *l = userdata;
        static const char root[] = "ObjectLockConfiguration";
        const char *sub;

        if (strcmp(path, root) == 0) {
                l->is_root = true;
                return 0;
        }
        if (strncmp(path, root, sizeof(root) - 1) != 0 || path[sizeof(root) - 1] != '/')
                return -EPROTO;
        sub = path + sizeof(root);
        if (strcmp(sub, "ObjectLockEnabled") == 0) {
                if (n == 7 && memcmp(text, "Enabled", 7) == 0)
                        l->c.enabled = true;
                else
                        return -EPROTO;
        } else if (strcmp(sub, "Rule/DefaultRetention/Mode") == 0) {
                if (n == 10 && memcmp(text, "GOVERNANCE", 10) == 0)
                        l->c.mode = HF_S3_LOCK_GOVERNANCE;
                else if (n == 10 && memcmp(text, "COMPLIANCE", 10) == 0)
                        l->c.mode = HF_S3_LOCK_COMPLIANCE;
                else
                        return -EPROTO;
        } else if (strcmp(sub, "Rule/DefaultRetention/Days") == 0) {
                if (parse_u64(text, n, &l->days) < 0 || l->days == 0 || l->days > 36500)
                        return -EPROTO;
                l->has_days = true;
        } else if (strcmp(sub, "Rule/DefaultRetention/Years") == 0) {
                if (parse_u64(text, n, &l->years) < 0 || l->years == 0 || l->years > 100)
                        return -EPROTO;
                l->has_years = true;
        } else if (strcmp(sub, "Rule") == 0)
                l->has_rule = true;
        return 0;
}

int hf_s3_parse_lock_config(const void *xml, size_t n, HfS3LockConfig *ret)
{
        LockCtx l = { 0 };
        int r = hf_s3_xml_walk(xml, n, on_lock, &l);

        if (r < 0)
                return r;
        if (!l.is_root)
                return -EPROTO;
        if (l.has_rule || l.c.mode != HF_S3_LOCK_NONE) {
                /* A rule has a mode and exactly one of Days or Years. */
                if (l.c.mode == HF_S3_LOCK_NONE || l.has_days == l.has_years)
                        return -EPROTO;
                l.c.days = l.has_days ? (uint32_t)l.days : (uint32_t)(l.years * 365);
        }
        *ret = l.c;
        return 0;
}

typedef struct UploadCtx {
        char *id;
        bool found;
} UploadCtx;

static int on_upload(void *userdata, const char *path, const char *text, size_t n)
{
        UploadCtx *u = userdata;

        if (strcmp(path, "InitiateMultipartUploadResult/UploadId") != 0)
                return 0;
        if (n == 0 || token_copy(u->id, text, n) < 0)
                return -EPROTO;
        u->found = true;
        return 0;
}

int hf_s3_parse_upload_id(const void *xml, size_t n, char id[HF_S3_TOKEN_MAX + 1])
{
        UploadCtx u = { .id = id };
        int r;

        id[0] = 0;
        r = hf_s3_xml_walk(xml, n, on_upload, &u);
        if (r >= 0 && !u.found)
                r = -EPROTO;
        if (r < 0)
                id[0] = 0;
        return r;
}
