/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The receipt log: one JSON line per object the server accepted, deleted or adopted, each
 * carrying the SHA-256 of the line before it. Rewriting or removing a line breaks the chain
 * from there on; `holdfast serve --verify` finds it. The server also keeps a table of the
 * objects the log says are present, with their receipt times, for the retention check.
 */
#include <fcntl.h>
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>

#include "../base/log.h"
#include "../crypto/crypto.h"
#include "internal.h"

static const char *const op_names[_HF_RECEIPT_OP_MAX] = {
        [HF_RECEIPT_PUT] = "put",
        [HF_RECEIPT_DELETE] = "delete",
        [HF_RECEIPT_ADOPT] = "adopt",
};

const char *hf_receipt_op_name(HfReceiptOp op)
{
        return op < _HF_RECEIPT_OP_MAX ? op_names[op] : "?";
}

int hf_receipt_format(const HfReceipt *r, HfBuf *out)
{
        char sha[HF_ID_HEX_LEN + 1], prev[HF_ID_HEX_LEN + 1];
        HfTime t = r->time;
        int k;

        if (r->op >= _HF_RECEIPT_OP_MAX || r->type >= _HF_FILE_TYPE_MAX)
                return -EINVAL;
        t.off = 0;
        hf_id_hex(&r->sha256, sha);
        hf_id_hex(&r->prev, prev);
        k = hf_buf_printf(out, "{\"seq\":%llu,\"time\":\"", (unsigned long long)r->seq);
        if (k >= 0)
                k = hf_time_format(out, &t);
        if (k >= 0)
                k = hf_buf_printf(out, "\",\"op\":\"%s\",\"repo\":", op_names[r->op]);
        if (k >= 0)
                k = hf_json_put_string(out, r->repo, strlen(r->repo));
        if (k >= 0)
                k = hf_buf_printf(out,
                                  ",\"type\":\"%s\",\"name\":\"%s\",\"size\":%llu,"
                                  "\"sha256\":\"%s\",\"user\":",
                                  hf_file_type_dir(r->type), r->name, (unsigned long long)r->size,
                                  sha);
        if (k >= 0)
                k = hf_json_put_string(out, r->user, strlen(r->user));
        if (k >= 0)
                k = hf_buf_printf(out, ",\"prev\":\"%s\"}", prev);
        return k < 0 ? k : 0;
}

static int get_str(json_t *o, const char *key, const char **ret, size_t *ret_n)
{
        json_t *v = json_object_get(o, key);

        if (!json_is_string(v))
                return -EPROTO;
        *ret = json_string_value(v);
        *ret_n = json_string_length(v);
        return 0;
}

static int get_u64(json_t *o, const char *key, uint64_t max, uint64_t *ret)
{
        json_t *v = json_object_get(o, key);

        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            (uint64_t)json_integer_value(v) > max)
                return -EPROTO;
        *ret = (uint64_t)json_integer_value(v);
        return 0;
}

static int get_id(json_t *o, const char *key, HfId *ret)
{
        const char *s;
        size_t n;

        if (get_str(o, key, &s, &n) < 0 || n != HF_ID_HEX_LEN)
                return -EPROTO;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return -EPROTO;
        return hf_id_parse(s, n, ret) < 0 ? -EPROTO : 0;
}

