/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tree.h"

#include <jansson.h>
#include <string.h>
#include <sys/stat.h>

#include "../base/log.h"

static const char *const node_type_names[_HF_NODE_TYPE_MAX] = {
        [HF_NODE_FILE] = "file",       [HF_NODE_DIR] = "dir",
        [HF_NODE_SYMLINK] = "symlink", [HF_NODE_DEV] = "dev",
        [HF_NODE_CHARDEV] = "chardev", [HF_NODE_FIFO] = "fifo",
        [HF_NODE_SOCKET] = "socket",   [HF_NODE_IRREGULAR] = "irregular",
};

const char *hf_node_type_name(HfNodeType t)
{
        return t < _HF_NODE_TYPE_MAX ? node_type_names[t] : "?";
}

int hf_node_type_from_name(const char *s, HfNodeType *ret)
{
        for (int i = 0; i < _HF_NODE_TYPE_MAX; i++)
                if (strcmp(s, node_type_names[i]) == 0) {
                        *ret = (HfNodeType)i;
                        return 0;
                }
        return -EINVAL;
}

uint32_t hf_mode_to_go(uint32_t m)
{
        uint32_t g = m & 0777;

        switch (m & S_IFMT) {
        case S_IFDIR:
                g |= HF_GOMODE_DIR;
                break;
        case S_IFLNK:
                g |= HF_GOMODE_SYMLINK;
                break;
        case S_IFBLK:
                g |= HF_GOMODE_DEVICE;
                break;
        case S_IFCHR:
                g |= HF_GOMODE_DEVICE | HF_GOMODE_CHARDEVICE;
                break;
        case S_IFIFO:
                g |= HF_GOMODE_NAMEDPIPE;
                break;
        case S_IFSOCK:
                g |= HF_GOMODE_SOCKET;
                break;
        default:
                break;
        }
        if (m & S_ISUID)
                g |= HF_GOMODE_SETUID;
        if (m & S_ISGID)
                g |= HF_GOMODE_SETGID;
        if (m & S_ISVTX)
                g |= HF_GOMODE_STICKY;
        return g;
}

uint32_t hf_mode_from_go(uint32_t g)
{
        uint32_t m = g & 0777;

        if (g & HF_GOMODE_SETUID)
                m |= S_ISUID;
        if (g & HF_GOMODE_SETGID)
                m |= S_ISGID;
        if (g & HF_GOMODE_STICKY)
                m |= S_ISVTX;
        return m;
}

void hf_mode_string(uint32_t g, HfNodeType t, char out[HF_MODE_STRING_MAX])
{
        /* Go's FileMode.String(), which restic prints: one letter per set type or special
         * bit from bit 31 down, '-' when none, then rwxrwxrwx. */
        static const char letters[] = "dalTLDpSugct?";
        static const char rwx[] = "rwxrwxrwx";
        size_t w = 0;

        (void)t;
        for (size_t i = 0; i < sizeof(letters) - 1; i++)
                if (g & (1u << (31 - i)))
                        out[w++] = letters[i];
        if (w == 0)
                out[w++] = '-';
        for (size_t i = 0; i < 9; i++)
                out[w++] = (g & (1u << (8 - i))) ? rwx[i] : '-';
        out[w] = 0;
}

void hf_node_done(HfNode *n)
{
        free(n->name);
        free(n->user);
        free(n->group);
        free(n->linktarget);
        for (size_t i = 0; i < n->n_xattrs; i++) {
                free(n->xattrs[i].name);
                free(n->xattrs[i].value);
        }
        free(n->xattrs);
        free(n->content);
        free(n->error);
        memset(n, 0, sizeof(*n));
}

static char *memdup0(const void *p, size_t n)
{
        char *s = malloc(n + 1);

        if (!s)
                return NULL;
        if (n)
                memcpy(s, p, n);
        s[n] = 0;
        return s;
}

