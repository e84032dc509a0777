/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * holdfast check: index files, pack headers against the index, every snapshot's trees and the
 * data blobs their files name; with read_data also every pack's hash and every blob's MAC and
 * hash.
 *
 * The index is loaded here, not through hf_repo_load_index: check must see exactly what the
 * index files say (that loader patches a broken index from pack headers, which would hide the
 * damage), and must keep every (blob, pack) pair the files list, where HfIndex keeps only the
 * first copy of each blob. Order: load indexes, check all packs, read all data (optional),
 * then check snapshots, trees and blobs last, so that a file whose blob sits in a missing or
 * damaged pack can be named.
 */

#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "../base/gojson.h"
#include "../base/log.h"
#include "../base/queue.h"
#include "../repo/pack.h"
#include "progress.h"
#include "vault.h"

/* Index and snapshot files larger than this are not valid (restic keeps indexes near 8 MiB). */
#define UNPACKED_MAX (256u * 1024 * 1024)
/* The largest pack read whole: a full pack, one oversized blob and a full header. */
#define PACK_READ_MAX ((size_t)HF_PACK_SIZE_MAX + HF_BLOB_MAX_PLAIN + HF_PACK_HEADER_MAX)
/* "data/xx/" + 64 hex + NUL */
#define PACK_FILE_LEN (8 + HF_ID_HEX_LEN + 1)
#define MSG_MAX 8192

typedef struct Pack {
        HfId id;
        char file[PACK_FILE_LEN]; /* "data/xx/<id>", as errors name it */
        const char *hex;          /* points into file */
        uint64_t size;            /* as listed */
        bool listed;              /* the file exists */
        bool header_ok;
        size_t first, n_claims; /* its entries in Check.claims */
        uint32_t index_file;    /* 1 + position in Check.index_ids of an index listing it */
        size_t early;           /* 1 + its position in Check.early; 0 if not there */
        HfPackBlob *orphan;     /* header of a pack no index lists */
        size_t n_orphan;
        /* Blobs of this unreferenced pack that snapshots use, and the first such use. */
        uint64_t orphan_uses;
        HfId use_blob;
        uint8_t use_type;
        char *use_path;
        char use_snap[16 + HF_ID_HEX_LEN];
} Pack;

/* A set of IDs (open addressing; the zero ID marks an empty slot and is never added). */
typedef struct IdSet {
        HfId *slots;
        size_t mask, count;
} IdSet;

typedef struct Dir {
        HfId id;
        char *path; /* "" for the root, else "/a/b" */
} Dir;

typedef struct Stack {
        Dir *v;
        size_t n, cap;
} Stack;

typedef enum Job {
        JOB_HEADER,
        JOB_READ,
} Job;

typedef struct Check Check;

/* A thread beside the main one: the lock's second look, the early walk, the early read. */
typedef struct Beside {
        Check *c;
        pthread_t thread;
        bool started;
        int r;
} Beside;

static int start_beside(Check *c, Beside *b, void *(*fn)(void *));
static int join_beside(Beside *b);

/* What check prints, kept for later: stdout and stderr apart. */
typedef struct Held {
        HfBuf out, err;
        bool overflow; /* lost some: the buffers' ceiling was reached */
} Held;

#define HELD_MAX (1u << 20)

typedef enum LockState {
        LOCK_NONE,    /* confirmed, or none taken: output goes out */
        LOCK_PENDING, /* output is held */
        LOCK_FAILED,  /* output is dropped: check stops */
} LockState;

/*
 * read_data: a pack of the listing made before the index is loaded, for the early read
 * (start_early_read). state: EARLY_WAITING until the early read has read it.
 */
typedef struct EarlyPack {
        HfId id;
        uint64_t size;
        atomic_uchar state;
} EarlyPack;

enum {
        EARLY_WAITING, /* not read early (read_data takes it) */
        EARLY_OK,      /* read early, no problem found */
        EARLY_FAILED,  /* read early, a problem found: to be read again */
};

/* read_data: a blob decrypted into Worker.plain, waiting for its hash. */
typedef struct PendingBlob {
        HfPackBlob b;
        size_t off, len;
} PendingBlob;

/*
 * Blobs are hashed in batches (hf_sha256_many() hashes several at once): up to PENDING_MAX
 * plaintexts, or PENDING_BYTES of them, or as many as the largest blob met so far. Not as many
 * as Worker.plain could hold: it grows by doubling, and a batch as large as it is would put
 * up to twice the largest blob in memory.
 */
#define PENDING_MAX 64
#define PENDING_BYTES (1u << 20)

typedef struct Worker {
        Check *c;
        pthread_t thread;
        Job job;
        HfCodec *codec;
        HfCipher *cipher;
        HfBuf pack;  /* read_data: the whole pack */
        HfBuf plain; /* plaintexts waiting for their hash, or a decrypted header */
        PendingBlob pending[PENDING_MAX];
        size_t n_pending;
        size_t batch_max; /* bytes of plain a batch may fill */
        bool quiet;       /* the early read (EarlyPack): problems are not reported, but */
        bool failed;      /* set, and the pack is read again once the index is loaded */
} Worker;

struct Check {
        HfRepo *repo;
        HfBackend *backend;
        const HfCheckOptions *opts;
        const HfOutput *out;
        int version;
        HfCodec *codec; /* the main thread's */

        HfId *index_ids;
        size_t n_index_ids;
        HfIndex *index;       /* first copy of every blob; its pack table numbers the packs */
        HfIndexEntry *claims; /* every (blob, pack) pair of the index files, by pack, offset */
        size_t n_claims, cap_claims;
        uint32_t *pack_index_file; /* by pack position, while loading */
        size_t cap_pack_index_file;
        Pack *packs;
        size_t n_packs, n_listed, n_unreferenced;
        HfIndex *orphans;     /* blobs of unreferenced packs (pack = position) */
        HfIndex *bad;         /* indexed copies that readers cannot use: missing or damaged */
        pthread_mutex_t lock; /* guards bad, orphans_used and the packs' use_* fields */

        HfId *snap_ids;
        size_t n_snaps;
        uint64_t snapshots;
        IdSet trees;        /* visited; guarded by walk_lock */
        IdSet orphans_used; /* blobs counted in Pack.orphan_uses */

        /* The tree walk, one snapshot at a time: folders waiting, and workers on one. Walkers
         * wait on walk_cond for folders (idle of them), the main thread on walk_end for a
         * snapshot's end. */
        pthread_mutex_t walk_lock;
        pthread_cond_t walk_cond, walk_end;
        Stack todo;
        unsigned busy, idle;
        bool walk_done;
        const char *walk_snap;

        Worker *workers;
        unsigned n_workers;
        HfQueue *queue;
        HfProgress *progress;

        /*
         * Output that may not be shown yet (guarded by hf_out_lock): until the lock is
         * confirmed (the pack phases overlap the lock protocol's pause), and the early walk's
         * until the packs are read (it runs while they are read, and counts only if no blob
         * turned out damaged).
         */
        Held lock_held, walk_held;
        uint64_t walk_errors; /* reported by the early walk, held in walk_held */
        Worker *walkers;      /* the early walk's, with codecs of their own */
        unsigned n_walkers;   /* of them with a codec */
        LockState lock_state;
        bool walk_early;        /* the walk runs while the packs are read */
        atomic_bool early_stop; /* read_data has begun: the early read takes no more */

        /* The early read: packs taken in order (early_next) by it and, once the index is
         * loaded, by read_data, which sets early_stop. */
        EarlyPack *early;
        size_t n_early;
        atomic_size_t early_next;
        Worker *early_worker;
        atomic_uint_fast64_t early_bytes, early_files; /* read by it, no problem found */

        atomic_uint_fast64_t errors, data_read;
        atomic_int fatal; /* a negative errno that stops the check (out of memory) */
        const char *phase_name;
        double phase_start;
};

/* ---------------------------------------------------------------------------------------- */
/* Output */

static void report(Check *c, const char *file, const HfId *blob, const char *fmt, ...)
        _printf_(4, 5);

/* Set in the threads of the early walk: what they print is held in walk_held. */
static __thread bool in_early_walk;

/*
 * Writes n bytes to f (stdout or stderr), or holds them (see Check.lock_state). Called with
 * hf_out_lock held. A full lock_held waits for the lock's second look, which comes within a
 * fraction of a second.
 */
static void emit(Check *c, FILE *f, const void *p, size_t n)
{
        Held *h = in_early_walk ? &c->walk_held : NULL;

        if (n == 0)
                return;
        while (!h && c->lock_state == LOCK_PENDING) {
                HfBuf *b = f == stdout ? &c->lock_held.out : &c->lock_held.err;
                if (hf_buf_append(b, p, n) >= 0)
                        return;
                hf_out_unlock();
                (void)nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
                hf_out_lock();
        }
        if (!h && c->lock_state == LOCK_FAILED)
                return;
        if (h) {
                if (hf_buf_append(f == stdout ? &h->out : &h->err, p, n) < 0)
                        h->overflow = true;
                return;
        }
        (void)fwrite(p, 1, n, f);
        fflush(f);
}

/* Writes out what h holds and empties it (hf_out_lock held). */
static void release_held(Check *c, Held *h)
{
        emit(c, stdout, h->out.data, h->out.len);
        emit(c, stderr, h->err.data, h->err.len);
        hf_buf_free(&h->out);
        hf_buf_free(&h->err);
        h->out = HF_BUF_INIT(HELD_MAX);
        h->err = HF_BUF_INIT(HELD_MAX);
        h->overflow = false;
}

