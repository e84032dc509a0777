/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * holdfast serve --verify: replays the receipt log (hash chain, sequence, canonical form),
 * compares its final state with the files under the root (re-hashing every object), and,
 * given a password, compares each snapshot's own time with the time the server received it.
 * Safe to run while the server runs: objects that appear during the check are looked up in
 * a second reading of the log before they are called unrecorded.
 */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "../base/log.h"
#include "../crypto/crypto.h"
#include "../repo/snapshot.h"
#include "internal.h"

typedef struct Entry {
        HfId key;
        uint64_t seq;
        uint64_t size;
        HfId sha;
        int64_t sec;
        int32_t nsec;
        bool present;
        bool seen;
        char *shown; /* "repo/type/name" for messages */
} Entry;

typedef struct Verify {
        const HfVerifyOptions *o;
        int rootfd;
        Entry *e;
        size_t n, cap;
        uint64_t records, head_seq;
        HfId head;
        unsigned problems;
        uint64_t objects, bytes, snapshots;
        /* unrecorded objects found on disk, rechecked against a second reading of the log */
        HfId *late;
        char **late_names;
        size_t n_late;
        bool second_pass;
} Verify;

static void problem(Verify *v, const char *kind, const char *object, uint64_t line, const char *fmt,
                    ...) _printf_(5, 6);

static void problem(Verify *v, const char *kind, const char *object, uint64_t line, const char *fmt,
                    ...)
{
        char msg[1024];
        va_list ap;

        va_start(ap, fmt);
        (void)vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        v->problems++;
        if (v->o->json) {
                HfBuf b = HF_BUF_INIT(4096);
                (void)hf_buf_printf(
                        &b, "{\"message_type\":\"problem\",\"kind\":\"%s\",\"object\":", kind);
                (void)hf_json_put_string(&b, object ? object : "", object ? strlen(object) : 0);
                (void)hf_buf_printf(&b, ",\"line\":%llu,\"message\":", (unsigned long long)line);
                (void)hf_json_put_string(&b, msg, strlen(msg));
                (void)hf_buf_puts(&b, "}\n");
                fwrite(b.data, 1, b.len, stdout);
                hf_buf_free(&b);
        } else
                printf("%s: %s%s%s\n", kind, object ? object : "", object ? ": " : "", msg);
}