int hf_receipt_parse(const char *line, size_t n, HfReceipt *ret)
{
        json_t *root = NULL;
        HfReceipt r = { 0 };
        const char *s;
        size_t len;
        int k = -EPROTO;

        if (!line || n == 0 || n > HF_RECEIPT_LINE_MAX)
                return -EPROTO;
        root = json_loadb(line, n, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(root) || json_object_size(root) != 10)
                goto out;
        if (get_u64(root, "seq", UINT64_MAX >> 2, &r.seq) < 0 || r.seq == 0)
                goto out;
        if (get_str(root, "time", &s, &len) < 0 || hf_time_parse(s, len, &r.time) < 0 ||
            r.time.off != 0)
                goto out;
        if (get_str(root, "op", &s, &len) < 0)
                goto out;
        r.op = _HF_RECEIPT_OP_MAX;
        for (HfReceiptOp op = 0; op < _HF_RECEIPT_OP_MAX; op++)
                if (strlen(op_names[op]) == len && memcmp(op_names[op], s, len) == 0)
                        r.op = op;
        if (r.op == _HF_RECEIPT_OP_MAX)
                goto out;

        /* The repository must be one a request could have named. */
        if (get_str(root, "repo", &s, &len) < 0 || len >= sizeof(r.repo))
                goto out;
        if (len) {
                char path[HF_REPO_PATH_MAX + 2];
                HfRequestPath p;
                (void)snprintf(path, sizeof(path), "/%.*s/", (int)len, s);
                if (memchr(s, 0, len) || hf_server_parse_path(path, len + 2, &p) < 0 ||
                    p.kind != HF_PATH_REPO || strcmp(p.repo, s) != 0)
                        goto out;
        }
        memcpy(r.repo, s, len);
        r.repo[len] = 0;

        if (get_str(root, "type", &s, &len) < 0)
                goto out;
        r.type = _HF_FILE_TYPE_MAX;
        for (HfFileType t = 0; t < _HF_FILE_TYPE_MAX; t++)
                if (strlen(hf_file_type_dir(t)) == len && memcmp(hf_file_type_dir(t), s, len) == 0)
                        r.type = t;
        if (r.type == _HF_FILE_TYPE_MAX)
                goto out;
        if (get_str(root, "name", &s, &len) < 0)
                goto out;
        if (r.type == HF_FILE_CONFIG) {
                if (len != 6 || memcmp(s, "config", 6) != 0)
                        goto out;
        } else {
                HfId tmp;
                if (len != HF_ID_HEX_LEN || get_id(root, "name", &tmp) < 0)
                        goto out;
        }
        memcpy(r.name, s, len);
        r.name[len] = 0;
        if (get_u64(root, "size", UINT64_MAX >> 2, &r.size) < 0)
                goto out;
        if (get_id(root, "sha256", &r.sha256) < 0 || get_id(root, "prev", &r.prev) < 0)
                goto out;
        if (get_str(root, "user", &s, &len) < 0 || len > HF_USER_NAME_MAX || memchr(s, 0, len) ||
            !hf_utf8_valid(s, len))
                goto out;
        for (size_t i = 0; i < len; i++)
                if ((unsigned char)s[i] < 0x20 || s[i] == ':' || s[i] == 0x7f)
                        goto out;
        memcpy(r.user, s, len);
        r.user[len] = 0;
        *ret = r;
        k = 0;
out:
        json_decref(root);
        return k;
}

int hf_read_lines(int fd, HfLineFn fn, void *userdata)
{
        _cleanup_free_ char *buf = malloc(HF_RECEIPT_LINE_MAX + 1);
        size_t have = 0;
        uint64_t lineno = 0;
        bool skipping = false; /* inside an over-long line */
        int r;

        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t got = read(fd, buf + have, HF_RECEIPT_LINE_MAX + 1 - have);
                size_t start = 0;

                if (got < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (got == 0) {
                        if (have > 0 && !skipping)
                                return fn(userdata, buf, have, ++lineno, true);
                        if (skipping)
                                return fn(userdata, NULL, SIZE_MAX, ++lineno, true);
                        return 0;
                }
                have += (size_t)got;
                for (size_t i = 0; i < have; i++) {
                        if (buf[i] != '\n')
                                continue;
                        if (skipping) {
                                skipping = false;
                                r = fn(userdata, NULL, SIZE_MAX, ++lineno, false);
                        } else
                                r = fn(userdata, buf + start, i - start, ++lineno, false);
                        if (r < 0)
                                return r;
                        start = i + 1;
                }
                memmove(buf, buf + start, have - start);
                have -= start;
                if (have > HF_RECEIPT_LINE_MAX) {
                        skipping = true;
                        have = 0;
                }
        }
}

void hf_receipt_key(const char *repo, HfFileType t, const char *name, HfId *ret)
{
        char buf[HF_REPO_PATH_MAX + 16 + HF_ID_HEX_LEN + 2];
        int n = snprintf(buf, sizeof(buf), "%s%c%s%c%s", repo, 0, hf_file_type_dir(t), 0, name);

        hf_sha256(buf, n > 0 ? (size_t)n : 0, ret);
}

/* ---- the table: open addressing over keys that are already uniform hashes ---- */