/* One integrity error: a JSON line on stdout with json set, else one line on stderr. */
static void report(Check *c, const char *file, const HfId *blob, const char *fmt, ...)
{
        char msg[MSG_MAX], hex[HF_ID_HEX_LEN + 1] = "";
        HfBuf b = HF_BUF_INIT(4 * MSG_MAX);
        va_list ap;
        int r;

        va_start(ap, fmt);
        (void)vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (blob)
                hf_id_hex(blob, hex);

        if (c->out->json) {
                r = hf_buf_puts(&b, "{\"message_type\":\"error\",\"file\":");
                if (r >= 0)
                        r = hf_json_put_string(&b, file, strlen(file));
                if (r >= 0)
                        r = hf_buf_printf(&b, ",\"blob\":\"%s\",\"message\":", hex);
                if (r >= 0)
                        r = hf_json_put_string(&b, msg, strlen(msg));
                if (r >= 0)
                        r = hf_buf_puts(&b, "}\n");
        } else
                r = hf_buf_printf(&b, "%sholdfast: %s: %s%s%s%s\n",
                                  c->out->progress ? "\r\033[K" : "", file, blob ? "blob " : "",
                                  hex, blob ? ": " : "", msg);
        hf_out_lock();
        if (in_early_walk)
                c->walk_errors++;
        else
                atomic_fetch_add(&c->errors, 1);
        if (r >= 0)
                emit(c, c->out->json ? stdout : stderr, b.data, b.len);
        else
                c->walk_held.overflow = c->walk_held.overflow || in_early_walk;
        hf_out_unlock();
        hf_buf_free(&b);
}

static void note(Check *c, const char *fmt, ...) _printf_(2, 3);

/* Something worth knowing that is not an integrity error (stderr, not with --quiet). */
static void note(Check *c, const char *fmt, ...)
{
        HfBuf b = HF_BUF_INIT(MSG_MAX);
        va_list ap;
        int r;

        if (c->out->quiet)
                return;
        r = hf_buf_puts(&b, "holdfast: ");
        va_start(ap, fmt);
        if (r >= 0)
                r = hf_buf_vprintf(&b, fmt, ap);
        va_end(ap);
        if (r >= 0)
                r = hf_buf_putc(&b, '\n');
        hf_out_lock();
        if (r >= 0)
                emit(c, stderr, b.data, b.len);
        hf_out_unlock();
        hf_buf_free(&b);
}

/* restic's narrative of the phases (and, with -vv, how long the previous one took). */
static void phase(Check *c, const char *what)
{
        double now = hf_now_mono();

        if (c->phase_name)
                log_debug("%s: %.3f s", c->phase_name, now - c->phase_start);
        c->phase_name = what;
        c->phase_start = now;
        if (c->out->quiet || !what)
                return;
        hf_out_lock();
        emit(c, stderr, what, strlen(what));
        emit(c, stderr, "\n", 1);
        hf_out_unlock();
}

static void set_fatal(Check *c, int r)
{
        int expected = 0;

        (void)atomic_compare_exchange_strong(&c->fatal, &expected, r);
}

static const char *blob_kind(uint8_t type)
{
        return type == HF_BLOB_TREE ? "tree" : "data";
}

static int cmp_id(const void *a, const void *b)
{
        return hf_id_cmp(a, b);
}

/* ---------------------------------------------------------------------------------------- */
/* ID set */

static int idset_add(IdSet *s, const HfId *id)
{
        size_t i;

        if ((s->count + 1) * 4 > (s->mask + 1) * 3 || !s->slots) {
                size_t nmask = s->slots ? s->mask * 2 + 1 : 1023;
                HfId *ns = calloc(nmask + 1, sizeof(HfId));

                if (!ns)
                        return -ENOMEM;
                for (size_t k = 0; s->slots && k <= s->mask; k++) {
                        if (hf_id_is_zero(&s->slots[k]))
                                continue;
                        for (i = hf_id_hash(&s->slots[k]) & nmask; !hf_id_is_zero(&ns[i]);
                             i = (i + 1) & nmask)
                                ;
                        ns[i] = s->slots[k];
                }
                free(s->slots);
                s->slots = ns;
                s->mask = nmask;
        }
        for (i = hf_id_hash(id) & s->mask; !hf_id_is_zero(&s->slots[i]); i = (i + 1) & s->mask)
                if (hf_id_eq(&s->slots[i], id))
                        return 0;
        s->slots[i] = *id;
        s->count++;
        return 1;
}

/* ---------------------------------------------------------------------------------------- */
/* Unpacked files: index and snapshots */

/*
 * Loads, verifies (name = hash of the bytes) and decodes an index or snapshot file into out,
 * reporting any problem with the file's name. Returns < 0 when the file is unusable;
 * -ENOMEM is the caller's to treat as fatal.
 */
static int load_unpacked(Check *c, HfFileType t, const HfId *id, const char *file, HfBuf *out)
{
        _cleanup_buf_ HfBuf enc = HF_BUF_INIT(UNPACKED_MAX + HF_CRYPTO_OVERHEAD + 1);
        char hex[HF_ID_HEX_LEN + 1];
        HfId got;
        int r;

        hf_id_hex(id, hex);
        r = hf_backend_load(c->backend, t, hex, 0, 0, &enc);
        if (r == -ENOMEM)
                return r;
        if (r == -E2BIG) {
                report(c, file, NULL, "file is larger than %u MiB, which no valid %s file is",
                       UNPACKED_MAX >> 20, hf_file_type_name(t));
                return r;
        }
        if (r < 0) {
                report(c, file, NULL, "cannot read the file: %s", strerror(-r));
                return r;
        }
        hf_sha256(enc.data, enc.len, &got);
        if (!hf_id_eq(&got, id)) {
                report(c, file, NULL,
                       "file is damaged: its %zu bytes do not hash to its name (truncated or "
                       "altered)",
                       enc.len);
                return -EBADMSG;
        }
        r = hf_codec_open_file(c->codec, c->version, enc.data, enc.len, UNPACKED_MAX, out);
        if (r == -ENOMEM)
                return r;
        if (r == -EBADMSG)
                report(c, file, NULL, "file does not decrypt with this vault's key (MAC mismatch)");
        else if (r < 0)
                report(c, file, NULL,
                       "file decrypts, but its content is neither JSON nor a valid zstd stream "
                       "(%s)",
                       strerror(-r));
        return r;
}

/* ---------------------------------------------------------------------------------------- */
/* Load indexes */

static int note_index_file(Check *c, uint32_t pos, uint32_t file)
{
        if (pos >= c->cap_pack_index_file) {
                size_t ncap = MAX((size_t)pos + 1, c->cap_pack_index_file * 2);
                uint32_t *nv = realloc(c->pack_index_file, ncap * sizeof(uint32_t));

                if (!nv)
                        return -ENOMEM;
                memset(nv + c->cap_pack_index_file, 0,
                       (ncap - c->cap_pack_index_file) * sizeof(uint32_t));
                c->pack_index_file = nv;
                c->cap_pack_index_file = ncap;
        }
        if (!c->pack_index_file[pos])
                c->pack_index_file[pos] = file;
        return 0;
}

typedef struct Merge {
        Check *c;
        const uint32_t *map; /* pack position in the file's index -> position in Check.index */
} Merge;

static int merge_entry(void *ud, const HfIndexEntry *e)
{
        Merge *m = ud;
        Check *c = m->c;
        HfIndexEntry g = *e;
        int r;

        g.pack = m->map[e->pack];
        if (c->n_claims == c->cap_claims) {
                size_t ncap = c->cap_claims ? c->cap_claims * 2 : 4096;
                HfIndexEntry *nv = realloc(c->claims, ncap * sizeof(HfIndexEntry));

                if (!nv)
                        return -ENOMEM;
                c->claims = nv;
                c->cap_claims = ncap;
        }
        c->claims[c->n_claims++] = g;
        r = hf_index_add(c->index, &g);
        return r < 0 ? r : 0;
}

/* Adds what one index file says to the check's index and claims. */
static int merge_index(Check *c, const HfIndex *tmp, uint32_t file)
{
        size_t n = hf_index_n_packs(tmp);
        _cleanup_free_ uint32_t *map = calloc(MAX(n, (size_t)1), sizeof(uint32_t));
        Merge m = { .c = c, .map = map };
        int r;

        if (!map)
                return -ENOMEM;
        /* Room for all of the file's entries at once, in the index and in the claims. */
        r = hf_index_reserve(c->index, hf_index_count(c->index) + hf_index_count(tmp));
        if (r >= 0)
                r = hf_reserve((void **)&c->claims, &c->cap_claims,
                               c->n_claims + hf_index_count(tmp), sizeof(HfIndexEntry));
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                r = hf_index_add_pack(c->index, hf_index_pack_id(tmp, (uint32_t)i), &map[i]);
                if (r >= 0)
                        r = note_index_file(c, map[i], file);
                if (r < 0)
                        return r;
        }
        return hf_index_foreach(tmp, merge_entry, &m);
}

