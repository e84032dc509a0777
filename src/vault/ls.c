/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>
#include <time.h>

#include "../base/gojson.h"
#include "../base/log.h"
#include "vault.h"

typedef struct Ls {
        HfRepo *repo;
        HfCodec *codec;
        const HfLsOptions *opts;
        HfBuf line;
} Ls;

/* Raw bytes as JSON text (invalid UTF-8 becomes U+FFFD). */
static int put_name(HfBuf *b, const char *s, size_t n)
{
        return hf_json_put_string(b, s, n);
}

static int print_node_json(Ls *l, const HfNode *n, const char *path)
{
        HfBuf *b = &l->line;
        char perm[HF_MODE_STRING_MAX];
        int r;

        hf_buf_reset(b);
        hf_mode_string(n->mode, n->type, perm);
        r = hf_buf_puts(b, "{\"struct_type\":\"node\",\"name\":");
        if (r >= 0)
                r = put_name(b, n->name, n->name_len);
        if (r >= 0)
                r = hf_buf_printf(b, ",\"type\":\"%s\",\"path\":", hf_node_type_name(n->type));
        if (r >= 0)
                r = put_name(b, path, strlen(path));
        if (r >= 0)
                r = hf_buf_printf(b, ",\"uid\":%u,\"gid\":%u,\"mode\":%u,\"permissions\":\"%s\"",
                                  n->uid, n->gid, n->mode, perm);
        if (r >= 0) {
                r = hf_buf_puts(b, ",\"mtime\":\"");
                if (r >= 0)
                        r = hf_time_format(b, &n->mtime);
                if (r >= 0)
                        r = hf_buf_puts(b, "\",\"atime\":\"");
                if (r >= 0)
                        r = hf_time_format(b, &n->atime);
                if (r >= 0)
                        r = hf_buf_puts(b, "\",\"ctime\":\"");
                if (r >= 0)
                        r = hf_time_format(b, &n->ctime);
                if (r >= 0)
                        r = hf_buf_putc(b, '"');
        }
        if (r >= 0 && n->inode)
                r = hf_buf_printf(b, ",\"inode\":%llu", (unsigned long long)n->inode);
        if (r >= 0 && n->links)
                r = hf_buf_printf(b, ",\"links\":%llu", (unsigned long long)n->links);
        if (r >= 0 && n->type == HF_NODE_FILE)
                r = hf_buf_printf(b, ",\"size\":%llu", (unsigned long long)n->size);
        if (r >= 0 && n->linktarget) {
                r = hf_buf_puts(b, ",\"linktarget\":");
                if (r >= 0)
                        r = put_name(b, n->linktarget, n->linktarget_len);
        }
        if (r >= 0 && (n->type == HF_NODE_DEV || n->type == HF_NODE_CHARDEV))
                r = hf_buf_printf(b, ",\"device\":%llu", (unsigned long long)n->device);
        if (r >= 0)
                r = hf_buf_puts(b, "}\n");
        if (r >= 0)
                fwrite(b->data, 1, b->len, stdout);
        return r;
}

static void print_node_text(Ls *l, const HfNode *n, const char *path)
{
        if (l->opts->long_format) {
                char perm[HF_MODE_STRING_MAX], when[32];
                time_t sec = (time_t)n->mtime.sec;
                struct tm tm;
                hf_mode_string(n->mode, n->type, perm);
                if (!localtime_r(&sec, &tm) ||
                    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm) == 0)
                        when[0] = 0;
                printf("%s %8s %8s %12llu %s %s", perm, n->user ? n->user : "?",
                       n->group ? n->group : "?", (unsigned long long)n->size, when, path);
                if (n->type == HF_NODE_SYMLINK && n->linktarget)
                        printf(" -> %.*s", (int)n->linktarget_len, n->linktarget);
                putchar('\n');
        } else
                printf("%s\n", path);
}

/* Whether path is selected (0 no, 1 yes and below, 2 only an ancestor of a selection). */
static int selected(const HfLsOptions *o, const char *path)
{
        bool ancestor = false;

        if (o->n_paths == 0)
                return 1;
        for (size_t i = 0; i < o->n_paths; i++) {
                const char *p = o->paths[i];
                size_t pl = strlen(p), l = strlen(path);
                while (pl > 1 && p[pl - 1] == '/')
                        pl--;
                if (l >= pl && strncmp(path, p, pl) == 0 && (path[pl] == '/' || path[pl] == 0))
                        return 1;
                if (pl > l && strncmp(p, path, l) == 0 && (p[l] == '/' || l == 1))
                        ancestor = true;
        }
        return ancestor ? 2 : 0;
}

static int ls_tree(Ls *l, const HfId *id, const char *prefix)
{
        HfTree t = { 0 };
        int r = hf_load_tree(l->repo, l->codec, id, &t);

        if (r < 0)
                return r;
        for (size_t i = 0; i < t.n && r >= 0; i++) {
                const HfNode *n = &t.nodes[i];
                _cleanup_free_ char *path = NULL;
                int sel;

                if (asprintf(&path, "%s/%s", strcmp(prefix, "/") == 0 ? "" : prefix, n->name) < 0) {
                        r = -ENOMEM;
                        break;
                }
                sel = selected(l->opts, path);
                if (sel == 0)
                        continue;
                if (sel == 1) {
                        if (l->opts->out.json)
                                r = print_node_json(l, n, path);
                        else
                                print_node_text(l, n, path);
                }
                if (r >= 0 && n->type == HF_NODE_DIR && n->has_subtree)
                        r = ls_tree(l, &n->subtree, path);
        }
        hf_tree_done(&t);
        return r;
}

int hf_ls(HfRepo *repo, const HfSnapshot *snap, const HfLsOptions *opts)
{
        Ls l = { .repo = repo, .opts = opts, .line = HF_BUF_INIT(SIZE_MAX / 2) };
        char hex[HF_ID_HEX_LEN + 1];
        int r;

        r = hf_repo_new_codec(repo, &l.codec);
        if (r < 0)
                return r;
        hf_id_hex(&snap->id, hex);
        if (opts->out.json) {
                HfBuf b = HF_BUF_INIT(SIZE_MAX / 2);
                r = hf_snapshot_format(snap, &b);
                if (r >= 0 && b.len && b.data[b.len - 1] == '}') {
                        b.len--;
                        r = hf_buf_printf(&b,
                                          ",\"id\":\"%s\",\"short_id\":\"%.8s\","
                                          "\"struct_type\":\"snapshot\"}\n",
                                          hex, hex);
                }
                if (r >= 0)
                        fwrite(b.data, 1, b.len, stdout);
                hf_buf_free(&b);
        } else if (!opts->out.quiet) {
                HfBuf b = HF_BUF_INIT(4096);
                (void)hf_time_format(&b, &snap->time);
                fprintf(stderr, "snapshot %.8s of", hex);
                for (size_t i = 0; i < snap->n_paths; i++)
                        fprintf(stderr, " %s", snap->paths[i]);
                fprintf(stderr, " at %s:\n", b.data ? (char *)b.data : "?");
                hf_buf_free(&b);
        }
        if (r >= 0)
                r = ls_tree(&l, &snap->tree, "/");
        hf_codec_free(l.codec);
        hf_buf_free(&l.line);
        return r;
}