typedef struct Slot {
        HfId key;
        int64_t sec;
        uint8_t state; /* 0 empty, 1 present, 2 deleted (tombstone) */
} Slot;

struct HfReceiptLog {
        int fd;
        pthread_mutex_t lock;
        uint64_t seq;
        HfId head;
        Slot *slots;
        size_t cap, used; /* used counts present and tombstones */
        unsigned broken;  /* chain breaks seen while loading */
};

static Slot *table_find(HfReceiptLog *l, const HfId *key, bool for_insert)
{
        size_t mask = l->cap - 1, i = hf_id_hash(key) & mask;
        Slot *tomb = NULL;

        for (;;) {
                Slot *s = &l->slots[i];
                if (s->state == 0)
                        return for_insert && tomb ? tomb : s;
                if (s->state == 2) {
                        if (!tomb)
                                tomb = s;
                } else if (hf_id_eq(&s->key, key))
                        return s;
                i = (i + 1) & mask;
        }
}

static int table_grow(HfReceiptLog *l)
{
        Slot *old = l->slots;
        size_t oldcap = l->cap, ncap = l->cap ? l->cap * 2 : 4096;

        l->slots = calloc(ncap, sizeof(Slot));
        if (!l->slots) {
                l->slots = old;
                return -ENOMEM;
        }
        l->cap = ncap;
        l->used = 0;
        for (size_t i = 0; i < oldcap; i++)
                if (old[i].state == 1) {
                        *table_find(l, &old[i].key, true) = old[i];
                        l->used++;
                }
        free(old);
        return 0;
}

static int table_set(HfReceiptLog *l, const HfId *key, bool present, int64_t sec)
{
        Slot *s;

        if ((l->used + 1) * 10 >= l->cap * 7) {
                int r = table_grow(l);
                if (r < 0)
                        return r;
        }
        s = table_find(l, key, true);
        if (present) {
                if (s->state != 1 && s->state != 2)
                        l->used++;
                *s = (Slot){ .key = *key, .sec = sec, .state = 1 };
        } else if (s->state == 1)
                s->state = 2;
        return 0;
}

typedef struct LoadState {
        HfReceiptLog *l;
        uint64_t good_end; /* file offset after the last complete line */
        uint64_t offset;
        bool torn;
} LoadState;

static int load_line(void *userdata, const char *line, size_t n, uint64_t lineno, bool torn)
{
        LoadState *st = userdata;
        HfReceiptLog *l = st->l;
        HfReceipt r;
        HfId key;

        if (torn) {
                st->torn = true;
                return 0;
        }
        if (n == SIZE_MAX) {
                /* Over-long: cannot be ours. Count it; its bytes are unknown here. */
                l->broken++;
                return -EPROTO;
        }
        st->offset += n + 1;
        st->good_end = st->offset;
        if (hf_receipt_parse(line, n, &r) < 0 || r.seq != l->seq + 1 ||
            !hf_id_eq(&r.prev, &l->head)) {
                if (l->broken++ == 0)
                        log_error("receipt log line %llu: the hash chain is broken (edited, "
                                  "removed or reordered records); run \"holdfast serve "
                                  "--verify\"",
                                  (unsigned long long)lineno);
                if (hf_receipt_parse(line, n, &r) < 0) {
                        hf_sha256(line, n, &l->head);
                        l->seq++;
                        return 0;
                }
        }
        hf_sha256(line, n, &l->head);
        l->seq = r.seq;
        hf_receipt_key(r.repo, r.type, r.name, &key);
        return table_set(l, &key, r.op != HF_RECEIPT_DELETE, r.time.sec);
}