static int load_indexes(Check *c)
{
        int r;

        r = hf_repo_list_ids(c->repo, HF_FILE_INDEX, &c->index_ids, &c->n_index_ids);
        if (r < 0)
                return log_error_errno(r, "%s/index: cannot list the index files: %m",
                                       c->backend->location);
        if (c->n_index_ids > 1)
                qsort(c->index_ids, c->n_index_ids, sizeof(HfId), cmp_id);

        /* One buffer for every file, as in hf_repo_load_index(). */
        _cleanup_buf_ HfBuf json = HF_BUF_INIT(UNPACKED_MAX);
        json.hint_huge = true;
        for (size_t i = 0; i < c->n_index_ids; i++) {
                _cleanup_buf_ HfBuf err = HF_BUF_INIT(512);
                _cleanup_(hf_index_freep) HfIndex *tmp = NULL;
                char hex[HF_ID_HEX_LEN + 1], file[16 + HF_ID_HEX_LEN];

                hf_buf_reset(&json);
                hf_id_hex(&c->index_ids[i], hex);
                (void)snprintf(file, sizeof(file), "index/%s", hex);
                r = load_unpacked(c, HF_FILE_INDEX, &c->index_ids[i], file, &json);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        continue;
                /* A file of its own first: a malformed one then adds nothing, as in restic. */
                r = hf_index_new(&tmp);
                if (r < 0)
                        return r;
                r = hf_index_parse(tmp, json.data, json.len, &err);
                if (r == -EPROTO) {
                        report(c, file, NULL, "malformed index: %s; none of its entries are used",
                               err.len ? (char *)err.data : "unknown problem");
                        continue;
                }
                if (r < 0)
                        return r;
                r = merge_index(c, tmp, (uint32_t)i + 1);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* The pack table */

typedef struct Listed {
        uint32_t *pos;
        uint64_t *size;
        size_t n, cap;
        Check *c;
} Listed;

static int list_pack(void *ud, const char *name, uint64_t size)
{
        Listed *l = ud;
        uint32_t pos;
        HfId id;
        int r;

        if (hf_id_parse(name, strlen(name), &id) < 0)
                return 0;
        r = hf_index_add_pack(l->c->index, &id, &pos);
        if (r < 0)
                return r;
        if (l->n == l->cap) {
                size_t ncap = l->cap ? l->cap * 2 : 1024;
                uint32_t *np = realloc(l->pos, ncap * sizeof(uint32_t));
                uint64_t *ns;

                if (!np)
                        return -ENOMEM;
                l->pos = np;
                ns = realloc(l->size, ncap * sizeof(uint64_t));
                if (!ns)
                        return -ENOMEM;
                l->size = ns;
                l->cap = ncap;
        }
        l->pos[l->n] = pos;
        l->size[l->n++] = size;
        return 0;
}

static int cmp_claim(const void *a, const void *b)
{
        const HfIndexEntry *x = a, *y = b;
        int k;

        if (x->pack != y->pack)
                return x->pack < y->pack ? -1 : 1;
        if (x->offset != y->offset)
                return x->offset < y->offset ? -1 : 1;
        if (x->type != y->type)
                return x->type < y->type ? -1 : 1;
        k = hf_id_cmp(&x->id, &y->id);
        if (k)
                return k;
        if (x->length != y->length)
                return x->length < y->length ? -1 : 1;
        if (x->uncompressed_length != y->uncompressed_length)
                return x->uncompressed_length < y->uncompressed_length ? -1 : 1;
        return 0;
}

static void pack_name(Pack *p, const HfId *id)
{
        char hex[HF_ID_HEX_LEN + 1];

        p->id = *id;
        hf_id_hex(id, hex);
        (void)snprintf(p->file, sizeof(p->file), "data/%.2s/%s", hex, hex);
        p->hex = p->file + 8;
}

/* Lists the pack files and builds the pack table: indexed packs first, then the others. */
static int build_packs(Check *c)
{
        Listed l = { .c = c };
        size_t j = 0;
        int r;

        r = hf_backend_list(c->backend, HF_FILE_PACK, list_pack, &l);
        if (r < 0) {
                log_error_errno(r, "%s/data: cannot list the pack files: %m", c->backend->location);
                goto out;
        }
        c->n_packs = hf_index_n_packs(c->index);
        c->packs = calloc(MAX(c->n_packs, (size_t)1), sizeof(Pack));
        if (!c->packs) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < c->n_packs; i++) {
                Pack *p = &c->packs[i];

                pack_name(p, hf_index_pack_id(c->index, (uint32_t)i));
                if (i < c->cap_pack_index_file)
                        p->index_file = c->pack_index_file[i];
        }
        for (size_t i = 0; i < l.n; i++) {
                Pack *p = &c->packs[l.pos[i]];
                if (!p->listed)
                        c->n_listed++;
                p->listed = true;
                p->size = l.size[i];
        }

        /* Claims by pack and offset; the same pack in two index files is listed once. */
        if (c->n_claims)
                qsort(c->claims, c->n_claims, sizeof(HfIndexEntry), cmp_claim);
        for (size_t i = 0; i < c->n_claims; i++)
                if (j == 0 || cmp_claim(&c->claims[j - 1], &c->claims[i]) != 0)
                        c->claims[j++] = c->claims[i];
        c->n_claims = j;
        for (size_t i = 0; i < c->n_claims; i++) {
                Pack *p = &c->packs[c->claims[i].pack];
                if (p->n_claims++ == 0)
                        p->first = i;
        }
        r = 0;
out:
        free(l.pos);
        free(l.size);
        return r;
}

/* Marks the copy of a blob that readers use as unusable, when e is that copy. */
static int mark_bad(Check *c, const HfIndexEntry *e)
{
        const HfIndexEntry *m = hf_index_lookup(c->index, e->type, &e->id);
        int r = 0;

        if (!m || m->pack != e->pack || m->offset != e->offset)
                return 0;
        pthread_mutex_lock(&c->lock);
        r = hf_index_add(c->bad, m);
        pthread_mutex_unlock(&c->lock);
        if (r < 0)
                set_fatal(c, r);
        return r;
}

static void mark_pack_bad(Check *c, const Pack *p)
{
        for (size_t i = 0; i < p->n_claims; i++)
                (void)mark_bad(c, &c->claims[p->first + i]);
}

/* What the index expects the pack file's size to be (its blobs, header and length field). */
static uint64_t expected_size(const Check *c, const Pack *p)
{
        uint64_t end = 0, header = HF_CRYPTO_OVERHEAD + 4;

        for (size_t i = 0; i < p->n_claims; i++) {
                const HfIndexEntry *e = &c->claims[p->first + i];
                end = MAX(end, (uint64_t)e->offset + e->length);
                header += e->uncompressed_length ? HF_PACK_ENTRY_COMPRESSED : HF_PACK_ENTRY_PLAIN;
        }
        return end + header;
}

/* ---------------------------------------------------------------------------------------- */
/* Check all packs: headers against the index */

static int cmp_pack_blob(const void *a, const void *b)
{
        const HfPackBlob *x = a, *y = b;
        int k;

        if (x->type != y->type)
                return x->type < y->type ? -1 : 1;
        k = hf_id_cmp(&x->id, &y->id);
        if (k)
                return k;
        return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* The header entry for (type, id), preferring one at offset; NULL when there is none. */
static HfPackBlob *find_header_blob(HfPackBlob *v, size_t n, uint8_t type, const HfId *id,
                                    uint32_t offset)
{
        size_t lo = 0, hi = n;
        HfPackBlob *first = NULL;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int k = v[mid].type != type ? (v[mid].type < type ? -1 : 1)
                                            : hf_id_cmp(&v[mid].id, id);
                if (k < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        for (size_t i = lo; i < n && v[i].type == type && hf_id_eq(&v[i].id, id); i++) {
                if (v[i].offset == offset)
                        return &v[i];
                if (!first)
                        first = &v[i];
        }
        return first;
}

static void compare_header(Worker *w, Pack *p, const HfPackBlob *blobs, size_t n)
{
        Check *c = w->c;
        _cleanup_free_ HfPackBlob *v = malloc(MAX(n, (size_t)1) * sizeof(HfPackBlob));
        _cleanup_free_ bool *matched = calloc(MAX(n, (size_t)1), sizeof(bool));

        if (!v || !matched) {
                set_fatal(c, -ENOMEM);
                return;
        }
        if (n)
                memcpy(v, blobs, n * sizeof(HfPackBlob));
        if (n > 1)
                qsort(v, n, sizeof(HfPackBlob), cmp_pack_blob);

        for (size_t i = 0; i < p->n_claims; i++) {
                const HfIndexEntry *e = &c->claims[p->first + i];
                HfPackBlob *b = find_header_blob(v, n, e->type, &e->id, e->offset);

                if (!b) {
                        b = find_header_blob(v, n, (uint8_t)!e->type, &e->id, e->offset);
                        if (b) {
                                matched[b - v] = true;
                                report(c, p->file, &e->id,
                                       "the index says this is a %s blob, the pack header says "
                                       "%s",
                                       blob_kind(e->type), blob_kind(b->type));
                        } else
                                report(c, p->file, &e->id,
                                       "the index lists this %s blob in the pack (offset %u, "
                                       "length %u), but the pack header does not have it",
                                       blob_kind(e->type), e->offset, e->length);
                        (void)mark_bad(c, e);
                        continue;
                }
                matched[b - v] = true;
                if (b->offset != e->offset || b->length != e->length ||
                    b->uncompressed_length != e->uncompressed_length) {
                        report(c, p->file, &e->id,
                               "%s blob: the index says offset %u, length %u, uncompressed "
                               "length %u; the pack header says offset %u, length %u, "
                               "uncompressed length %u",
                               blob_kind(e->type), e->offset, e->length, e->uncompressed_length,
                               b->offset, b->length, b->uncompressed_length);
                        (void)mark_bad(c, e);
                }
        }
        for (size_t i = 0; i < n; i++) {
                const HfIndexEntry *m;

                if (c->version < 2 && v[i].uncompressed_length)
                        report(c, p->file, &v[i].id,
                               "%s blob is compressed, which a version 1 vault does not allow",
                               blob_kind(v[i].type));
                if (matched[i])
                        continue;
                /*
                 * Not claimed for this pack: fine when the index has the blob elsewhere (a
                 * duplicate; the index keeps one copy) or here at another offset (a blob
                 * stored twice in one pack).
                 */
                m = hf_index_lookup(c->index, v[i].type, &v[i].id);
                if (m)
                        continue;
                report(c, p->file, &v[i].id,
                       "%s blob is in the pack header (offset %u, length %u) but in no index",
                       blob_kind(v[i].type), v[i].offset, v[i].length);
        }
}

static void check_header(Worker *w, Pack *p)
{
        Check *c = w->c;
        _cleanup_free_ HfPackBlob *blobs = NULL;
        _cleanup_buf_ HfBuf err = HF_BUF_INIT(256);
        size_t n = 0;
        int r;

        r = hf_pack_read_header(c->backend, w->cipher, p->hex, p->size, &blobs, &n, &err);
        if (r == -ENOMEM) {
                set_fatal(c, r);
                return;
        }
        if (r < 0) {
                const char *why = err.len ? (const char *)err.data : strerror(-r);
                uint64_t want;

                if (p->n_claims == 0)
                        return; /* noted with the unreferenced packs */
                want = expected_size(c, p);
                if (want != p->size)
                        report(c, p->file, NULL,
                               "%s; the file is %llu bytes, the index expects %llu (%s)", why,
                               (unsigned long long)p->size, (unsigned long long)want,
                               p->size < want ? "truncated" : "data appended or altered");
                else
                        report(c, p->file, NULL, "%s (the file has the size the index expects)",
                               why);
                return;
        }
        p->header_ok = true;
        if (p->n_claims == 0) {
                p->orphan = TAKE_PTR(blobs);
                p->n_orphan = n;
                return;
        }
        compare_header(w, p, blobs, n);
}

/* ---------------------------------------------------------------------------------------- */
/* Read all data */

/*
 * In the early read (w->quiet) a problem is not reported, and nothing is marked: the index is
 * still loading. The pack is read again, reporting, once it is loaded.
 */
static bool hush(Worker *w)
{
        if (!w->quiet)
                return false;
        w->failed = true;
        return true;
}

static HfIndexEntry blob_entry(const Check *c, const Pack *p, const HfPackBlob *b)
{
        return (HfIndexEntry){
                .id = b->id,
                .pack = (uint32_t)(p - c->packs),
                .offset = b->offset,
                .length = b->length,
                .uncompressed_length = b->uncompressed_length,
                .type = b->type,
        };
}

/* Hashes the plaintexts waiting in w->plain, all at once, and reports those that do not hash
 * to their ID. */
static void flush_blobs(Worker *w, Pack *p)
{
        Check *c = w->c;
        HfSha256Job jobs[PENDING_MAX];
        HfId got[PENDING_MAX];
        char hex[HF_ID_HEX_LEN + 1];

        for (size_t i = 0; i < w->n_pending; i++)
                jobs[i] = (HfSha256Job){ .data = w->plain.data + w->pending[i].off,
                                         .len = w->pending[i].len,
                                         .out = &got[i] };
        hf_sha256_many(jobs, w->n_pending);
        for (size_t i = 0; i < w->n_pending; i++) {
                const HfPackBlob *b = &w->pending[i].b;
                HfIndexEntry e;
                if (hf_id_eq(&got[i], &b->id) || hush(w))
                        continue;
                e = blob_entry(c, p, b);
                hf_id_hex(&got[i], hex);
                report(c, p->file, &b->id,
                       "%s blob at offset %u decrypts, but its content hashes to %.16s, not to "
                       "its ID",
                       blob_kind(b->type), b->offset, hex);
                (void)mark_bad(c, &e);
        }
        w->n_pending = 0;
        hf_buf_reset(&w->plain);
}

/* Decrypts (MAC) and decompresses a blob of pack p into w->plain; its hash is checked with the
 * next batch (flush_blobs). */
static void verify_blob(Worker *w, Pack *p, const HfPackBlob *b, uint64_t data_end, uint8_t *bytes)
{
        Check *c = w->c;
        HfIndexEntry e;
        size_t need, start;
        int r;

        if ((uint64_t)b->offset + b->length > data_end) {
                if (hush(w))
                        return;
                e = blob_entry(c, p, b);
                report(c, p->file, &b->id,
                       "%s blob lies beyond the end of the pack's data (offset %u, length %u, "
                       "data ends at %llu)",
                       blob_kind(b->type), b->offset, b->length, (unsigned long long)data_end);
                (void)mark_bad(c, &e);
                return;
        }
        need = b->uncompressed_length ? b->uncompressed_length
                                      : b->length - MIN(b->length, (uint32_t)HF_CRYPTO_OVERHEAD);
        w->batch_max = MAX(w->batch_max, MAX((size_t)PENDING_BYTES, need + 1));
        if (w->n_pending == PENDING_MAX ||
            (w->n_pending > 0 && w->plain.len + need + 1 > w->batch_max))
                flush_blobs(w, p);
        start = w->plain.len;
        /* In place: the bytes were already hashed for the pack's own check. */
        r = hf_codec_open_inplace(w->codec, bytes, b->length, b->uncompressed_length, &w->plain);
        if (r == -ENOMEM) {
                set_fatal(c, r);
                return;
        }
        if (r < 0) {
                if (hush(w))
                        return;
                if (r == -EBADMSG)
                        report(c, p->file, &b->id,
                               "%s blob at offset %u does not decrypt: MAC mismatch (its bytes "
                               "are damaged)",
                               blob_kind(b->type), b->offset);
                else
                        report(c, p->file, &b->id,
                               "%s blob at offset %u decrypts but does not decompress to %u "
                               "bytes: %s",
                               blob_kind(b->type), b->offset, b->uncompressed_length, strerror(-r));
                e = blob_entry(c, p, b);
                (void)mark_bad(c, &e);
                return;
        }
        w->pending[w->n_pending++] = (PendingBlob){ .b = *b,
                                                    .off = start,
                                                    .len = w->plain.len - start };
}

static int cmp_blob_offset(const void *x, const void *y)
{
        const HfPackBlob *a = x, *b = y;
        return a->offset < b->offset ? -1 : a->offset > b->offset ? 1 : 0;
}

/* Each reader keeps up to two blocks between packs: 1 MiB blocks put check's peak of memory
 * 2-3 MB higher, and took no less time for it. */
#define STREAM_BLOCK (256u * 1024)

/*
 * Reads the pack once, front to back, in blocks: every byte goes through the pack's SHA-256,
 * and each blob is verified as soon as its bytes are in. Memory is one blob plus one block,
 * not the whole pack.
 */
static void stream_pack(Worker *w, Pack *p)
{
        Check *c = w->c;
        _cleanup_free_ HfPackBlob *blobs = NULL;
        _cleanup_(hf_sha256_freep) HfSha256 *sha = NULL;
        char hex[HF_ID_HEX_LEN + 1];
        uint64_t data_end = 0, base = 0, pos = 0;
        uint8_t tail4[4];
        size_t n = 0;
        HfId got;
        int r;

        if (!w->quiet) /* the early read may run while c->progress is set up */
                hf_progress_set_item(c->progress, p->file);
        if (p->size > PACK_READ_MAX) {
                if (hush(w))
                        return;
                report(c, p->file, NULL, "pack is %llu bytes, larger than any valid pack: not read",
                       (unsigned long long)p->size);
                mark_pack_bad(c, p);
                return;
        }
        r = hf_sha256_new(&sha);
        if (r < 0) {
                set_fatal(c, r);
                return;
        }

        /* The header first (from the tail); without one, check what the index says. */
        r = -EPROTO;
        if (p->size >= 4 + HF_CRYPTO_OVERHEAD &&
            hf_backend_read_at(c->backend, HF_FILE_PACK, p->hex, p->size - 4, 4, tail4) >= 0) {
                uint32_t hlen = (uint32_t)tail4[0] | (uint32_t)tail4[1] << 8 |
                                (uint32_t)tail4[2] << 16 | (uint32_t)tail4[3] << 24;
                if (hlen >= HF_CRYPTO_OVERHEAD && hlen <= p->size - 4 &&
                    hlen <= HF_PACK_HEADER_MAX) {
                        hf_buf_reset(&w->pack);
                        r = hf_buf_reserve(&w->pack, (size_t)hlen + 4);
                        if (r >= 0)
                                r = hf_backend_read_at(c->backend, HF_FILE_PACK, p->hex,
                                                       p->size - 4 - hlen, (size_t)hlen + 4,
                                                       w->pack.data);
                        if (r >= 0) {
                                uint64_t dlen = 0;
                                hf_buf_reset(&w->plain);
                                r = hf_codec_decrypt(w->codec, w->pack.data, hlen, &w->plain);
                                if (r >= 0)
                                        r = hf_pack_parse_header(w->plain.data, w->plain.len,
                                                                 &blobs, &n, &dlen);
                                if (r >= 0 && dlen + hlen + 4 != p->size) {
                                        free(TAKE_PTR(blobs));
                                        r = -EPROTO;
                                }
                                data_end = dlen;
                        }
                }
        }
        if (r == -ENOMEM) {
                set_fatal(c, r);
                return;
        }
        if (r < 0) {
                if (hush(w))
                        return;
                data_end = p->size;
                n = p->n_claims;
                blobs = calloc(MAX(n, (size_t)1), sizeof(HfPackBlob));
                if (!blobs) {
                        set_fatal(c, -ENOMEM);
                        return;
                }
                for (size_t i = 0; i < n; i++) {
                        const HfIndexEntry *e = &c->claims[p->first + i];
                        blobs[i] = (HfPackBlob){
                                .id = e->id,
                                .type = e->type,
                                .offset = e->offset,
                                .length = e->length,
                                .uncompressed_length = e->uncompressed_length,
                        };
                }
                qsort(blobs, n, sizeof(*blobs), cmp_blob_offset);
        }

        /* Stream: w->pack holds the file's bytes [base, base + len); pos = base + len. */
        hf_buf_reset(&w->pack);
        for (size_t i = 0; i <= n && !atomic_load(&c->fatal); i++) {
                uint64_t want = i < n ? MIN((uint64_t)blobs[i].offset + blobs[i].length, p->size)
                                      : p->size;
                if (i < n && blobs[i].offset < base) {
                        if (hush(w))
                                return;
                        /* Overlapping claims (a malformed index): check this one apart. */
                        if ((uint64_t)blobs[i].offset + blobs[i].length <= p->size) {
                                _cleanup_buf_ HfBuf own = HF_BUF_INIT(HF_BLOB_MAX_PLAIN + 64);
                                if (hf_buf_reserve(&own, blobs[i].length) >= 0 &&
                                    hf_backend_read_at(c->backend, HF_FILE_PACK, p->hex,
                                                       blobs[i].offset, blobs[i].length,
                                                       own.data) >= 0)
                                        verify_blob(w, p, &blobs[i], data_end, own.data);
                        }
                        continue;
                }
                while (pos < want) {
                        size_t k = (size_t)MIN((uint64_t)STREAM_BLOCK, want - pos);
                        if (i < n && (uint64_t)blobs[i].offset > pos) {
                                /* Bytes before this blob (a gap): hashed, then dropped. */
                                k = (size_t)MIN((uint64_t)k, (uint64_t)blobs[i].offset - pos);
                        }
                        r = hf_buf_reserve(&w->pack, k);
                        if (r < 0) {
                                set_fatal(c, r);
                                return;
                        }
                        r = hf_backend_read_at(c->backend, HF_FILE_PACK, p->hex, pos, k,
                                               w->pack.data + w->pack.len);
                        if (r < 0) {
                                if (hush(w))
                                        return;
                                report(c, p->file, NULL, "cannot read the pack: %s",
                                       r == -ENODATA ? "it became shorter while being read"
                                                     : strerror(-r));
                                mark_pack_bad(c, p);
                                return;
                        }
                        hf_sha256_update(sha, w->pack.data + w->pack.len, k);
                        w->pack.len += k;
                        pos += k;
                        if (!w->quiet) {
                                atomic_fetch_add(&c->data_read, k);
                                hf_progress_add_bytes(c->progress, k);
                        }
                        if (i < n && pos <= blobs[i].offset) {
                                /* Only gap bytes so far: drop them. */
                                hf_buf_reset(&w->pack);
                                base = pos;
                        }
                }
                if (i == n)
                        break;
                if ((uint64_t)blobs[i].offset + blobs[i].length > p->size) {
                        verify_blob(w, p, &blobs[i], data_end, NULL);
                        continue;
                }
                verify_blob(w, p, &blobs[i], data_end, w->pack.data + (blobs[i].offset - base));
                /* Drop what is before the blob's end; keep any bytes read beyond it. */
                {
                        uint64_t endb = (uint64_t)blobs[i].offset + blobs[i].length;
                        size_t keep = (size_t)(base + w->pack.len - endb);
                        memmove(w->pack.data, w->pack.data + (endb - base), keep);
                        w->pack.len = keep;
                        base = endb;
                }
        }
        hf_buf_trim(&w->pack, 2 * STREAM_BLOCK);
        if (!w->quiet)
                hf_progress_add_files(c->progress, 1);
        flush_blobs(w, p);
        hf_sha256_final(sha, &got);
        if (!hf_id_eq(&got, &p->id) && !hush(w)) {
                hf_id_hex(&got, hex);
                report(c, p->file, NULL,
                       "pack is damaged: its content hashes to %.16s, not to its name", hex);
        }
}

static void read_pack(Worker *w, Pack *p)
{
        stream_pack(w, p);
        /* Blobs still waiting when the pack could not be read to its end. */
        if (w->n_pending > 0)
                flush_blobs(w, p);
}

/* ---------------------------------------------------------------------------------------- */
/* The worker pool */

static void *worker_main(void *arg)
{
        Worker *w = arg;
        Pack *p;

        while ((p = hf_queue_pop(w->c->queue))) {
                if (atomic_load(&w->c->fatal))
                        continue;
                if (w->job == JOB_HEADER)
                        check_header(w, p);
                else
                        read_pack(w, p);
        }
        return NULL;
}

static int start_workers(Check *c)
{
        unsigned n = c->opts->workers ? c->opts->workers : (unsigned)hf_ncpus();
        int r;

        c->workers = calloc(n, sizeof(Worker));
        if (!c->workers)
                return -ENOMEM;
        for (unsigned i = 0; i < n; i++) {
                Worker *w = &c->workers[i];

                w->c = c;
                hf_buf_init(&w->pack, PACK_READ_MAX);
                hf_buf_init(&w->plain, HF_BLOB_MAX_PLAIN + HF_PACK_HEADER_MAX);
                c->n_workers = i + 1;
                r = hf_repo_new_codec(c->repo, &w->codec);
                if (r >= 0)
                        r = hf_cipher_new(hf_repo_key(c->repo), &w->cipher);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void free_workers(Check *c)
{
        for (unsigned i = 0; i < c->n_workers; i++) {
                Worker *w = &c->workers[i];
                hf_codec_free(w->codec);
                hf_cipher_free(w->cipher);
                hf_buf_free(&w->pack);
                hf_buf_free(&w->plain);
        }
        free(c->workers);
        c->workers = NULL;
        c->n_workers = 0;
}

/* The packs run_pool hands out: every listed one, or those next() gives until NULL. */
typedef struct PackSource {
        Pack *(*next)(Check *c, void *ud);
        void *ud;
} PackSource;

/* Hands the packs of src (NULL: every existing one) to the workers for job, and waits. */
static int run_pool(Check *c, Job job, const PackSource *src)
{
        _cleanup_(hf_queue_freep) HfQueue *q = NULL;
        unsigned started = 0;
        int r;

        r = hf_queue_new((size_t)c->n_workers * 4, &q);
        if (r < 0)
                return r;
        c->queue = q;
        for (unsigned i = 0; i < c->n_workers; i++) {
                c->workers[i].job = job;
                if (pthread_create(&c->workers[i].thread, NULL, worker_main, &c->workers[i]) != 0)
                        break;
                started++;
        }
        if (started == 0) {
                c->queue = NULL;
                return log_error_errno(EAGAIN, "cannot start a worker thread");
        }
        if (src)
                for (Pack *p; r >= 0 && (p = src->next(c, src->ud));)
                        r = hf_queue_push(q, p);
        else
                for (size_t i = 0; i < c->n_packs && r >= 0; i++)
                        if (c->packs[i].listed)
                                r = hf_queue_push(q, &c->packs[i]);
        hf_queue_close(q);
        for (unsigned i = 0; i < started; i++)
                pthread_join(c->workers[i].thread, NULL);
        c->queue = NULL;
        if (r < 0)
                return r;
        return atomic_load(&c->fatal);
}

static int check_packs(Check *c)
{
        int r;

        for (size_t i = 0; i < c->n_packs; i++) {
                Pack *p = &c->packs[i];
                char hex[HF_ID_HEX_LEN + 1] = "";

                if (p->listed || p->n_claims == 0)
                        continue;
                if (p->index_file)
                        hf_id_hex(&c->index_ids[p->index_file - 1], hex);
                report(c, p->file, NULL,
                       "pack listed in the index is missing (index/%.16s places %zu blobs in it)",
                       hex, p->n_claims);
                mark_pack_bad(c, p);
        }
        r = run_pool(c, JOB_HEADER, NULL);
        if (r < 0)
                return r;

        /* Packs no index lists: leftovers, or the index that listed them is lost or broken. */
        for (size_t i = 0; i < c->n_packs; i++) {
                Pack *p = &c->packs[i];

                if (!p->listed || p->n_claims)
                        continue;
                c->n_unreferenced++;
                note(c, "%s: pack not referenced in any index%s", p->file,
                     p->header_ok ? "" : " (and its header cannot be read)");
                for (size_t j = 0; j < p->n_orphan; j++) {
                        HfIndexEntry e = {
                                .id = p->orphan[j].id,
                                .pack = (uint32_t)i,
                                .offset = p->orphan[j].offset,
                                .length = p->orphan[j].length,
                                .uncompressed_length = p->orphan[j].uncompressed_length,
                                .type = p->orphan[j].type,
                        };
                        r = hf_index_add(c->orphans, &e);
                        if (r < 0)
                                return r;
                }
        }
        if (c->n_unreferenced)
                note(c,
                     "%zu pack%s not referenced in any index: harmless leftovers (of an "
                     "interrupted backup, say) unless snapshots use their blobs, which is "
                     "reported below as an error",
                     c->n_unreferenced, c->n_unreferenced == 1 ? " is" : "s are");
        return 0;
}

static void free_early_worker(Check *c)
{
        Worker *w = c->early_worker;

        if (!w)
                return;
        hf_codec_free(w->codec);
        hf_buf_free(&w->pack);
        hf_buf_free(&w->plain);
        free(w);
        c->early_worker = NULL;
}

/* read_data's packs while the early read may still run: the ones it has not taken yet. */
static Pack *next_early(Check *c, void *ud)
{
        (void)ud;
        for (;;) {
                size_t k = atomic_fetch_add(&c->early_next, 1);
                uint32_t pos;

                if (k >= c->n_early)
                        return NULL;
                if (hf_index_find_pack(c->index, &c->early[k].id, &pos) >= 0 &&
                    c->packs[pos].early == k + 1)
                        return &c->packs[pos];
        }
}

/* Then the packs the early read did not cover: listed only now, or read again to report. */
static Pack *next_left(Check *c, void *ud)
{
        size_t *i = ud;

        for (; *i < c->n_packs; (*i)++) {
                Pack *p = &c->packs[*i];
                if (p->listed &&
                    (!p->early || atomic_load(&c->early[p->early - 1].state) == EARLY_FAILED)) {
                        (*i)++;
                        return p;
                }
        }
        return NULL;
}

static int read_data(Check *c, Beside *early)
{
        PackSource from_early = { .next = next_early };
        size_t left = 0;
        PackSource rest = { .next = next_left, .ud = &left };
        uint64_t total = 0;
        int r, k;

        for (size_t i = 0; i < c->n_packs; i++)
                if (c->packs[i].listed)
                        total += c->packs[i].size;
        r = hf_progress_new("check", c->out->progress, &c->progress);
        if (r < 0)
                return r;
        hf_progress_add_total(c->progress, c->n_listed, total);
        hf_progress_total_known(c->progress);
        if (!early->started) {
                r = run_pool(c, JOB_READ, NULL);
                goto out;
        }
        /* A pack read early counts if it is listed now with the size it had then. */
        for (size_t i = 0; i < c->n_early; i++) {
                uint32_t pos;
                if (hf_index_find_pack(c->index, &c->early[i].id, &pos) >= 0 &&
                    c->packs[pos].listed && c->packs[pos].size == c->early[i].size)
                        c->packs[pos].early = i + 1;
        }
        atomic_store(&c->early_stop, true);
        hf_progress_add_files(c->progress, atomic_load(&c->early_files));
        hf_progress_add_bytes(c->progress, atomic_load(&c->early_bytes));
        r = run_pool(c, JOB_READ, &from_early);
        k = join_beside(early);
        free_early_worker(c); /* check's peak of memory comes at its end */
        if (r >= 0)
                r = k;
        if (r >= 0)
                r = run_pool(c, JOB_READ, &rest);
out:
        c->progress = hf_progress_free(c->progress);
        return r;
}

/* ---------------------------------------------------------------------------------------- */
/* The early read */

/* Largest first: the last packs read, with a core waiting for them, are short ones. */
static int cmp_early(const void *a, const void *b)
{
        const EarlyPack *x = a, *y = b;

        if (x->size != y->size)
                return x->size > y->size ? -1 : 1;
        return hf_id_cmp(&x->id, &y->id);
}

static void *early_read_main(void *arg)
{
        Beside *b = arg;
        Check *c = b->c;
        Worker *w = c->early_worker;

        while (!atomic_load(&c->early_stop) && !atomic_load(&c->fatal)) {
                size_t k = atomic_fetch_add(&c->early_next, 1);
                Pack p = { 0 };

                if (k >= c->n_early)
                        break;
                pack_name(&p, &c->early[k].id);
                p.size = c->early[k].size;
                w->failed = false;
                read_pack(w, &p);
                if (!w->failed) {
                        atomic_fetch_add(&c->early_files, 1);
                        atomic_fetch_add(&c->early_bytes, p.size);
                        atomic_fetch_add(&c->data_read, p.size);
                }
                atomic_store(&c->early[k].state, w->failed ? EARLY_FAILED : EARLY_OK);
        }
        return NULL;
}

/*
 * With read_data, the other core need not wait while the index files load: the packs are
 * listed first and one thread reads them, largest first, verifying them as read_pack() does
 * but reporting nothing (nothing can be marked before the index is there). A pack with a
 * problem is read again once the index is loaded, to report it; so is one listed only then
 * (restic's order: the index first, then the packs, so that a pack a backup adds meanwhile is
 * never missing from a listing that came after its index). Without the early read (no thread,
 * no memory) the check goes on as before.
 */
static int start_early_read(Check *c, Beside *b)
{
        _cleanup_free_ HfId *ids = NULL;
        _cleanup_free_ uint64_t *sizes = NULL;
        size_t n = 0;
        Worker *w;
        int r;

        r = hf_repo_list_packs(c->repo, &ids, &sizes, &n);
        if (r < 0 || n == 0) /* build_packs lists them again, and says what fails */
                return r == -ENOMEM ? r : 0;
        c->early = calloc(n, sizeof(*c->early));
        if (!c->early)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                c->early[i].id = ids[i];
                c->early[i].size = sizes[i];
                atomic_init(&c->early[i].state, EARLY_WAITING);
        }
        c->n_early = n;
        qsort(c->early, c->n_early, sizeof(*c->early), cmp_early);
        w = c->early_worker = calloc(1, sizeof(Worker));
        if (!w)
                return -ENOMEM;
        w->c = c;
        w->quiet = true;
        hf_buf_init(&w->pack, PACK_READ_MAX);
        hf_buf_init(&w->plain, HF_BLOB_MAX_PLAIN + HF_PACK_HEADER_MAX);
        r = hf_repo_new_codec(c->repo, &w->codec);
        if (r < 0)
                return r;
        (void)start_beside(c, b, early_read_main); /* without it, read_data reads them all */
        return 0;
}

/*
 * For tests: HOLDFAST_CHECK_TEST_PAUSE names a FIFO; check waits there, between the early
 * listing of the packs and the index, for a byte or the writer's close (a backup runs meanwhile).
 */
static void test_pause(void)
{
        const char *fifo = getenv("HOLDFAST_CHECK_TEST_PAUSE");
        int fd;
        char b;

        if (!fifo || !*fifo)
                return;
        fd = open(fifo, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return;
        (void)!read(fd, &b, 1);
        close(fd);
}

/* ---------------------------------------------------------------------------------------- */
/* Check snapshots, trees and blobs */

/* Pushes a folder; a NULL parent is the root (path ""). */
static int stack_push(Stack *s, const HfId *id, const char *parent, const char *name,
                      size_t name_len)
{
        size_t plen = parent ? strlen(parent) : 0;
        char *path;

        if (s->n == s->cap) {
                size_t ncap = s->cap ? s->cap * 2 : 64;
                Dir *nv = realloc(s->v, ncap * sizeof(Dir));
                if (!nv)
                        return -ENOMEM;
                s->v = nv;
                s->cap = ncap;
        }
        path = parent ? malloc(plen + name_len + 2) : strdup("");
        if (!path)
                return -ENOMEM;
        if (parent) {
                memcpy(path, parent, plen);
                path[plen] = '/';
                memcpy(path + plen + 1, name, name_len);
                path[plen + 1 + name_len] = 0;
        }
        s->v[s->n++] = (Dir){ .id = *id, .path = path };
        return 0;
}

/*
 * A blob that snapshots use is in no index, but an unreferenced pack holds it: the index is
 * incomplete, the data is not lost. Counted per pack (one error each, after the walk), since
 * a lost index file would otherwise give one error for every tree and file it covered.
 */
static int orphan_use(Check *c, const HfIndexEntry *e, const char *snap, const char *path)
{
        Pack *p = &c->packs[e->pack];
        int r;

        pthread_mutex_lock(&c->lock);
        r = idset_add(&c->orphans_used, &e->id);
        if (r > 0 && p->orphan_uses++ == 0) {
                p->use_blob = e->id;
                p->use_type = e->type;
                p->use_path = strdup(path);
                (void)snprintf(p->use_snap, sizeof(p->use_snap), "%s", snap);
                r = p->use_path ? 0 : -ENOMEM;
        }
        pthread_mutex_unlock(&c->lock);
        return r < 0 ? r : 0;
}

static void report_orphan_uses(Check *c)
{
        for (size_t i = 0; i < c->n_packs; i++) {
                const Pack *p = &c->packs[i];

                if (!p->orphan_uses)
                        continue;
                report(c, p->file, &p->use_blob,
                       "pack is in no index, but snapshots use %llu of its blobs (the first: the "
                       "%s blob for \"%s\" in %s); the index is incomplete: \"restic "
                       "rebuild-index\" (\"restic repair index\" in newer restic) indexes the pack "
                       "again",
                       (unsigned long long)p->orphan_uses, blob_kind(p->use_type), p->use_path,
                       p->use_snap);
        }
}

/*
 * Loads and verifies a tree blob for the snapshot file snap, reporting problems. Returns < 0
 * when the tree cannot be used (-ENOMEM is fatal).
 */
static int load_tree(Check *c, HfCodec *codec, const char *snap, const HfId *id, const char *shown,
                     HfBuf *out)
{
        _cleanup_buf_ HfBuf enc = HF_BUF_INIT(HF_BLOB_MAX_PLAIN + 1024);
        const HfIndexEntry *e = hf_index_lookup(c->index, HF_BLOB_TREE, id);
        const Pack *p;
        HfId got;
        int r;

        if (!e) {
                e = hf_index_lookup(c->orphans, HF_BLOB_TREE, id);
                if (!e) {
                        report(c, snap, id,
                               "tree of \"%s\" is missing: it is in no index and in no pack",
                               shown);
                        return -ENOENT;
                }
                /* Counted for its pack, and checked from there with what lies below. */
                r = orphan_use(c, e, snap, shown);
                if (r < 0)
                        return r;
        }
        p = &c->packs[e->pack];
        if (!p->listed) {
                report(c, snap, id, "tree of \"%s\" is in pack %s, which is missing", shown,
                       p->file);
                return -ENOENT;
        }
        r = hf_buf_reserve(&enc, e->length);
        if (r == -ENOMEM)
                return r;
        if (r >= 0)
                r = hf_backend_read_at(c->backend, HF_FILE_PACK, p->hex, e->offset, e->length,
                                       enc.data);
        if (r < 0) {
                report(c, snap, id, "tree of \"%s\" cannot be read from %s: %s", shown, p->file,
                       r == -ENODATA ? "the pack is too short" : strerror(-r));
                return r;
        }
        enc.len = e->length;
        r = hf_codec_open(codec, enc.data, enc.len, e->uncompressed_length, out);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                report(c, snap, id, "tree of \"%s\" in %s is damaged: %s", shown, p->file,
                       r == -EBADMSG ? "MAC mismatch" : "it does not decompress");
                return r;
        }
        hf_sha256(out->data, out->len, &got);
        if (!hf_id_eq(&got, id)) {
                report(c, snap, id,
                       "tree of \"%s\" in %s is damaged: its content does not hash "
                       "to its ID",
                       shown, p->file);
                return -EBADMSG;
        }
        return 0;
}

/*
 * restic wants "content":[] for an empty file and flags null; the parsed tree cannot tell the
 * two apart, so trees with content-less files are looked at once more.
 */
static int check_null_content(Check *c, const char *snap, const Dir *d, const HfBuf *json)
{
        _cleanup_buf_ HfBuf name = HF_BUF_INIT(1u << 20);
        json_t *root, *nodes;

        root = json_loadb((const char *)json->data, json->len, 0, NULL);
        if (!root)
                return 0; /* hf_tree_parse accepted it; nothing more to say */
        nodes = json_object_get(root, "nodes");
        for (size_t i = 0; json_is_array(nodes) && i < json_array_size(nodes); i++) {
                json_t *o = json_array_get(nodes, i), *type, *content, *n;

                type = json_object_get(o, "type");
                content = json_object_get(o, "content");
                if (!json_is_string(type) || strcmp(json_string_value(type), "file") != 0 ||
                    (content && !json_is_null(content)))
                        continue;
                n = json_object_get(o, "name");
                hf_buf_reset(&name);
                if (!json_is_string(n) ||
                    hf_go_unquote(&name, json_string_value(n), json_string_length(n)) < 0 ||
                    !name.data)
                        continue;
                report(c, snap, &d->id,
                       "file \"%s/%s\" has a null content list (restic requires [] even for an "
                       "empty file)",
                       d->path, (const char *)name.data);
        }
        json_decref(root);
        return 0;
}

static int check_file(Check *c, const char *snap, const Dir *d, const HfNode *node)
{
        size_t missing = 0, bad = 0, first_missing = 0, first_bad = 0;
        _cleanup_free_ char *path = NULL;
        int r;

        if (asprintf(&path, "%s/%s", d->path, node->name) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < node->n_content; i++) {
                const HfId *id = &node->content[i];
                const HfIndexEntry *o;

                if (hf_id_is_zero(id)) {
                        report(c, snap, &d->id, "file \"%s\": content blob %zu has a null ID", path,
                               i + 1);
                        continue;
                }
                if (hf_index_lookup(c->index, HF_BLOB_DATA, id)) {
                        /* The early walk does not look: the readers are still filling bad,
                         * and the walk is done again if they put anything in it. */
                        if (!c->walk_early && hf_index_lookup(c->bad, HF_BLOB_DATA, id) &&
                            bad++ == 0)
                                first_bad = i;
                        continue;
                }
                o = hf_index_lookup(c->orphans, HF_BLOB_DATA, id);
                if (o) {
                        r = orphan_use(c, o, snap, path);
                        if (r < 0)
                                return r;
                } else if (missing++ == 0)
                        first_missing = i;
        }
        if (missing) {
                char more[64] = "";

                if (missing > 1)
                        (void)snprintf(more, sizeof(more), " (and %zu more of its blobs)",
                                       missing - 1);
                report(c, snap, &node->content[first_missing],
                       "file \"%s\": data blob %zu of %zu is in no index and in no pack%s: "
                       "that part of the file is lost",
                       path, first_missing + 1, node->n_content, more);
        }
        if (bad) {
                const HfId *id = &node->content[first_bad];
                const HfIndexEntry *e = hf_index_lookup(c->bad, HF_BLOB_DATA, id);
                const Pack *p = &c->packs[e->pack];
                char more[64] = "";

                if (bad > 1)
                        (void)snprintf(more, sizeof(more), " (and %zu more of its blobs)", bad - 1);
                if (p->listed)
                        report(c, snap, id,
                               "file \"%s\": data blob %zu of %zu is damaged (in pack "
                               "%s)%s",
                               path, first_bad + 1, node->n_content, p->file, more);
                else
                        report(c, snap, id,
                               "file \"%s\": data blob %zu of %zu is in pack %s, "
                               "which is missing%s",
                               path, first_bad + 1, node->n_content, p->file, more);
        }
        return 0;
}

/* Checks one folder's tree; its subfolders go onto children, last to first. */
static int check_tree(Worker *w, const char *snap, const Dir *d, Stack *children)
{
        Check *c = w->c;
        _cleanup_buf_ HfBuf json = HF_BUF_INIT(HF_BLOB_MAX_PLAIN), err = HF_BUF_INIT(512);
        const char *shown = d->path[0] ? d->path : "/";
        bool contentless = false;
        HfTree t = { 0 };
        int r;

        r = load_tree(c, w->codec, snap, &d->id, shown, &json);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return 0;
        r = hf_tree_parse(json.data, json.len, &t, &err);
        if (r == -EPROTO) {
                report(c, snap, &d->id, "tree of \"%s\" is malformed: %s", shown,
                       err.len ? (char *)err.data : "unknown problem");
                return 0;
        }
        if (r < 0)
                return r;
        for (size_t i = 0; i < t.n && r >= 0; i++) {
                const HfNode *node = &t.nodes[i];

                switch (node->type) {
                case HF_NODE_FILE:
                        contentless = contentless || node->n_content == 0;
                        r = check_file(c, snap, d, node);
                        break;
                case HF_NODE_DIR:
                        if (!node->has_subtree)
                                report(c, snap, &d->id, "folder \"%s/%s\" has no subtree", d->path,
                                       node->name);
                        else if (hf_id_is_zero(&node->subtree))
                                report(c, snap, &d->id, "folder \"%s/%s\" has a null subtree ID",
                                       d->path, node->name);
                        break;
                default:
                        break;
                }
        }
        /* Pushed last to first, so that folders are visited in name order. */
        for (size_t i = t.n; i > 0 && r >= 0; i--) {
                const HfNode *node = &t.nodes[i - 1];

                if (node->type == HF_NODE_DIR && node->has_subtree &&
                    !hf_id_is_zero(&node->subtree))
                        r = stack_push(children, &node->subtree, d->path, node->name,
                                       node->name_len);
        }
        if (r >= 0 && contentless)
                r = check_null_content(c, snap, d, &json);
        hf_tree_done(&t);
        return r;
}

/* Moves a visited folder's subfolders onto the shared stack (walk_lock held). */
static void hand_over(Check *c, Stack *children)
{
        if (c->todo.n + children->n > c->todo.cap) {
                size_t ncap = MAX(c->todo.cap * 2, c->todo.n + children->n);
                Dir *nv = realloc(c->todo.v, ncap * sizeof(Dir));

                if (!nv) {
                        set_fatal(c, -ENOMEM);
                        while (children->n)
                                free(children->v[--children->n].path);
                        return;
                }
                c->todo.v = nv;
                c->todo.cap = ncap;
        }
        if (children->n)
                memcpy(c->todo.v + c->todo.n, children->v, children->n * sizeof(Dir));
        c->todo.n += children->n;
        children->n = 0;
}

/*
 * A tree walker: takes folders off the shared stack until the walk is over. The main thread
 * waits for the stack to be empty with no walker busy, which ends a snapshot.
 */
static void *walker_main(void *arg)
{
        Worker *w = arg;
        Check *c = w->c;
        Stack children = { 0 };

        in_early_walk = c->walk_early;
        pthread_mutex_lock(&c->walk_lock);
        for (;;) {
                const char *snap;
                Dir d;
                int r;

                while (c->todo.n == 0 && !c->walk_done) {
                        c->idle++;
                        pthread_cond_wait(&c->walk_cond, &c->walk_lock);
                        c->idle--;
                }
                if (c->todo.n == 0)
                        break;
                d = c->todo.v[--c->todo.n];
                snap = c->walk_snap;
                /* Every tree once, whichever snapshot or folder reaches it first. */
                r = atomic_load(&c->fatal) ? 0 : idset_add(&c->trees, &d.id);
                if (r <= 0) {
                        if (r < 0)
                                set_fatal(c, r);
                        free(d.path);
                        if (c->todo.n == 0 && c->busy == 0)
                                pthread_cond_signal(&c->walk_end);
                        continue;
                }
                c->busy++;
                pthread_mutex_unlock(&c->walk_lock);

                r = check_tree(w, snap, &d, &children);
                free(d.path);
                if (r < 0)
                        set_fatal(c, r);

                pthread_mutex_lock(&c->walk_lock);
                c->busy--;
                hand_over(c, &children);
                /* This walker takes the next folder itself: wake others only for the rest. */
                for (size_t k = 1; k < c->todo.n && k <= c->idle; k++)
                        pthread_cond_signal(&c->walk_cond);
                if (c->todo.n == 0 && c->busy == 0)
                        pthread_cond_signal(&c->walk_end);
        }
        pthread_mutex_unlock(&c->walk_lock);
        free(children.v);
        return NULL;
}

/* Walks every tree reachable from a snapshot's root that no earlier snapshot reached. */
static int walk_snapshot(Check *c, const char *snap, const HfId *root)
{
        int r;

        if (hf_id_is_zero(root)) {
                report(c, snap, NULL, "snapshot has a null tree ID");
                return 0;
        }
        pthread_mutex_lock(&c->walk_lock);
        c->walk_snap = snap;
        r = stack_push(&c->todo, root, NULL, NULL, 0);
        pthread_cond_broadcast(&c->walk_cond);
        while (c->todo.n > 0 || c->busy > 0)
                pthread_cond_wait(&c->walk_end, &c->walk_lock);
        pthread_mutex_unlock(&c->walk_lock);
        return r < 0 ? r : atomic_load(&c->fatal);
}

/* Loads each snapshot (here, in order) and walks its trees (on the workers). */
static int walk_snapshots(Check *c)
{
        int r;

        for (size_t i = 0; i < c->n_snaps; i++) {
                _cleanup_buf_ HfBuf json = HF_BUF_INIT(UNPACKED_MAX), err = HF_BUF_INIT(512);
                char hex[HF_ID_HEX_LEN + 1], file[16 + HF_ID_HEX_LEN];
                HfSnapshot s = { 0 };

                hf_id_hex(&c->snap_ids[i], hex);
                (void)snprintf(file, sizeof(file), "snapshots/%s", hex);
                r = load_unpacked(c, HF_FILE_SNAPSHOT, &c->snap_ids[i], file, &json);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        continue;
                r = hf_snapshot_parse(json.data, json.len, &s, &err);
                if (r == -EPROTO) {
                        report(c, file, NULL, "malformed snapshot: %s",
                               err.len ? (char *)err.data : "unknown problem");
                        continue;
                }
                if (r < 0)
                        return r;
                c->snapshots++;
                r = walk_snapshot(c, file, &s.tree);
                hf_snapshot_done(&s);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Walks every snapshot's trees with the walkers ws. */
static int check_snapshots(Check *c, Worker *ws, unsigned n)
{
        unsigned started = 0;
        int r;

        in_early_walk = c->walk_early;
        c->walk_done = false;
        for (unsigned i = 0; i < n; i++) {
                if (pthread_create(&ws[i].thread, NULL, walker_main, &ws[i]) != 0)
                        break;
                started++;
        }
        if (started == 0)
                return log_error_errno(EAGAIN, "cannot start a worker thread");
        r = walk_snapshots(c);
        pthread_mutex_lock(&c->walk_lock);
        c->walk_done = true;
        pthread_cond_broadcast(&c->walk_cond);
        pthread_mutex_unlock(&c->walk_lock);
        for (unsigned i = 0; i < started; i++)
                pthread_join(ws[i].thread, NULL);
        if (r < 0)
                return r;
        report_orphan_uses(c);
        return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* The lock's second look, and the walk, while the packs are read */

static void *confirm_main(void *arg)
{
        Beside *b = arg;
        Check *c = b->c;

        b->r = hf_lock_confirm(c->opts->lock);
        hf_out_lock();
        c->lock_state = b->r < 0 ? LOCK_FAILED : LOCK_NONE;
        if (b->r >= 0)
                release_held(c, &c->lock_held);
        hf_out_unlock();
        /* The lock's error is logged; what the pack phases found so far is not shown. */
        if (b->r < 0)
                set_fatal(c, b->r);
        return NULL;
}

static void *early_walk_main(void *arg)
{
        Beside *b = arg;

        b->r = check_snapshots(b->c, b->c->walkers, 1);
        if (b->r < 0)
                set_fatal(b->c, b->r);
        return NULL;
}

static int start_beside(Check *c, Beside *b, void *(*fn)(void *))
{
        int k;

        b->c = c;
        k = pthread_create(&b->thread, NULL, fn, b);
        if (k != 0)
                return log_error_errno(k, "cannot start a thread");
        b->started = true;
        return 0;
}

static int join_beside(Beside *b)
{
        if (!b->started)
                return 0;
        pthread_join(b->thread, NULL);
        b->started = false;
        return b->r;
}

/* Gives walker i of the early walk its codec. */
static int walker_codec(Check *c, unsigned i)
{
        int r = hf_repo_new_codec(c->repo, &c->walkers[i].codec);

        if (r >= 0)
                c->n_walkers = i + 1;
        return r;
}

/*
 * The walk while the packs are read has walkers of its own: one, as the readers keep the
 * cores busy; the others join once the packs are read. It is tried only when nothing is known
 * to be damaged yet and no blob is outside the index (whose uses the walk counts).
 */
static int start_early_walk(Check *c, Beside *b)
{
        int r;

        if (hf_index_count(c->bad) > 0 || hf_index_count(c->orphans) > 0)
                return 0;
        c->walkers = calloc(c->n_workers, sizeof(Worker));
        if (!c->walkers)
                return -ENOMEM;
        for (unsigned i = 0; i < c->n_workers; i++)
                c->walkers[i].c = c;
        r = walker_codec(c, 0);
        if (r < 0)
                return r;
        c->walk_early = true;
        return start_beside(c, b, early_walk_main);
}

/*
 * After the packs were read: the other walkers join the early walk, whose findings stand if
 * no blob turned out damaged (it could not name the files using them); else the trees are
 * walked again.
 */
static int finish_early_walk(Check *c, Beside *b)
{
        unsigned started = 1;
        bool keep;
        int r;

        for (; started < c->n_workers; started++)
                if (walker_codec(c, started) < 0 ||
                    pthread_create(&c->walkers[started].thread, NULL, walker_main,
                                   &c->walkers[started]) != 0)
                        break;
        r = join_beside(b);
        for (unsigned i = 1; i < started; i++)
                pthread_join(c->walkers[i].thread, NULL);
        if (r < 0)
                return r;
        c->walk_early = false;
        hf_out_lock();
        keep = !c->walk_held.overflow && hf_index_count(c->bad) == 0;
        if (keep) {
                atomic_fetch_add(&c->errors, c->walk_errors);
                release_held(c, &c->walk_held);
        } else {
                hf_buf_free(&c->walk_held.out);
                hf_buf_free(&c->walk_held.err);
        }
        hf_out_unlock();
        if (keep)
                return 0;
        log_debug("check: walking the trees again, now that the packs are read");
        free(c->trees.slots);
        c->trees = (IdSet){ 0 };
        c->snapshots = 0;
        return check_snapshots(c, c->workers, c->n_workers);
}

/* ---------------------------------------------------------------------------------------- */

static void print_summary(Check *c, HfCheckResult *res, double seconds)
{
        char b1[32], b2[32];

        if (c->out->json) {
                hf_out_lock();
                printf("{\"message_type\":\"summary\",\"snapshots\":%llu,\"trees\":%llu,"
                       "\"packs\":%llu,\"blobs\":%llu,\"data_read\":%llu,\"errors\":%llu,"
                       "\"read_data\":%s}\n",
                       (unsigned long long)res->snapshots, (unsigned long long)res->trees,
                       (unsigned long long)res->packs, (unsigned long long)res->blobs,
                       (unsigned long long)res->data_read, (unsigned long long)res->errors,
                       c->opts->read_data ? "true" : "false");
                fflush(stdout);
                hf_out_unlock();
                return;
        }
        if (c->out->verbose)
                fprintf(stderr,
                        "checked %llu snapshots, %llu trees, %llu packs, %llu blobs%s%s "
                        "in %s\n",
                        (unsigned long long)res->snapshots, (unsigned long long)res->trees,
                        (unsigned long long)res->packs, (unsigned long long)res->blobs,
                        c->opts->read_data ? "; read " : "",
                        c->opts->read_data ? hf_format_bytes(b1, sizeof(b1), res->data_read) : "",
                        hf_format_duration(b2, sizeof(b2), seconds));
        if (res->errors)
                printf("%llu error%s found\n", (unsigned long long)res->errors,
                       res->errors == 1 ? "" : "s");
        else if (!c->out->quiet)
                printf("no errors were found\n");
        fflush(stdout);
}

int hf_check(HfRepo *repo, const HfCheckOptions *opts, HfCheckResult *ret)
{
        Check c = {
                .repo = repo,
                .backend = hf_repo_backend(repo),
                .opts = opts,
                .out = &opts->out,
                .version = hf_repo_version(repo),
                .lock_held = { .out = HF_BUF_INIT(HELD_MAX), .err = HF_BUF_INIT(HELD_MAX) },
                .walk_held = { .out = HF_BUF_INIT(HELD_MAX), .err = HF_BUF_INIT(HELD_MAX) },
        };
        HfCheckResult res = { 0 };
        Beside confirm = { 0 }, walk = { 0 }, early = { 0 };
        double t0 = hf_now_mono();
        int r, k;

        pthread_mutex_init(&c.lock, NULL);
        pthread_mutex_init(&c.walk_lock, NULL);
        pthread_cond_init(&c.walk_cond, NULL);
        pthread_cond_init(&c.walk_end, NULL);
        atomic_init(&c.errors, 0);
        atomic_init(&c.data_read, 0);
        atomic_init(&c.fatal, 0);
        atomic_init(&c.early_next, 0);
        atomic_init(&c.early_stop, false);
        atomic_init(&c.early_bytes, 0);
        atomic_init(&c.early_files, 0);

        r = hf_repo_new_codec(repo, &c.codec);
        if (r >= 0)
                r = hf_index_new(&c.index);
        if (r >= 0)
                r = hf_index_new(&c.orphans);
        if (r >= 0)
                r = hf_index_new(&c.bad);
        if (r < 0)
                goto out;

        if (opts->read_data) {
                r = start_early_read(&c, &early);
                if (r < 0)
                        goto out;
                test_pause();
        }

        /* Snapshots are listed before the index is loaded (restic's read order). */
        r = hf_repo_list_ids(repo, HF_FILE_SNAPSHOT, &c.snap_ids, &c.n_snaps);
        if (r < 0) {
                log_error_errno(r, "%s/snapshots: cannot list the snapshots: %m",
                                c.backend->location);
                goto out;
        }
        if (c.n_snaps > 1)
                qsort(c.snap_ids, c.n_snaps, sizeof(HfId), cmp_id);

        phase(&c, "load indexes");
        r = load_indexes(&c);
        if (r < 0)
                goto out;
        if (opts->lock && *opts->lock) {
                /* The pack phases go on during the rest of the lock protocol's pause; what
                 * they print is held until its second look finds no other lock, and dropped
                 * if it finds one. */
                c.lock_state = LOCK_PENDING;
                if (start_beside(&c, &confirm, confirm_main) < 0) {
                        c.lock_state = LOCK_NONE;
                        r = hf_lock_confirm(opts->lock);
                        if (r < 0)
                                goto out;
                }
        }
        r = build_packs(&c);
        if (r < 0)
                goto out;
        r = start_workers(&c);
        if (r < 0)
                goto out;

        phase(&c, "check all packs");
        r = check_packs(&c);
        if (r < 0)
                goto out;

        if (opts->read_data) {
                r = start_early_walk(&c, &walk);
                if (r < 0)
                        goto out;
                phase(&c, "read all data");
                r = read_data(&c, &early);
                if (r < 0)
                        goto out;
        }
        r = join_beside(&confirm);
        if (r < 0)
                goto out;

        phase(&c, "check snapshots, trees and blobs");
        if (walk.started)
                r = finish_early_walk(&c, &walk);
        else
                r = check_snapshots(&c, c.workers, c.n_workers);
        if (r < 0)
                goto out;
        phase(&c, NULL);

        res = (HfCheckResult){
                .snapshots = c.snapshots,
                .trees = c.trees.count,
                .packs = c.n_listed,
                .blobs = hf_index_count(c.index),
                .data_read = atomic_load(&c.data_read),
                .errors = atomic_load(&c.errors),
        };
        print_summary(&c, &res, hf_now_mono() - t0);
        if (ret)
                *ret = res;
        r = res.errors ? HF_INCOMPLETE : 0;
out:
        if (r < 0)
                set_fatal(&c, r);
        atomic_store(&c.early_stop, true);
        (void)join_beside(&early);
        (void)join_beside(&walk);
        k = join_beside(&confirm);
        /* A failed second look is the error to give: what else failed may be its doing. */
        if (k < 0)
                r = k;
        if (r == -ENOMEM)
                (void)log_oom();
        free_workers(&c);
        free_early_worker(&c);
        free(c.early);
        for (unsigned i = 0; i < c.n_walkers; i++)
                hf_codec_free(c.walkers[i].codec);
        free(c.walkers);
        hf_buf_free(&c.lock_held.out);
        hf_buf_free(&c.lock_held.err);
        hf_buf_free(&c.walk_held.out);
        hf_buf_free(&c.walk_held.err);
        for (size_t i = 0; i < c.n_packs; i++) {
                free(c.packs[i].orphan);
                free(c.packs[i].use_path);
        }
        free(c.packs);
        free(c.claims);
        free(c.pack_index_file);
        free(c.index_ids);
        free(c.snap_ids);
        free(c.trees.slots);
        free(c.todo.v);
        free(c.orphans_used.slots);
        hf_index_free(c.index);
        hf_index_free(c.orphans);
        hf_index_free(c.bad);
        hf_codec_free(c.codec);
        pthread_mutex_destroy(&c.lock);
        pthread_mutex_destroy(&c.walk_lock);
        pthread_cond_destroy(&c.walk_cond);
        pthread_cond_destroy(&c.walk_end);
        return r;
}
