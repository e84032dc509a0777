/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * diff: the changes from one snapshot to another, as restic's diff reports them. Both trees are
 * walked in parallel by raw name; folders whose subtree IDs are equal are identical all the way
 * down, so they are skipped without being loaded, which keeps a diff of two backups of a big,
 * mostly unchanged tree cheap.
 */
#include <string.h>

#include "../base/gojson.h"
#include "../base/log.h"
#include "vault.h"

typedef struct DiffStat {
        uint64_t files, dirs, others;
        uint64_t data_blobs, tree_blobs, bytes;
} DiffStat;

typedef struct Diff {
        HfRepo *repo;
        HfCodec *codec;
        const HfOutput *out;
        /*
         * Blobs the changed parts of each snapshot refer to. An HfIndex doubles as a set of
         * (type, ID): it is already an open-addressing table sized for millions of blobs.
         */
        HfIndex *before, *after;
        DiffStat added, removed;
        uint64_t changed_files;
        unsigned errors;
        HfBuf path; /* the folder being walked, without a trailing '/' ("" for the root) */
        HfBuf line;
} Diff;

static int set_add(HfIndex *set, HfBlobType t, const HfId *id)
{
        HfIndexEntry e = { .id = *id, .type = (uint8_t)t, .length = 1 };
        int r = hf_index_add(set, &e);

        return r < 0 ? r : 0;
}

static int add_blobs(HfIndex *set, const HfNode *n)
{
        int r = 0;

        if (n->type == HF_NODE_FILE)
                for (size_t i = 0; r >= 0 && i < n->n_content; i++)
                        r = set_add(set, HF_BLOB_DATA, &n->content[i]);
        else if (n->type == HF_NODE_DIR && n->has_subtree)
                r = set_add(set, HF_BLOB_TREE, &n->subtree);
        return r;
}

static void stat_add(DiffStat *s, const HfNode *n)
{
        if (n->type == HF_NODE_FILE)
                s->files++;
        else if (n->type == HF_NODE_DIR)
                s->dirs++;
        else
                s->others++;
}

static int name_cmp(const HfNode *a, const HfNode *b)
{
        int c = memcmp(a->name, b->name, MIN(a->name_len, b->name_len));

        if (c)
                return c;
        return a->name_len < b->name_len ? -1 : a->name_len > b->name_len ? 1 : 0;
}

static bool same_content(const HfNode *a, const HfNode *b)
{
        return a->n_content == b->n_content &&
               (a->n_content == 0 ||
                memcmp(a->content, b->content, a->n_content * sizeof(HfId)) == 0);
}

static bool same_str(const char *a, const char *b)
{
        /* NULL and "" both mean "not recorded". */
        return strcmp(a ? a : "", b ? b : "") == 0;
}

static bool same_time(const HfTime *a, const HfTime *b)
{
        /* Go's Time.Equal: the same instant, whatever offset it was written with. */
        return a->sec == b->sec && a->nsec == b->nsec;
}

static bool same_xattrs(const HfNode *a, const HfNode *b)
{
        /* Order does not matter (restic compares them as a set); names are unique per node. */
        if (a->n_xattrs != b->n_xattrs)
                return false;
        for (size_t i = 0; i < a->n_xattrs; i++) {
                const HfXattr *x = &a->xattrs[i];
                bool found = false;
                for (size_t j = 0; j < b->n_xattrs && !found; j++) {
                        const HfXattr *y = &b->xattrs[j];
                        found = strcmp(x->name, y->name) == 0 && x->len == y->len &&
                                (x->len == 0 || memcmp(x->value, y->value, x->len) == 0);
                }
                if (!found)
                        return false;
        }
        return true;
}

/*
 * Everything restic's Node.Equals compares except the subtree: a folder whose only difference
 * is below it is not reported as changed itself, the changes below it are.
 */
static bool same_metadata(const HfNode *a, const HfNode *b)
{
        return a->mode == b->mode && same_time(&a->mtime, &b->mtime) &&
               same_time(&a->atime, &b->atime) && same_time(&a->ctime, &b->ctime) &&
               a->uid == b->uid && a->gid == b->gid && same_str(a->user, b->user) &&
               same_str(a->group, b->group) && a->inode == b->inode &&
               a->device_id == b->device_id && a->size == b->size && a->links == b->links &&
               a->linktarget_len == b->linktarget_len &&
               (a->linktarget_len == 0 ||
                memcmp(a->linktarget, b->linktarget, a->linktarget_len) == 0) &&
               a->device == b->device && same_content(a, b) && same_xattrs(a, b) &&
               same_str(a->error, b->error);
}