int hf_receipt_log_open(int statefd, HfReceiptLog **ret)
{
        _cleanup_(hf_receipt_log_freep) HfReceiptLog *l = calloc(1, sizeof(*l));
        LoadState st = { 0 };
        int r;

        if (!l)
                return -ENOMEM;
        l->fd = -1;
        pthread_mutex_init(&l->lock, NULL);
        r = table_grow(l);
        if (r < 0)
                return r;
        l->fd = openat(statefd, HF_RECEIPT_LOG,
                       O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (l->fd < 0)
                return log_error_errno(errno, "%s/%s: cannot open: %m", HF_SERVER_STATE_DIR,
                                       HF_RECEIPT_LOG);
        st.l = l;
        r = hf_read_lines(l->fd, load_line, &st);
        if (r == -EPROTO)
                return log_error_errno(r,
                                       "%s/%s: holds a line longer than %d bytes: not a "
                                       "receipt log; move it away to start a new one",
                                       HF_SERVER_STATE_DIR, HF_RECEIPT_LOG, HF_RECEIPT_LINE_MAX);
        if (r < 0)
                return log_error_errno(r, "%s/%s: cannot read: %m", HF_SERVER_STATE_DIR,
                                       HF_RECEIPT_LOG);
        if (st.torn) {
                log_warning("%s/%s: the last record was cut short by a crash; removing it (its "
                            "object, if stored, is adopted again)",
                            HF_SERVER_STATE_DIR, HF_RECEIPT_LOG);
                if (ftruncate(l->fd, (off_t)st.good_end) < 0 || fsync(l->fd) < 0)
                        return log_error_errno(errno, "%s/%s: cannot truncate: %m",
                                               HF_SERVER_STATE_DIR, HF_RECEIPT_LOG);
        }
        *ret = TAKE_PTR(l);
        return 0;
}

HfReceiptLog *hf_receipt_log_free(HfReceiptLog *l)
{
        if (!l)
                return NULL;
        if (l->fd >= 0)
                close(l->fd);
        pthread_mutex_destroy(&l->lock);
        free(l->slots);
        free(l);
        return NULL;
}

int hf_receipt_log_append(HfReceiptLog *l, HfReceiptOp op, const char *repo, HfFileType t,
                          const char *name, uint64_t size, const HfId *sha, const char *user,
                          HfTime *ret_time)
{
        _cleanup_buf_ HfBuf line = HF_BUF_INIT(HF_RECEIPT_LINE_MAX + 1);
        HfReceipt rec = {
                .op = op,
                .type = t,
                .size = size,
                .sha256 = *sha,
        };
        struct timespec ts;
        HfId key;
        int r;

        if (strlen(repo) >= sizeof(rec.repo) || strlen(name) >= sizeof(rec.name))
                return -EINVAL;
        memcpy(rec.repo, repo, strlen(repo) + 1);
        memcpy(rec.name, name, strlen(name) + 1);
        (void)snprintf(rec.user, sizeof(rec.user), "%s", user ? user : "");
        hf_receipt_key(repo, t, name, &key);

        pthread_mutex_lock(&l->lock);
        (void)clock_gettime(CLOCK_REALTIME, &ts);
        rec.time = (HfTime){ .sec = ts.tv_sec, .nsec = (int32_t)ts.tv_nsec, .off = 0 };
        rec.seq = l->seq + 1;
        rec.prev = l->head;
        r = hf_receipt_format(&rec, &line);
        if (r >= 0)
                r = hf_buf_putc(&line, '\n');
        if (r >= 0)
                r = hf_write_all(l->fd, line.data, line.len);
        if (r >= 0) {
                l->seq = rec.seq;
                hf_sha256(line.data, line.len - 1, &l->head);
                r = table_set(l, &key, op != HF_RECEIPT_DELETE, rec.time.sec);
        }
        pthread_mutex_unlock(&l->lock);
        if (r < 0)
                return r;
        /* Outside the lock: concurrent uploads share one flush of the journal. */
        if (fdatasync(l->fd) < 0)
                return -errno;
        if (ret_time)
                *ret_time = rec.time;
        return 0;
}

int hf_receipt_log_lookup(HfReceiptLog *l, const char *repo, HfFileType t, const char *name,
                          int64_t *ret_sec)
{
        HfId key;
        Slot *s;
        int r = -ENOENT;

        hf_receipt_key(repo, t, name, &key);
        pthread_mutex_lock(&l->lock);
        s = table_find(l, &key, false);
        if (s->state == 1) {
                *ret_sec = s->sec;
                r = 0;
        }
        pthread_mutex_unlock(&l->lock);
        return r;
}

void hf_receipt_log_head(HfReceiptLog *l, uint64_t *ret_seq, HfId *ret_head)
{
        pthread_mutex_lock(&l->lock);
        *ret_seq = l->seq;
        *ret_head = l->head;
        pthread_mutex_unlock(&l->lock);
}