int hf_node_copy(const HfNode *src, HfNode *dst)
{
        HfNode n = *src;

        n.name = NULL;
        n.user = n.group = n.linktarget = n.error = NULL;
        n.xattrs = NULL;
        n.n_xattrs = 0;
        n.content = NULL;
        if (!(n.name = memdup0(src->name, src->name_len)))
                goto oom;
        if (src->user && !(n.user = strdup(src->user)))
                goto oom;
        if (src->group && !(n.group = strdup(src->group)))
                goto oom;
        if (src->linktarget && !(n.linktarget = memdup0(src->linktarget, src->linktarget_len)))
                goto oom;
        if (src->error && !(n.error = strdup(src->error)))
                goto oom;
        for (size_t i = 0; i < src->n_xattrs; i++)
                if (hf_node_add_xattr(&n, src->xattrs[i].name, src->xattrs[i].value,
                                      src->xattrs[i].len) < 0)
                        goto oom;
        if (src->n_content) {
                n.content = malloc(src->n_content * sizeof(HfId));
                if (!n.content)
                        goto oom;
                memcpy(n.content, src->content, src->n_content * sizeof(HfId));
        }
        *dst = n;
        return 0;
oom:
        hf_node_done(&n);
        return -ENOMEM;
}

int hf_node_set_name(HfNode *n, const char *name, size_t len)
{
        char *s = memdup0(name, len);

        if (!s)
                return -ENOMEM;
        free(n->name);
        n->name = s;
        n->name_len = len;
        return 0;
}

int hf_node_add_xattr(HfNode *n, const char *name, const void *value, size_t len)
{
        HfXattr *nx = realloc(n->xattrs, (n->n_xattrs + 1) * sizeof(HfXattr));
        HfXattr x;

        if (!nx)
                return -ENOMEM;
        n->xattrs = nx;
        x.name = strdup(name);
        x.value = (uint8_t *)memdup0(value, len);
        x.len = len;
        if (!x.name || !x.value) {
                free(x.name);
                free(x.value);
                return -ENOMEM;
        }
        n->xattrs[n->n_xattrs++] = x;
        return 0;
}

void hf_tree_done(HfTree *t)
{
        for (size_t i = 0; i < t->n; i++)
                hf_node_done(&t->nodes[i]);
        free(t->nodes);
        memset(t, 0, sizeof(*t));
}

int hf_tree_add(HfTree *t, HfNode **ret)
{
        if (t->n == t->cap) {
                size_t ncap = t->cap ? t->cap * 2 : 16;
                HfNode *nn = realloc(t->nodes, ncap * sizeof(HfNode));
                if (!nn)
                        return -ENOMEM;
                t->nodes = nn;
                t->cap = ncap;
        }
        memset(&t->nodes[t->n], 0, sizeof(HfNode));
        *ret = &t->nodes[t->n++];
        return 0;
}

static int name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
        int c = memcmp(a, b, MIN(alen, blen));

        if (c)
                return c;
        return alen < blen ? -1 : alen > blen ? 1 : 0;
}

static int node_cmp(const void *x, const void *y)
{
        const HfNode *a = x, *b = y;
        return name_cmp(a->name, a->name_len, b->name, b->name_len);
}

int hf_tree_sort(HfTree *t)
{
        if (t->n > 1)
                qsort(t->nodes, t->n, sizeof(HfNode), node_cmp);
        for (size_t i = 1; i < t->n; i++)
                if (node_cmp(&t->nodes[i - 1], &t->nodes[i]) == 0)
                        return -EEXIST;
        return 0;
}

