/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tree.h"

#include <string.h>
#include <sys/stat.h>

#include "../base/json.h"
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
        int r = hf_buf_puts(out, key);
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
                r = hf_buf_puts(out, ",\"type\":\"");
        if (r >= 0)
                r = hf_buf_puts(out, hf_node_type_name(n->type));
        if (r >= 0)
                r = hf_buf_putc(out, '"');
        if (r >= 0 && n->mode)
                r = hf_buf_put_key_u64(out, ",\"mode\":", n->mode);
        if (r >= 0)
                r = put_time(out, ",\"mtime\":\"", &n->mtime);
        if (r >= 0)
                r = put_time(out, ",\"atime\":\"", &n->atime);
        if (r >= 0)
                r = put_time(out, ",\"ctime\":\"", &n->ctime);
        if (r >= 0)
                r = hf_buf_put_key_u64(out, ",\"uid\":", n->uid);
        if (r >= 0)
                r = hf_buf_put_key_u64(out, ",\"gid\":", n->gid);
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
                r = hf_buf_put_key_u64(out, ",\"inode\":", n->inode);
        if (r >= 0 && n->device_id)
                r = hf_buf_put_key_u64(out, ",\"device_id\":", n->device_id);
        if (r >= 0 && n->size)
                r = hf_buf_put_key_u64(out, ",\"size\":", n->size);
        if (r >= 0 && n->links)
                r = hf_buf_put_key_u64(out, ",\"links\":", n->links);
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
                r = hf_buf_put_key_u64(out, ",\"device\":", n->device);
        if (r >= 0) {
                /* Go writes whatever Content holds: [] or IDs for files, null when unset. */
                if (n->type == HF_NODE_FILE || n->n_content > 0) {
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

/* A uint64 field; null reads as 0 (Go's zero value). */
static int get_u64(HfJson *j, uint64_t *ret)
{
        int r = hf_json_null(j);

        if (r != 0) {
                *ret = 0;
                return r < 0 ? r : 0;
        }
        return hf_json_u64(j, ret);
}

static int get_u32(HfJson *j, uint32_t *ret)
{
        uint64_t v;
        int r = get_u64(j, &v);

        if (r < 0)
                return r;
        if (v > UINT32_MAX)
                return -ERANGE;
        *ret = (uint32_t)v;
        return 0;
}

static int get_time(HfJson *j, HfTime *ret)
{
        const char *s;
        size_t n;
        int r = hf_json_null(j);

        if (r != 0) {
                *ret = (HfTime){ .sec = -62135596800LL }; /* Go's zero time, year 1 */
                return r < 0 ? r : 0;
        }
        r = hf_json_string_raw(j, &s, &n);
        if (r < 0)
                return r;
        return hf_time_parse(s, n, ret);
}

/* A string field into a new NUL-terminated copy (NULL for null or ""). */
static int get_string(HfJson *j, HfBuf *tmp, char **ret, size_t *ret_len)
{
        int r = hf_json_null(j);

        free(*ret);
        *ret = NULL;
        if (ret_len)
                *ret_len = 0;
        if (r != 0)
                return r < 0 ? r : 0;
        hf_buf_reset(tmp);
        r = hf_json_string(j, tmp);
        if (r < 0 || tmp->len == 0)
                return r;
        *ret = memdup0(tmp->data, tmp->len);
        if (!*ret)
                return -ENOMEM;
        if (ret_len)
                *ret_len = tmp->len;
        return 0;
}

static int get_id(HfJson *j, HfId *ret)
{
        const char *s;
        size_t n;
        int r = hf_json_string_raw(j, &s, &n);

        if (r < 0)
                return r;
        return hf_id_parse(s, n, ret) < 0 ? -EPROTO : 0;
}

static int get_base64(HfJson *j, HfBuf *tmp, HfBuf *out)
{
        const char *s;
        size_t n;
        int r = hf_json_null(j);

        if (r != 0)
                return r < 0 ? r : 0;
        r = hf_json_string_raw(j, &s, &n);
        if (r < 0)
                return r;
        (void)tmp;
        return hf_base64_decode(out, s, n) < 0 ? -EPROTO : 0;
}

static int parse_xattrs(HfJson *j, HfNode *n, HfBuf *tmp)
{
        _cleanup_buf_ HfBuf value = HF_BUF_INIT(1u << 24);
        int r;

        /* A repeated key replaces the earlier value (as Go's decoder does). */
        for (size_t i = 0; i < n->n_xattrs; i++) {
                free(n->xattrs[i].name);
                free(n->xattrs[i].value);
        }
        free(n->xattrs);
        n->xattrs = NULL;
        n->n_xattrs = 0;
        r = hf_json_null(j);

        if (r != 0)
                return r < 0 ? r : 0;
        r = hf_json_enter_array(j);
        while (r >= 0 && (r = hf_json_next_item(j)) > 0) {
                _cleanup_free_ char *name = NULL;
                const char *k;
                size_t kl;

                hf_buf_reset(&value);
                r = hf_json_enter_object(j);
                while (r >= 0 && (r = hf_json_next_key(j, &k, &kl)) > 0) {
                        if (hf_json_key_is(k, kl, "name"))
                                r = get_string(j, tmp, &name, NULL);
                        else if (hf_json_key_is(k, kl, "value"))
                                r = get_base64(j, tmp, &value);
                        else
                                r = hf_json_skip(j);
                }
                if (r < 0)
                        return r;
                if (!name)
                        return -EPROTO;
                r = hf_node_add_xattr(n, name, value.data ? (const void *)value.data : "",
                                      value.len);
        }
        return r;
}

static int parse_content(HfJson *j, HfNode *n)
{
        size_t cap = 0;
        int r;

        /* A repeated key replaces the earlier value (as Go's decoder does). */
        free(n->content);
        n->content = NULL;
        n->n_content = 0;
        r = hf_json_null(j);

        if (r != 0)
                return r < 0 ? r : 0;
        r = hf_json_enter_array(j);
        while (r >= 0 && (r = hf_json_next_item(j)) > 0) {
                if (n->n_content == cap) {
                        size_t ncap = cap ? cap * 2 : 8;
                        HfId *nv = realloc(n->content, ncap * sizeof(HfId));
                        if (!nv)
                                return -ENOMEM;
                        n->content = nv;
                        cap = ncap;
                }
                r = get_id(j, &n->content[n->n_content]);
                if (r >= 0)
                        n->n_content++;
        }
        return r;
}

static int parse_node(HfJson *j, HfNode *n, HfBuf *tmp, HfBuf *name, size_t i, HfBuf *err)
{
        bool have_name = false, have_type = false;
        _cleanup_buf_ HfBuf raw = HF_BUF_INIT(1u << 20);
        const char *k;
        size_t kl;
        int r;

        r = hf_json_enter_object(j);
        while (r >= 0 && (r = hf_json_next_key(j, &k, &kl)) > 0) {
                switch (k[0]) {
                case 'n':
                        if (!hf_json_key_is(k, kl, "name"))
                                goto skip;
                        hf_buf_reset(tmp);
                        hf_buf_reset(name);
                        r = hf_json_string(j, tmp);
                        if (r >= 0 && hf_go_unquote(name, (const char *)tmp->data, tmp->len) < 0)
                                return tree_error(err, i, "name is not a valid quoted string");
                        have_name = true;
                        continue;
                case 't':
                        if (!hf_json_key_is(k, kl, "type"))
                                goto skip;
                        {
                                const char *s;
                                size_t sl;
                                char t[16];
                                r = hf_json_string_raw(j, &s, &sl);
                                if (r < 0)
                                        break;
                                if (sl >= sizeof(t))
                                        return tree_error(err, i, "unknown type");
                                memcpy(t, s, sl);
                                t[sl] = 0;
                                if (hf_node_type_from_name(t, &n->type) < 0)
                                        return tree_error(err, i, "unknown type");
                                have_type = true;
                        }
                        continue;
                case 'm':
                        if (hf_json_key_is(k, kl, "mode"))
                                r = get_u32(j, &n->mode);
                        else if (hf_json_key_is(k, kl, "mtime"))
                                r = get_time(j, &n->mtime);
                        else
                                goto skip;
                        continue;
                case 'a':
                        if (!hf_json_key_is(k, kl, "atime"))
                                goto skip;
                        r = get_time(j, &n->atime);
                        continue;
                case 'c':
                        if (hf_json_key_is(k, kl, "ctime"))
                                r = get_time(j, &n->ctime);
                        else if (hf_json_key_is(k, kl, "content"))
                                r = parse_content(j, n);
                        else
                                goto skip;
                        continue;
                case 'u':
                        if (hf_json_key_is(k, kl, "uid"))
                                r = get_u32(j, &n->uid);
                        else if (hf_json_key_is(k, kl, "user"))
                                r = get_string(j, tmp, &n->user, NULL);
                        else
                                goto skip;
                        continue;
                case 'g':
                        if (hf_json_key_is(k, kl, "gid"))
                                r = get_u32(j, &n->gid);
                        else if (hf_json_key_is(k, kl, "group"))
                                r = get_string(j, tmp, &n->group, NULL);
                        else
                                goto skip;
                        continue;
                case 'i':
                        if (!hf_json_key_is(k, kl, "inode"))
                                goto skip;
                        r = get_u64(j, &n->inode);
                        continue;
                case 'd':
                        if (hf_json_key_is(k, kl, "device_id"))
                                r = get_u64(j, &n->device_id);
                        else if (hf_json_key_is(k, kl, "device"))
                                r = get_u64(j, &n->device);
                        else
                                goto skip;
                        continue;
                case 's':
                        if (hf_json_key_is(k, kl, "size"))
                                r = get_u64(j, &n->size);
                        else if (hf_json_key_is(k, kl, "subtree")) {
                                r = hf_json_null(j);
                                if (r == 0) {
                                        r = get_id(j, &n->subtree);
                                        n->has_subtree = r >= 0;
                                }
                        } else
                                goto skip;
                        continue;
                case 'l':
                        if (hf_json_key_is(k, kl, "links"))
                                r = get_u64(j, &n->links);
                        else if (hf_json_key_is(k, kl, "linktarget")) {
                                /* linktarget_raw, when present, wins (whatever the order). */
                                if (raw.len == 0)
                                        r = get_string(j, tmp, &n->linktarget, &n->linktarget_len);
                                else
                                        r = hf_json_skip(j);
                        } else if (hf_json_key_is(k, kl, "linktarget_raw")) {
                                hf_buf_reset(&raw);
                                r = get_base64(j, tmp, &raw);
                                if (r >= 0 && raw.len) {
                                        free(n->linktarget);
                                        n->linktarget = memdup0(raw.data, raw.len);
                                        n->linktarget_len = raw.len;
                                        if (!n->linktarget)
                                                return -ENOMEM;
                                }
                        } else
                                goto skip;
                        continue;
                case 'e':
                        if (hf_json_key_is(k, kl, "extended_attributes"))
                                r = parse_xattrs(j, n, tmp);
                        else if (hf_json_key_is(k, kl, "error"))
                                r = get_string(j, tmp, &n->error, NULL);
                        else
                                goto skip;
                        continue;
                default:
                        break;
                }
skip:
                r = hf_json_skip(j);
        }
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                char where[128];
                if (j->error) {
                        (void)hf_json_error(j, where, sizeof(where));
                        return tree_error(err, i, where);
                }
                return tree_error(err, i, "invalid field value");
        }
        if (!have_name)
                return tree_error(err, i, "no name");
        if (!have_type)
                return tree_error(err, i, "missing or unknown type");
        if (name->len == 0 || memchr(name->data, '/', name->len) ||
            memchr(name->data, 0, name->len) || (name->len == 1 && name->data[0] == '.') ||
            (name->len == 2 && name->data[0] == '.' && name->data[1] == '.'))
                return tree_error(err, i, "name is empty, '.', '..' or contains '/' or NUL");
        return hf_node_set_name(n, (const char *)name->data, name->len);
}

static bool tree_sorted_unique(const HfTree *t)
{
        for (size_t i = 1; i < t->n; i++)
                if (node_cmp(&t->nodes[i - 1], &t->nodes[i]) >= 0)
                        return false;
        return true;
}

int hf_tree_parse(const void *json, size_t n, HfTree *ret, HfBuf *err)
{
        _cleanup_buf_ HfBuf tmp = HF_BUF_INIT(1u << 20), name = HF_BUF_INIT(1u << 20);
        HfTree t = { 0 };
        bool have_nodes = false;
        HfJson j;
        const char *k;
        size_t kl;
        int r;

        hf_json_init(&j, json, n);
        r = hf_json_enter_object(&j);
        while (r >= 0 && (r = hf_json_next_key(&j, &k, &kl)) > 0) {
                if (!hf_json_key_is(k, kl, "nodes")) {
                        r = hf_json_skip(&j);
                        continue;
                }
                have_nodes = true;
                r = hf_json_null(&j);
                if (r != 0)
                        continue;
                r = hf_json_enter_array(&j);
                while (r >= 0 && (r = hf_json_next_item(&j)) > 0) {
                        HfNode *node;
                        r = hf_tree_add(&t, &node);
                        if (r >= 0)
                                r = parse_node(&j, node, &tmp, &name, t.n - 1, err);
                        if (r < 0)
                                goto out;
                }
        }
        if (r >= 0)
                r = hf_json_end(&j);
        if (r == -ENOMEM)
                goto out;
        if (r < 0 || !have_nodes) {
                if (err) {
                        char where[128];
                        hf_buf_reset(err);
                        if (j.error)
                                (void)hf_json_error(&j, where, sizeof(where));
                        (void)hf_buf_printf(err, "%s", j.error ? where : "no \"nodes\" array");
                }
                r = -EPROTO;
                goto out;
        }
        /* Readers look nodes up by name: keep them sorted even if the writer did not. */
        if (!tree_sorted_unique(&t) && hf_tree_sort(&t) == -EEXIST) {
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
        hf_tree_done(&t);
        return r;
}