/* Appends "/name" to d->path; returns the length to restore afterwards. */
static int path_push(Diff *d, const HfNode *n, size_t *ret_old)
{
        int r;

        *ret_old = d->path.len;
        r = hf_buf_putc(&d->path, '/');
        if (r >= 0)
                r = hf_buf_append(&d->path, n->name, n->name_len);
        if (r < 0)
                d->path.len = *ret_old;
        return r;
}

static void path_pop(Diff *d, size_t old)
{
        d->path.len = old;
        if (d->path.data)
                d->path.data[old] = 0;
}

/* One change line for the node at d->path. */
static int emit(Diff *d, const char *mod, bool dir)
{
        HfBuf *b = &d->line;
        const char *p = d->path.data ? (const char *)d->path.data : "";
        int r;

        /* Quiet keeps only the summary, in JSON too (as restic does). */
        if (d->out->quiet)
                return 0;
        if (d->out->json) {
                hf_buf_reset(b);
                r = hf_buf_puts(b, "{\"message_type\":\"change\",\"path\":");
                if (r >= 0) {
                        /* The path with the folder's '/' as one JSON string. */
                        if (dir) {
                                r = hf_buf_putc(&d->path, '/');
                                if (r >= 0) {
                                        r = hf_json_put_string(b, (const char *)d->path.data,
                                                               d->path.len);
                                        path_pop(d, d->path.len - 1);
                                }
                        } else
                                r = hf_json_put_string(b, p, d->path.len);
                }
                if (r >= 0)
                        r = hf_buf_printf(b, ",\"modifier\":\"%s\"}\n", mod);
                if (r >= 0)
                        fwrite(b->data, 1, b->len, stdout);
                return r;
        }
        /* Raw name bytes, as restic prints them (a name may hold any byte but NUL and '/'). */
        printf("%-5s", mod);
        fwrite(p, 1, d->path.len, stdout);
        fputs(dir ? "/\n" : "\n", stdout);
        return 0;
}

static int print_dir(Diff *d, const char *mod, DiffStat *stat, HfIndex *set, const HfId *id);

/* Reports a node that exists on one side only, and everything below it. */
static int one_side(Diff *d, const HfNode *n, const char *mod, DiffStat *stat, HfIndex *set)
{
        bool dir = n->type == HF_NODE_DIR;
        int r;

        r = emit(d, mod, dir);
        if (r < 0)
                return r;
        stat_add(stat, n);
        if (dir && n->has_subtree) {
                r = print_dir(d, mod, stat, set, &n->subtree);
                /* A missing or damaged subtree is reported where it was loaded; keep going. */
                if (r < 0 && r != -ENOMEM) {
                        d->errors++;
                        r = 0;
                }
        }
        return r;
}

static int print_dir(Diff *d, const char *mod, DiffStat *stat, HfIndex *set, const HfId *id)
{
        HfTree t = { 0 };
        int r;

        r = hf_load_tree(d->repo, d->codec, id, &t);
        if (r < 0)
                return r;
        for (size_t i = 0; r >= 0 && i < t.n; i++) {
                const HfNode *n = &t.nodes[i];
                size_t old;

                r = add_blobs(set, n);
                if (r < 0)
                        break;
                r = path_push(d, n, &old);
                if (r < 0)
                        break;
                r = one_side(d, n, mod, stat, set);
                path_pop(d, old);
        }
        hf_tree_done(&t);
        return r;
}

static int diff_tree(Diff *d, const HfId *id1, const HfId *id2);