const HfNode *hf_tree_find(const HfTree *t, const char *name, size_t len)
{
        size_t lo = 0, hi = t->n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = name_cmp(t->nodes[mid].name, t->nodes[mid].name_len, name, len);
                if (c == 0)
                        return &t->nodes[mid];
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

static int put_time(HfBuf *out, const char *key, const HfTime *t)
{
        int r = hf_buf_printf(out, ",\"%s\":\"", key);
        if (r >= 0)
                r = hf_time_format(out, t);
        if (r >= 0)
                r = hf_buf_putc(out, '"');
        return r;
}

static int put_id(HfBuf *out, const HfId *id)
{
        char hex[HF_ID_HEX_LEN + 3];

        hex[0] = '"';
        hf_id_hex(id, hex + 1);
        hex[HF_ID_HEX_LEN + 1] = '"';
        hex[HF_ID_HEX_LEN + 2] = 0;
        return hf_buf_append(out, hex, HF_ID_HEX_LEN + 2);
}

int hf_node_format(const HfNode *n, HfBuf *out)
{
        _cleanup_buf_ HfBuf q = HF_BUF_INIT(SIZE_MAX / 2);
        int r;

        /* Go quotes the raw name (strconv.Quote), then JSON-encodes the quoted text. */
        r = hf_go_quote(&q, n->name, n->name_len);
        if (r >= 0)
                r = hf_buf_puts(out, "{\"name\":");
        if (r >= 0)
                r = hf_json_put_string(out, (const char *)q.data, q.len);
        if (r >= 0)
                r = hf_buf_printf(out, ",\"type\":\"%s\"", hf_node_type_name(n->type));
        if (r >= 0 && n->mode)
                r = hf_buf_printf(out, ",\"mode\":%u", n->mode);
        if (r >= 0)
                r = put_time(out, "mtime", &n->mtime);
        if (r >= 0)
                r = put_time(out, "atime", &n->atime);
        if (r >= 0)
                r = put_time(out, "ctime", &n->ctime);
        if (r >= 0)
                r = hf_buf_printf(out, ",\"uid\":%u,\"gid\":%u", n->uid, n->gid);
        if (r >= 0 && n->user && *n->user) {
                r = hf_buf_puts(out, ",\"user\":");
                if (r >= 0)
                        r = hf_json_put_string(out, n->user, strlen(n->user));
        }
        if (r >= 0 && n->group && *n->group) {
                r = hf_buf_puts(out, ",\"group\":");
                if (r >= 0)
                        r = hf_json_put_string(out, n->group, strlen(n->group));
        }
        if (r >= 0 && n->inode)
                r = hf_buf_printf(out, ",\"inode\":%llu", (unsigned long long)n->inode);
        if (r >= 0 && n->device_id)
                r = hf_buf_printf(out, ",\"device_id\":%llu", (unsigned long long)n->device_id);
        if (r >= 0 && n->size)
                r = hf_buf_printf(out, ",\"size\":%llu", (unsigned long long)n->size);
        if (r >= 0 && n->links)
                r = hf_buf_printf(out, ",\"links\":%llu", (unsigned long long)n->links);
        if (r >= 0 && n->linktarget && n->linktarget_len) {
                r = hf_buf_puts(out, ",\"linktarget\":");
                if (r >= 0)
                        r = hf_json_put_string(out, n->linktarget, n->linktarget_len);
                /* Non-UTF-8 targets would be lost as U+FFFD; newer restic adds the raw bytes. */
                if (r >= 0 && !hf_utf8_valid(n->linktarget, n->linktarget_len)) {
                        r = hf_buf_puts(out, ",\"linktarget_raw\":\"");
                        if (r >= 0)
                                r = hf_base64_encode(out, n->linktarget, n->linktarget_len);
                        if (r >= 0)
                                r = hf_buf_putc(out, '"');
                }
        }
        if (r >= 0 && n->n_xattrs) {
                r = hf_buf_puts(out, ",\"extended_attributes\":[");
                for (size_t i = 0; r >= 0 && i < n->n_xattrs; i++) {
                        r = hf_buf_puts(out, i ? ",{\"name\":" : "{\"name\":");
                        if (r >= 0)
                                r = hf_json_put_string(out, n->xattrs[i].name,
                                                       strlen(n->xattrs[i].name));
                        if (r >= 0)
                                r = hf_buf_puts(out, ",\"value\":\"");
                        if (r >= 0)
                                r = hf_base64_encode(out, n->xattrs[i].value, n->xattrs[i].len);
                        if (r >= 0)
                                r = hf_buf_puts(out, "\"}");
                }
                if (r >= 0)
                        r = hf_buf_putc(out, ']');
        }
        if (r >= 0 && n->device)
                r = hf_buf_printf(out, ",\"device\":%llu", (unsigned long long)n->device);
        if (r >= 0) {
                if (n->type == HF_NODE_FILE) {
                        r = hf_buf_puts(out, ",\"content\":[");
                        for (size_t i = 0; r >= 0 && i < n->n_content; i++) {
                                if (i)
                                        r = hf_buf_putc(out, ',');
                                if (r >= 0)
                                        r = put_id(out, &n->content[i]);
                        }
                        if (r >= 0)
                                r = hf_buf_putc(out, ']');
                } else
                        r = hf_buf_puts(out, ",\"content\":null");
        }
        if (r >= 0 && n->has_subtree) {
                r = hf_buf_puts(out, ",\"subtree\":");
                if (r >= 0)
                        r = put_id(out, &n->subtree);
        }
        if (r >= 0 && n->error && *n->error) {
                r = hf_buf_puts(out, ",\"error\":");
                if (r >= 0)
                        r = hf_json_put_string(out, n->error, strlen(n->error));
        }
        if (r >= 0)
                r = hf_buf_putc(out, '}');
        return r;
}

int hf_tree_format(const HfTree *t, HfBuf *out)
{
        int r = hf_buf_puts(out, "{\"nodes\":[");

        for (size_t i = 0; r >= 0 && i < t->n; i++) {
                if (i)
                        r = hf_buf_putc(out, ',');
                if (r >= 0)
                        r = hf_node_format(&t->nodes[i], out);
        }
        if (r >= 0)
                r = hf_buf_puts(out, "]}\n");
        return r;
}

static int tree_error(HfBuf *err, size_t i, const char *msg)
{
        if (err) {
                hf_buf_reset(err);
                (void)hf_buf_printf(err, "node %zu: %s", i, msg);
        }
        return -EPROTO;
}

static bool get_u64(json_t *o, const char *key, uint64_t *ret)
{
        json_t *v = json_object_get(o, key);

        if (!v || json_is_null(v)) {
                *ret = 0;
                return true;
        }
        /* Quoted by quote_big_integers(): a uint64 above INT64_MAX. */
        if (json_is_string(v))
                return hf_parse_u64(json_string_value(v), ret) >= 0;
        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return false;
        *ret = (uint64_t)json_integer_value(v);
        return true;
}

static bool is_digit(char c)
{
        return c >= '0' && c <= '9';
}

/*
 * jansson refuses integers above INT64_MAX, but restic writes inode, size, device and links
 * as uint64 (FUSE and NFS inodes can be that large). Such numbers are copied into out as
 * quoted strings, which get_u64() accepts. Returns 1 when anything was quoted, 0 when the
 * input needs no change (out untouched).
 */
static int quote_big_integers(const char *s, size_t n, HfBuf *out)
{
        static const char max[] = "9223372036854775807";
        size_t copied = 0;
        bool in_str = false, changed = false;
        int r;

        for (size_t i = 0; i < n; i++) {
                size_t j;

                if (in_str) {
                        if (s[i] == '\\')
                                i++;
                        else if (s[i] == '"')
                                in_str = false;
                        continue;
                }
                if (s[i] == '"') {
                        in_str = true;
                        continue;
                }
                if (!is_digit(s[i]) ||
                    (i > 0 && (is_digit(s[i - 1]) || s[i - 1] == '.' || s[i - 1] == '-' ||
                               s[i - 1] == '+' || s[i - 1] == 'e' || s[i - 1] == 'E')))
                        continue;
                for (j = i; j < n && is_digit(s[j]); j++)
                        ;
                if (j < n && (s[j] == '.' || s[j] == 'e' || s[j] == 'E'))
                        continue;
                if (j - i < sizeof(max) - 1 ||
                    (j - i == sizeof(max) - 1 && memcmp(s + i, max, j - i) <= 0)) {
                        i = j - 1;
                        continue;
                }
                r = hf_buf_append(out, s + copied, i - copied);
                if (r >= 0)
                        r = hf_buf_putc(out, '"');
                if (r >= 0)
                        r = hf_buf_append(out, s + i, j - i);
                if (r >= 0)
                        r = hf_buf_putc(out, '"');
                if (r < 0)
                        return r;
                copied = j;
                changed = true;
                i = j - 1;
        }
        if (!changed)
                return 0;
        r = hf_buf_append(out, s + copied, n - copied);
        return r < 0 ? r : 1;
}

static bool get_time(json_t *o, const char *key, HfTime *ret)
{
        json_t *v = json_object_get(o, key);

        if (!v || json_is_null(v)) {
                *ret = (HfTime){ .sec = -62135596800LL }; /* Go's zero time, year 1 */
                return true;
        }
        return json_is_string(v) &&
               hf_time_parse(json_string_value(v), json_string_length(v), ret) >= 0;
}

static int dup_string(json_t *o, const char *key, char **ret)
{
        json_t *v = json_object_get(o, key);

        *ret = NULL;
        if (!v || json_is_null(v) || !json_is_string(v) || json_string_length(v) == 0)
                return 0;
        *ret = memdup0(json_string_value(v), json_string_length(v));
        return *ret ? 0 : -ENOMEM;
}

static int parse_node(json_t *o, HfNode *n, size_t i, HfBuf *err)
{
        _cleanup_buf_ HfBuf tmp = HF_BUF_INIT(1u << 20);
        json_t *v;
        uint64_t u;
        int r;

        if (!json_is_object(o))
                return tree_error(err, i, "not a JSON object");
        v = json_object_get(o, "name");
        if (!v || !json_is_string(v))
                return tree_error(err, i, "no name");
        r = hf_go_unquote(&tmp, json_string_value(v), json_string_length(v));
        if (r < 0)
                return tree_error(err, i, "name is not a valid quoted string");
        if (tmp.len == 0 || memchr(tmp.data, '/', tmp.len) || memchr(tmp.data, 0, tmp.len) ||
            (tmp.len == 1 && tmp.data[0] == '.') ||
            (tmp.len == 2 && tmp.data[0] == '.' && tmp.data[1] == '.'))
                return tree_error(err, i, "name is empty, '.', '..' or contains '/' or NUL");
        r = hf_node_set_name(n, (const char *)tmp.data, tmp.len);
        if (r < 0)
                return r;
        v = json_object_get(o, "type");
        if (!v || !json_is_string(v) || hf_node_type_from_name(json_string_value(v), &n->type) < 0)
                return tree_error(err, i, "missing or unknown type");
        if (!get_u64(o, "mode", &u) || u > UINT32_MAX)
                return tree_error(err, i, "invalid mode");
        n->mode = (uint32_t)u;
        if (!get_time(o, "mtime", &n->mtime) || !get_time(o, "atime", &n->atime) ||
            !get_time(o, "ctime", &n->ctime))
                return tree_error(err, i, "invalid time");
        if (!get_u64(o, "uid", &u) || u > UINT32_MAX)
                return tree_error(err, i, "invalid uid");
        n->uid = (uint32_t)u;
        if (!get_u64(o, "gid", &u) || u > UINT32_MAX)
                return tree_error(err, i, "invalid gid");
        n->gid = (uint32_t)u;
        if (!get_u64(o, "inode", &n->inode) || !get_u64(o, "device_id", &n->device_id) ||
            !get_u64(o, "size", &n->size) || !get_u64(o, "links", &n->links) ||
            !get_u64(o, "device", &n->device))
                return tree_error(err, i, "invalid number");
        if ((r = dup_string(o, "user", &n->user)) < 0 ||
            (r = dup_string(o, "group", &n->group)) < 0 ||
            (r = dup_string(o, "error", &n->error)) < 0)
                return r;
        v = json_object_get(o, "linktarget_raw");
        if (v && json_is_string(v) && json_string_length(v)) {
                hf_buf_reset(&tmp);
                if (hf_base64_decode(&tmp, json_string_value(v), json_string_length(v)) < 0)
                        return tree_error(err, i, "invalid linktarget_raw");
                n->linktarget = memdup0(tmp.data, tmp.len);
                n->linktarget_len = tmp.len;
                if (!n->linktarget)
                        return -ENOMEM;
        } else {
                v = json_object_get(o, "linktarget");
                if (v && json_is_string(v) && json_string_length(v)) {
                        n->linktarget = memdup0(json_string_value(v), json_string_length(v));
                        n->linktarget_len = json_string_length(v);
                        if (!n->linktarget)
                                return -ENOMEM;
                }
        }
        v = json_object_get(o, "extended_attributes");
        if (v && json_is_array(v)) {
                for (size_t j = 0; j < json_array_size(v); j++) {
                        json_t *x = json_array_get(v, j), *xn, *xv;
                        if (!json_is_object(x))
                                return tree_error(err, i, "invalid extended attribute");
                        xn = json_object_get(x, "name");
                        xv = json_object_get(x, "value");
                        if (!xn || !json_is_string(xn))
                                return tree_error(err, i, "extended attribute without name");
                        hf_buf_reset(&tmp);
                        if (xv && json_is_string(xv) &&
                            hf_base64_decode(&tmp, json_string_value(xv), json_string_length(xv)) <
                                    0)
                                return tree_error(err, i, "invalid extended attribute value");
                        if (xv && !json_is_string(xv) && !json_is_null(xv))
                                return tree_error(err, i, "invalid extended attribute value");
                        r = hf_node_add_xattr(n, json_string_value(xn),
                                              tmp.data ? (const void *)tmp.data : (const void *)"",
                                              tmp.len);
                        if (r < 0)
                                return r;
                }
        } else if (v && !json_is_null(v))
                return tree_error(err, i, "invalid extended_attributes");
        v = json_object_get(o, "content");
        if (v && json_is_array(v)) {
                size_t k = json_array_size(v);
                if (k) {
                        n->content = malloc(k * sizeof(HfId));
                        if (!n->content)
                                return -ENOMEM;
                }
                for (size_t j = 0; j < k; j++) {
                        json_t *id = json_array_get(v, j);
                        if (!json_is_string(id) ||
                            hf_id_parse(json_string_value(id), json_string_length(id),
                                        &n->content[j]) < 0)
                                return tree_error(err, i, "invalid content ID");
                        n->n_content++;
                }
        } else if (v && !json_is_null(v))
                return tree_error(err, i, "invalid content");
        v = json_object_get(o, "subtree");
        if (v && !json_is_null(v)) {
                if (!json_is_string(v) ||
                    hf_id_parse(json_string_value(v), json_string_length(v), &n->subtree) < 0)
                        return tree_error(err, i, "invalid subtree ID");
                n->has_subtree = true;
        }
        return 0;
}

int hf_tree_parse(const void *json, size_t n, HfTree *ret, HfBuf *err)
{
        _cleanup_buf_ HfBuf quoted = HF_BUF_INIT(n + n / 4 + 64);
        HfTree t = { 0 };
        json_error_t jerr;
        json_t *root, *nodes;
        int r;

        r = quote_big_integers(json, n, &quoted);
        if (r < 0)
                return r;
        if (r > 0) {
                json = quoted.data;
                n = quoted.len;
        }
        root = json_loadb(json, n, 0, &jerr);
        if (!root) {
                if (err) {
                        hf_buf_reset(err);
                        (void)hf_buf_printf(err, "malformed JSON at line %d column %d: %s",
                                            jerr.line, jerr.column, jerr.text);
                }
                return -EPROTO;
        }
        nodes = json_is_object(root) ? json_object_get(root, "nodes") : NULL;
        if (!nodes || (!json_is_array(nodes) && !json_is_null(nodes))) {
                if (err) {
                        hf_buf_reset(err);
                        (void)hf_buf_puts(err, "no \"nodes\" array");
                }
                r = -EPROTO;
                goto out;
        }
        for (size_t i = 0; i < json_array_size(nodes); i++) {
                HfNode *node;
                r = hf_tree_add(&t, &node);
                if (r < 0)
                        goto out;
                r = parse_node(json_array_get(nodes, i), node, i, err);
                if (r < 0)
                        goto out;
        }
        /* Readers look nodes up by name: keep them sorted even if the writer did not. */
        r = hf_tree_sort(&t);
        if (r == -EEXIST) {
                if (err) {
                        hf_buf_reset(err);
                        (void)hf_buf_puts(err, "two nodes have the same name");
                }
                r = -EPROTO;
                goto out;
        }
        *ret = t;
        t = (HfTree){ 0 };
        r = 0;
out:
        json_decref(root);
        hf_tree_done(&t);
        return r;
}