static int entry_cmp(const void *a, const void *b)
{
        const Entry *x = a, *y = b;
        int c = hf_id_cmp(&x->key, &y->key);

        if (c)
                return c;
        return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int add_entry(Verify *v, const HfReceipt *r)
{
        if (v->n == v->cap) {
                size_t ncap = v->cap ? v->cap * 2 : 4096;
                Entry *ne = realloc(v->e, ncap * sizeof(Entry));
                if (!ne)
                        return -ENOMEM;
                v->e = ne;
                v->cap = ncap;
        }
        Entry *e = &v->e[v->n++];
        memset(e, 0, sizeof(*e));
        hf_receipt_key(r->repo, r->type, r->name, &e->key);
        e->seq = r->seq;
        e->size = r->size;
        e->sha = r->sha256;
        e->sec = r->time.sec;
        e->nsec = r->time.nsec;
        e->present = r->op != HF_RECEIPT_DELETE;
        {
                char shown[HF_REPO_PATH_MAX + 160];
                (void)hf_store_object_path(r->repo, r->type, r->name, shown, sizeof(shown));
                e->shown = strdup(shown);
                if (!e->shown) {
                        v->n--;
                        return -ENOMEM;
                }
        }
        return 0;
}

static void free_entries(Verify *v)
{
        for (size_t i = 0; i < v->n; i++)
                free(v->e[i].shown);
        v->n = 0;
}

static int log_line(void *userdata, const char *line, size_t n, uint64_t lineno, bool torn)
{
        Verify *v = userdata;
        _cleanup_buf_ HfBuf again = HF_BUF_INIT(HF_RECEIPT_LINE_MAX + 1);
        HfReceipt r;
        bool report = !v->second_pass;

        if (torn) {
                if (report)
                        log_warning("%s/%s line %llu: incomplete last record (a write in "
                                    "progress, or a crash); not checked",
                                    HF_SERVER_STATE_DIR, HF_RECEIPT_LOG,
                                    (unsigned long long)lineno);
                return 0;
        }
        v->records++;
        if (n == SIZE_MAX) {
                if (report)
                        problem(v, "chain", HF_RECEIPT_LOG, lineno,
                                "line longer than %d bytes: not a record", HF_RECEIPT_LINE_MAX);
                v->head_seq++;
                memset(&v->head, 0xff, sizeof(v->head));
                return 0;
        }
        if (hf_receipt_parse(line, n, &r) < 0) {
                if (report)
                        problem(v, "chain", HF_RECEIPT_LOG, lineno, "malformed record");
                v->head_seq++;
                hf_sha256(line, n, &v->head);
                return 0;
        }
        if (report) {
                if (r.seq != v->head_seq + 1)
                        problem(v, "chain", HF_RECEIPT_LOG, lineno,
                                "sequence number %llu follows %llu: records were removed or "
                                "reordered",
                                (unsigned long long)r.seq, (unsigned long long)v->head_seq);
                else if (!hf_id_eq(&r.prev, &v->head))
                        problem(v, "chain", HF_RECEIPT_LOG, lineno,
                                "the previous record's hash does not match: the record before "
                                "it was edited");
                if (hf_receipt_format(&r, &again) < 0 || again.len != n ||
                    memcmp(again.data, line, n) != 0)
                        problem(v, "chain", HF_RECEIPT_LOG, lineno,
                                "record not in the form the server writes: edited");
        }
        v->head_seq = r.seq;
        hf_sha256(line, n, &v->head);
        return add_entry(v, &r);
}

static int read_log(Verify *v)
{
        _cleanup_close_ int fd = -1;
        int r;

        free_entries(v);
        v->records = v->head_seq = 0;
        memset(&v->head, 0, sizeof(v->head));
        fd = openat(v->rootfd, HF_SERVER_STATE_DIR "/" HF_RECEIPT_LOG,
                    O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 && errno == ENOENT)
                return 0;
        if (fd < 0)
                return log_error_errno(errno, "%s/%s/%s: cannot open: %m", v->o->root,
                                       HF_SERVER_STATE_DIR, HF_RECEIPT_LOG);
        r = hf_read_lines(fd, log_line, v);
        if (r < 0)
                return log_error_errno(r, "%s/%s/%s: cannot read: %m", v->o->root,
                                       HF_SERVER_STATE_DIR, HF_RECEIPT_LOG);
        /* Final state per object: the last record of each key. */
        qsort(v->e, v->n, sizeof(Entry), entry_cmp);
        size_t m = 0;
        for (size_t i = 0; i < v->n; i++) {
                if (m && hf_id_eq(&v->e[m - 1].key, &v->e[i].key)) {
                        free(v->e[m - 1].shown);
                        v->e[m - 1] = v->e[i];
                } else
                        v->e[m++] = v->e[i];
        }
        v->n = m;
        return 0;
}

static Entry *find(Verify *v, const HfId *key)
{
        size_t lo = 0, hi = v->n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = hf_id_cmp(&v->e[mid].key, key);
                if (c == 0)
                        return &v->e[mid];
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

static void object_name(const char *repo, HfFileType t, const char *name, char *buf, size_t n)
{
        (void)hf_store_object_path(repo, t, name, buf, n);
}

static int check_object(void *userdata, const char *repo, HfFileType t, const char *name, int dirfd,
                        uint64_t size)
{
        Verify *v = userdata;
        char shown[HF_REPO_PATH_MAX + 160], hex[HF_ID_HEX_LEN + 1];
        HfId key, sha;
        uint64_t got;
        Entry *e;
        int fd, r;

        object_name(repo, t, name, shown, sizeof(shown));
        hf_receipt_key(repo, t, name, &key);
        e = find(v, &key);
        if (!e || !e->present) {
                char **nl;
                HfId *nk;
                nk = realloc(v->late, (v->n_late + 1) * sizeof(HfId));
                if (!nk)
                        return -ENOMEM;
                v->late = nk;
                nl = realloc(v->late_names, (v->n_late + 1) * sizeof(char *));
                if (!nl)
                        return -ENOMEM;
                v->late_names = nl;
                v->late[v->n_late] = key;
                v->late_names[v->n_late] = strdup(shown);
                if (!v->late_names[v->n_late])
                        return -ENOMEM;
                v->n_late++;
                return 0;
        }
        e->seen = true;
        fd = openat(dirfd, t == HF_FILE_CONFIG ? "config" : name,
                    O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
                problem(v, "content", shown, 0, "cannot open: %s", strerror(errno));
                return 0;
        }
        r = hf_store_hash_fd(fd, &sha, &got);
        close(fd);
        if (r < 0) {
                problem(v, "content", shown, 0, "cannot read: %s", strerror(-r));
                return 0;
        }
        v->objects++;
        v->bytes += got;
        hf_id_hex(&sha, hex);
        if (!hf_id_eq(&sha, &e->sha) || got != e->size)
                problem(v, "content", shown, 0,
                        "differs from its receipt (now %llu bytes, SHA-256 %.16s...; received "
                        "%llu bytes): rewritten or damaged",
                        (unsigned long long)got, hex, (unsigned long long)e->size);
        else if (t != HF_FILE_CONFIG && strcmp(hex, name) != 0)
                problem(v, "content", shown, 0, "its SHA-256 does not match its name");
        return 0;
}

static int check_repo(void *userdata, const char *repo)
{
        return hf_store_walk_objects(((Verify *)userdata)->rootfd, repo, check_object, userdata);
}

/* Snapshot times against receipt times, for the repositories the password opens. */
static int check_snapshots(void *userdata, const char *repo)
{
        Verify *v = userdata;
        _cleanup_free_ char *path = NULL;
        _cleanup_(hf_repo_freep) HfRepo *r = NULL;
        HfSnapshot *snaps = NULL;
        HfBackend *b = NULL;
        size_t n = 0;
        int k, level = hf_log_get_level();

        if (asprintf(&path, "%s/%s", v->o->root, *repo ? repo : ".") < 0)
                return -ENOMEM;
        k = hf_backend_local_open(path, false, &b);
        if (k < 0)
                return 0;
        hf_log_set_level(HF_LOG_ERR - 1); /* a repository of another password is no error */
        k = hf_repo_open(b, v->o->password, &r);
        hf_log_set_level(level);
        if (k < 0) {
                log_info("%s: the password does not open this repository; its snapshot times "
                         "are not checked",
                         *repo ? repo : "(root)");
                return 0;
        }
        k = hf_snapshot_load_all(r, &snaps, &n, NULL);
        if (k < 0)
                return 0;
        for (size_t i = 0; i < n; i++) {
                char hex[HF_ID_HEX_LEN + 1], shown[HF_REPO_PATH_MAX + 160];
                HfId key;
                Entry *e;
                HfBuf st = HF_BUF_INIT(64), rt = HF_BUF_INIT(64);
                HfTime recv;

                hf_id_hex(&snaps[i].id, hex);
                object_name(repo, HF_FILE_SNAPSHOT, hex, shown, sizeof(shown));
                hf_receipt_key(repo, HF_FILE_SNAPSHOT, hex, &key);
                e = find(v, &key);
                v->snapshots++;
                if (!e)
                        continue; /* reported as unrecorded already */
                recv = (HfTime){ .sec = e->sec, .nsec = e->nsec };
                if ((double)(snaps[i].time.sec - e->sec) +
                            (double)(snaps[i].time.nsec - e->nsec) / 1e9 >
                    v->o->max_clock_skew) {
                        (void)hf_time_format(&st, &snaps[i].time);
                        (void)hf_time_format(&rt, &recv);
                        problem(v, "forged", shown, 0,
                                "snapshot %.8s of host %s claims the time %s, but the server "
                                "received it at %s: its time is forged (later than its receipt)",
                                hex, snaps[i].hostname ? snaps[i].hostname : "?",
                                st.data ? (char *)st.data : "?", rt.data ? (char *)rt.data : "?");
                }
                hf_buf_free(&st);
                hf_buf_free(&rt);
        }
        hf_snapshot_array_free(snaps, n);
        return 0;
}

int hf_server_verify(const HfVerifyOptions *o)
{
        Verify v = { .o = o, .rootfd = -1 };
        int r;

        v.rootfd = open(o->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (v.rootfd < 0)
                return log_error_errno(errno, "%s: cannot open the root folder: %m", o->root);
        r = read_log(&v);
        if (r < 0)
                goto out;
        r = hf_store_walk_repos(v.rootfd, check_repo, &v);
        if (r < 0) {
                log_error_errno(r, "%s: cannot scan: %m", o->root);
                goto out;
        }
        if (v.n_late) {
                /* Uploads that landed during the check: a second reading of the log. */
                Verify again = { .o = o, .rootfd = v.rootfd, .second_pass = true };

                r = read_log(&again);
                if (r < 0) {
                        free_entries(&again);
                        free(again.e);
                        goto out;
                }
                v.records = MAX(v.records, again.records);
                for (size_t i = 0; i < v.n_late; i++) {
                        Entry *e = find(&again, &v.late[i]);
                        if (!e || !e->present)
                                problem(&v, "unrecorded", v.late_names[i], 0, "%s",
                                        e ? "deleted through the server, yet present"
                                          : "not in the receipt log: stored behind the "
                                            "server's back");
                }
                free_entries(&again);
                free(again.e);
        }
        for (size_t i = 0; i < v.n; i++)
                if (v.e[i].present && !v.e[i].seen) {
                        HfBuf t = HF_BUF_INIT(64);
                        HfTime tm = { .sec = v.e[i].sec, .nsec = v.e[i].nsec };
                        (void)hf_time_format(&t, &tm);
                        problem(&v, "missing", v.e[i].shown, 0,
                                "received at %s (%llu bytes), gone, but never deleted through "
                                "the server",
                                t.data ? (char *)t.data : "?", (unsigned long long)v.e[i].size);
                        hf_buf_free(&t);
                }
        if (o->password) {
                r = hf_store_walk_repos(v.rootfd, check_snapshots, &v);
                if (r < 0)
                        goto out;
        }
        if (o->json)
                printf("{\"message_type\":\"summary\",\"records\":%llu,\"objects\":%llu,"
                       "\"bytes\":%llu,\"snapshots_checked\":%llu,\"problems\":%u}\n",
                       (unsigned long long)v.records, (unsigned long long)v.objects,
                       (unsigned long long)v.bytes, (unsigned long long)v.snapshots, v.problems);
        else
                printf("%llu receipt records, %llu objects re-hashed (%llu bytes)%s, %u "
                       "problem%s\n",
                       (unsigned long long)v.records, (unsigned long long)v.objects,
                       (unsigned long long)v.bytes, o->password ? ", snapshot times checked" : "",
                       v.problems, v.problems == 1 ? "" : "s");
        r = v.problems ? HF_INCOMPLETE : 0;
out:
        for (size_t i = 0; i < v.n_late; i++)
                free(v.late_names[i]);
        free(v.late_names);
        free(v.late);
        free_entries(&v);
        free(v.e);
        close(v.rootfd);
        return r;
}