static int both_sides(Diff *d, const HfNode *n1, const HfNode *n2)
{
        const char *mod = NULL;
        int r = 0;

        if (n1->type != n2->type)
                mod = "T";
        else if (n1->type == HF_NODE_FILE && !same_content(n1, n2)) {
                mod = "M";
                d->changed_files++;
        } else if (!same_metadata(n1, n2))
                mod = "U";
        if (mod)
                r = emit(d, mod, n2->type == HF_NODE_DIR);
        if (r < 0)
                return r;
        /*
         * Only folders on both sides are descended into. A folder that became something else
         * is reported once, as restic does, without listing what it held.
         */
        if (n1->type == HF_NODE_DIR && n2->type == HF_NODE_DIR && n1->has_subtree &&
            n2->has_subtree && !hf_id_eq(&n1->subtree, &n2->subtree)) {
                r = diff_tree(d, &n1->subtree, &n2->subtree);
                if (r < 0 && r != -ENOMEM) {
                        d->errors++;
                        r = 0;
                }
        }
        return r;
}

static int diff_tree(Diff *d, const HfId *id1, const HfId *id2)
{
        HfTree t1 = { 0 }, t2 = { 0 };
        size_t i = 0, j = 0;
        int r;

        r = hf_load_tree(d->repo, d->codec, id1, &t1);
        if (r < 0)
                return r;
        r = hf_load_tree(d->repo, d->codec, id2, &t2);
        if (r < 0) {
                hf_tree_done(&t1);
                return r;
        }
        /* Both trees are sorted by raw name (hf_tree_parse sorts them): a merge walk. */
        while (r >= 0 && (i < t1.n || j < t2.n)) {
                const HfNode *n1 = NULL, *n2 = NULL;
                size_t old;
                int c;

                if (i >= t1.n)
                        c = 1;
                else if (j >= t2.n)
                        c = -1;
                else
                        c = name_cmp(&t1.nodes[i], &t2.nodes[j]);
                if (c <= 0)
                        n1 = &t1.nodes[i++];
                if (c >= 0)
                        n2 = &t2.nodes[j++];
                if (!n1 && !n2)
                        break; /* cannot happen: one side always has a node here */

                if (n1)
                        r = add_blobs(d->before, n1);
                if (r >= 0 && n2)
                        r = add_blobs(d->after, n2);
                if (r >= 0)
                        r = path_push(d, n1 ? n1 : n2, &old);
                if (r < 0)
                        break;
                if (n1 && n2)
                        r = both_sides(d, n1, n2);
                else if (n1)
                        r = one_side(d, n1, "-", &d->removed, d->before);
                else
                        r = one_side(d, n2, "+", &d->added, d->after);
                path_pop(d, old);
        }
        hf_tree_done(&t1);
        hf_tree_done(&t2);
        return r;
}

typedef struct Tally {
        Diff *d;
        const HfIndex *other;
        DiffStat *stat;
} Tally;

/* Counts a blob that only one side refers to, with its plaintext size as restic does. */
static int tally_blob(void *ud, const HfIndexEntry *e)
{
        Tally *t = ud;
        const HfIndex *idx = hf_repo_index(t->d->repo);
        const HfIndexEntry *where;

        if (hf_index_lookup(t->other, (HfBlobType)e->type, &e->id))
                return 0;
        if (e->type == HF_BLOB_TREE)
                t->stat->tree_blobs++;
        else
                t->stat->data_blobs++;
        where = idx ? hf_index_lookup(idx, (HfBlobType)e->type, &e->id) : NULL;
        if (!where) {
                char hex[HF_ID_HEX_LEN + 1];
                hf_id_hex(&e->id, hex);
                log_warning("%s blob %.16s is not in the index: its size is not counted",
                            hf_blob_type_name((HfBlobType)e->type), hex);
                return 0;
        }
        t->stat->bytes += hf_index_entry_plain_len(where);
        return 0;
}

static int put_stat(HfBuf *b, const char *key, const DiffStat *s)
{
        return hf_buf_printf(b,
                             ",\"%s\":{\"files\":%llu,\"dirs\":%llu,\"others\":%llu,"
                             "\"data_blobs\":%llu,\"tree_blobs\":%llu,\"bytes\":%llu}",
                             key, (unsigned long long)s->files, (unsigned long long)s->dirs,
                             (unsigned long long)s->others, (unsigned long long)s->data_blobs,
                             (unsigned long long)s->tree_blobs, (unsigned long long)s->bytes);
}

static int print_summary(Diff *d, const HfSnapshot *a, const HfSnapshot *b)
{
        const DiffStat *ad = &d->added, *rm = &d->removed;

        if (d->out->json) {
                char ha[HF_ID_HEX_LEN + 1], hb[HF_ID_HEX_LEN + 1];
                HfBuf *l = &d->line;
                int r;

                hf_id_hex(&a->id, ha);
                hf_id_hex(&b->id, hb);
                hf_buf_reset(l);
                r = hf_buf_printf(l,
                                  "{\"message_type\":\"statistics\",\"source_snapshot\":\"%s\","
                                  "\"target_snapshot\":\"%s\",\"changed_files\":%llu",
                                  ha, hb, (unsigned long long)d->changed_files);
                if (r >= 0)
                        r = put_stat(l, "added", ad);
                if (r >= 0)
                        r = put_stat(l, "removed", rm);
                if (r >= 0)
                        r = hf_buf_puts(l, "}\n");
                if (r >= 0)
                        fwrite(l->data, 1, l->len, stdout);
                return r;
        }
        char added[32], removed[32];
        printf("\nFiles:       %5llu new, %5llu removed, %5llu changed\n"
               "Dirs:        %5llu new, %5llu removed\n"
               "Others:      %5llu new, %5llu removed\n"
               "Data Blobs:  %5llu new, %5llu removed\n"
               "Tree Blobs:  %5llu new, %5llu removed\n"
               "  Added:   %s\n"
               "  Removed: %s\n",
               (unsigned long long)ad->files, (unsigned long long)rm->files,
               (unsigned long long)d->changed_files, (unsigned long long)ad->dirs,
               (unsigned long long)rm->dirs, (unsigned long long)ad->others,
               (unsigned long long)rm->others, (unsigned long long)ad->data_blobs,
               (unsigned long long)rm->data_blobs, (unsigned long long)ad->tree_blobs,
               (unsigned long long)rm->tree_blobs, hf_format_bytes(added, sizeof(added), ad->bytes),
               hf_format_bytes(removed, sizeof(removed), rm->bytes));
        return 0;
}

int hf_diff(HfRepo *repo, const HfSnapshot *a, const HfSnapshot *b, const HfOutput *out)
{
        Diff d = {
                .repo = repo,
                .out = out,
                .path = HF_BUF_INIT(SIZE_MAX / 2),
                .line = HF_BUF_INIT(SIZE_MAX / 2),
        };
        Tally rm = { &d, NULL, &d.removed }, ad = { &d, NULL, &d.added };
        int r;

        r = hf_repo_new_codec(repo, &d.codec);
        if (r >= 0)
                r = hf_index_new(&d.before);
        if (r >= 0)
                r = hf_index_new(&d.after);
        if (r < 0)
                goto out;
        if (!out->json && !out->quiet) {
                char ha[HF_ID_HEX_LEN + 1], hb[HF_ID_HEX_LEN + 1];
                hf_id_hex(&a->id, ha);
                hf_id_hex(&b->id, hb);
                printf("comparing snapshot %.8s to %.8s:\n\n", ha, hb);
        }
        r = set_add(d.before, HF_BLOB_TREE, &a->tree);
        if (r >= 0)
                r = set_add(d.after, HF_BLOB_TREE, &b->tree);
        /* Equal root trees: nothing differs, and nothing needs to be loaded. */
        if (r >= 0 && !hf_id_eq(&a->tree, &b->tree))
                r = diff_tree(&d, &a->tree, &b->tree);
        if (r < 0)
                goto out;

        /* Removed: blobs only the first snapshot refers to; added: only the second. */
        rm.other = d.after;
        ad.other = d.before;
        r = hf_index_foreach(d.before, tally_blob, &rm);
        if (r >= 0)
                r = hf_index_foreach(d.after, tally_blob, &ad);
        if (r >= 0)
                r = print_summary(&d, a, b);
        if (r >= 0 && fflush(stdout) != 0)
                r = log_error_errno(errno_or_eio(), "cannot write the output: %m");
        if (r >= 0 && d.errors) {
                log_error("%u folder%s could not be compared (named above): the list is "
                          "incomplete",
                          d.errors, d.errors == 1 ? "" : "s");
                r = HF_INCOMPLETE;
        }
out:
        hf_index_free(d.before);
        hf_index_free(d.after);
        hf_codec_free(d.codec);
        hf_buf_free(&d.path);
        hf_buf_free(&d.line);
        return r;
}
