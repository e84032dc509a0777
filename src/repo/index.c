/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "index.h"

#include <string.h>

#include "../base/json.h"
#include "../base/log.h"

struct HfIndex {
        HfIndexEntry *slots;
        size_t mask; /* number of slots - 1 (a power of two) */
        size_t count;

        HfId *packs;
        size_t n_packs, cap_packs;
        uint32_t *pack_slots; /* open addressing over packs: position + 1, 0 = empty */
        size_t pack_mask;
};

/*
 * A zeroed table of n slots. Filling a table touches all of its pages at once, so a large one
 * is aligned to 2 MiB and faulted in huge pages where the kernel has them (a 4 KiB page fault
 * costs ~14 us on the virtual machines we measure; a vault of 150,000 blobs has tables of
 * 8-16 MiB).
 */
static HfIndexEntry *table_new(size_t n)
{
        size_t bytes;
        void *p;

        if (n > SIZE_MAX / sizeof(HfIndexEntry))
                return NULL;
        bytes = n * sizeof(HfIndexEntry);
        if (bytes < HF_HUGE_HINT_MIN)
                return calloc(n, sizeof(HfIndexEntry));
        p = hf_alloc_huge(bytes);
        if (p)
                memset(p, 0, bytes);
        return p;
}

int hf_index_new(HfIndex **ret)
{
        HfIndex *idx = calloc(1, sizeof(*idx));

        if (!idx)
                return -ENOMEM;
        idx->mask = 1023;
        idx->slots = table_new(idx->mask + 1);
        idx->pack_mask = 255;
        idx->pack_slots = calloc(idx->pack_mask + 1, sizeof(uint32_t));
        if (!idx->slots || !idx->pack_slots) {
                hf_index_free(idx);
                return -ENOMEM;
        }
        *ret = idx;
        return 0;
}

HfIndex *hf_index_free(HfIndex *idx)
{
        if (!idx)
                return NULL;
        free(idx->slots);
        free(idx->packs);
        free(idx->pack_slots);
        free(idx);
        return NULL;
}

static inline size_t slot_of(const HfId *id, uint8_t type, size_t mask)
{
        return (size_t)((hf_id_hash(id) ^ (uint64_t)type * 0x9e3779b97f4a7c15ULL) & mask);
}

/* Rehashes into a table of nmask + 1 slots (a power of two that holds every entry). */
static int rehash(HfIndex *idx, size_t nmask)
{
        HfIndexEntry *ns = table_new(nmask + 1);

        if (!ns)
                return -ENOMEM;
        for (size_t i = 0; i <= idx->mask; i++) {
                HfIndexEntry *e = &idx->slots[i];
                size_t s;
                if (e->length == 0)
                        continue;
                for (s = slot_of(&e->id, e->type, nmask); ns[s].length; s = (s + 1) & nmask)
                        ;
                ns[s] = *e;
        }
        free(idx->slots);
        idx->slots = ns;
        idx->mask = nmask;
        return 0;
}

static int grow_blobs(HfIndex *idx)
{
        return rehash(idx, idx->mask * 2 + 1);
}

int hf_index_reserve(HfIndex *idx, size_t n)
{
        size_t nmask = idx->mask;

        /* The same load limit as hf_index_add: at most three quarters full. */
        while (n > (nmask + 1) / 4 * 3) {
                if (nmask > SIZE_MAX / 4)
                        return -ENOMEM;
                nmask = nmask * 2 + 1;
        }
        return nmask == idx->mask ? 0 : rehash(idx, nmask);
}

static HfIndexEntry *find_slot(const HfIndex *idx, uint8_t type, const HfId *id)
{
        for (size_t s = slot_of(id, type, idx->mask);; s = (s + 1) & idx->mask) {
                HfIndexEntry *e = &idx->slots[s];
                if (e->length == 0)
                        return e;
                if (e->type == type && hf_id_eq(&e->id, id))
                        return e;
        }
}

int hf_index_add(HfIndex *idx, const HfIndexEntry *e)
{
        HfIndexEntry *slot;
        int r;

        if (e->length == 0)
                return -EINVAL;
        if ((idx->count + 1) * 4 > (idx->mask + 1) * 3) {
                r = grow_blobs(idx);
                if (r < 0)
                        return r;
        }
        slot = find_slot(idx, e->type, &e->id);
        if (slot->length)
                return 0;
        *slot = *e;
        idx->count++;
        return 1;
}

int hf_index_update(HfIndex *idx, const HfIndexEntry *e)
{
        HfIndexEntry *slot = find_slot(idx, e->type, &e->id);

        if (slot->length == 0)
                return -ENOENT;
        *slot = *e;
        return 0;
}

int hf_index_remove(HfIndex *idx, HfBlobType type, const HfId *id)
{
        HfIndexEntry *slot = find_slot(idx, (uint8_t)type, id);
        size_t i, j;

        if (slot->length == 0)
                return -ENOENT;
        /* Backward-shift deletion keeps probe chains intact without tombstones. */
        i = (size_t)(slot - idx->slots);
        idx->slots[i].length = 0;
        idx->count--;
        for (j = (i + 1) & idx->mask; idx->slots[j].length; j = (j + 1) & idx->mask) {
                HfIndexEntry tmp = idx->slots[j];
                HfIndexEntry *dst;
                idx->slots[j].length = 0;
                dst = find_slot(idx, tmp.type, &tmp.id);
                *dst = tmp;
        }
        return 0;
}

const HfIndexEntry *hf_index_lookup(const HfIndex *idx, HfBlobType type, const HfId *id)
{
        HfIndexEntry *e = find_slot(idx, (uint8_t)type, id);
        return e->length ? e : NULL;
}

const void *hf_index_table(const HfIndex *idx, size_t *ret_bytes)
{
        *ret_bytes = (idx->mask + 1) * sizeof(HfIndexEntry);
        return idx->slots;
}

size_t hf_index_count(const HfIndex *idx)
{
        return idx->count;
}

int hf_index_foreach(const HfIndex *idx, int (*fn)(void *ud, const HfIndexEntry *e), void *ud)
{
        for (size_t i = 0; i <= idx->mask; i++) {
                if (idx->slots[i].length == 0)
                        continue;
                int r = fn(ud, &idx->slots[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int grow_packs(HfIndex *idx)
{
        size_t nmask = idx->pack_mask * 2 + 1;
        uint32_t *ns = calloc(nmask + 1, sizeof(uint32_t));

        if (!ns)
                return -ENOMEM;
        for (size_t p = 0; p < idx->n_packs; p++) {
                size_t s = hf_id_hash(&idx->packs[p]) & nmask;
                while (ns[s])
                        s = (s + 1) & nmask;
                ns[s] = (uint32_t)p + 1;
        }
        free(idx->pack_slots);
        idx->pack_slots = ns;
        idx->pack_mask = nmask;
        return 0;
}

static uint32_t *find_pack_slot(const HfIndex *idx, const HfId *pack)
{
        for (size_t s = hf_id_hash(pack) & idx->pack_mask;; s = (s + 1) & idx->pack_mask) {
                uint32_t *v = &idx->pack_slots[s];
                if (*v == 0 || hf_id_eq(&idx->packs[*v - 1], pack))
                        return v;
        }
}

int hf_index_find_pack(const HfIndex *idx, const HfId *pack, uint32_t *ret_pos)
{
        uint32_t *v = find_pack_slot(idx, pack);

        if (*v == 0)
                return -ENOENT;
        *ret_pos = *v - 1;
        return 0;
}

int hf_index_add_pack(HfIndex *idx, const HfId *pack, uint32_t *ret_pos)
{
        uint32_t *v;
        int r;

        v = find_pack_slot(idx, pack);
        if (*v) {
                *ret_pos = *v - 1;
                return 0;
        }
        if (idx->n_packs >= UINT32_MAX - 2)
                return -E2BIG;
        if ((idx->n_packs + 1) * 2 > idx->pack_mask + 1) {
                r = grow_packs(idx);
                if (r < 0)
                        return r;
                v = find_pack_slot(idx, pack);
        }
        if (idx->n_packs == idx->cap_packs) {
                size_t ncap = idx->cap_packs ? idx->cap_packs * 2 : 64;
                HfId *np = realloc(idx->packs, ncap * sizeof(HfId));
                if (!np)
                        return -ENOMEM;
                idx->packs = np;
                idx->cap_packs = ncap;
        }
        idx->packs[idx->n_packs] = *pack;
        *v = (uint32_t)++idx->n_packs;
        *ret_pos = *v - 1;
        return 0;
}

const HfId *hf_index_pack_id(const HfIndex *idx, uint32_t pos)
{
        return pos < idx->n_packs ? &idx->packs[pos] : NULL;
}

size_t hf_index_n_packs(const HfIndex *idx)
{
        return idx->n_packs;
}

static int cmp_pack_offset(const void *a, const void *b)
{
        const HfIndexEntry *x = a, *y = b;

        if (x->pack != y->pack)
                return x->pack < y->pack ? -1 : 1;
        if (x->offset != y->offset)
                return x->offset < y->offset ? -1 : 1;
        /* Ties only in hostile files, but the output must not depend on hash order. */
        if (x->type != y->type)
                return x->type < y->type ? -1 : 1;
        return hf_id_cmp(&x->id, &y->id);
}

int hf_index_sorted_by_pack(const HfIndex *idx, HfIndexEntry **ret, size_t *ret_n)
{
        HfIndexEntry *v = malloc(MAX(idx->count, (size_t)1) * sizeof(HfIndexEntry));
        size_t n = 0;

        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i <= idx->mask; i++)
                if (idx->slots[i].length)
                        v[n++] = idx->slots[i];
        qsort(v, n, sizeof(*v), cmp_pack_offset);
        *ret = v;
        *ret_n = n;
        return 0;
}

static int parse_blob(HfJson *j, HfIndexEntry *e, bool *ret_has_type)
{
        bool has_id = false, has_off = false, has_len = false, has_type = false;
        const char *k, *s;
        size_t kl, sl;
        uint64_t v;
        int r;

        r = hf_json_enter_object(j);
        while (r >= 0 && (r = hf_json_next_key(j, &k, &kl)) > 0) {
                if (hf_json_key_is(k, kl, "id")) {
                        r = hf_json_string_raw(j, &s, &sl);
                        if (r >= 0 && hf_id_parse(s, sl, &e->id) < 0)
                                return -EPROTO;
                        has_id = true;
                } else if (hf_json_key_is(k, kl, "type")) {
                        r = hf_json_string_raw(j, &s, &sl);
                        if (r < 0)
                                break;
                        if (sl == 4 && memcmp(s, "data", 4) == 0)
                                e->type = HF_BLOB_DATA;
                        else if (sl == 4 && memcmp(s, "tree", 4) == 0)
                                e->type = HF_BLOB_TREE;
                        else
                                return -EPROTO;
                        has_type = true;
                } else if (hf_json_key_is(k, kl, "offset") || hf_json_key_is(k, kl, "length") ||
                           hf_json_key_is(k, kl, "uncompressed_length")) {
                        if (kl == 19 && (r = hf_json_null(j)) != 0) {
                                e->uncompressed_length = 0;
                                continue;
                        }
                        r = hf_json_u64(j, &v);
                        if (r < 0)
                                break;
                        if (v > UINT32_MAX)
                                return -EPROTO;
                        if (kl == 6 && k[0] == 'o') {
                                e->offset = (uint32_t)v;
                                has_off = true;
                        } else if (kl == 6) {
                                e->length = (uint32_t)v;
                                has_len = true;
                        } else
                                e->uncompressed_length = (uint32_t)v;
                } else
                        r = hf_json_skip(j);
        }
        if (r < 0)
                return r;
        *ret_has_type = has_type;
        return has_id && has_off && has_len ? 0 : -EPROTO;
}

int hf_index_parse(HfIndex *idx, const void *json, size_t n, HfBuf *err)
{
        _cleanup_free_ HfIndexEntry *v = NULL;
        _cleanup_free_ HfId *pack_ids = NULL;
        size_t nv = 0, capv = 0, np = 0, capp = 0;
        bool have_packs = false;
        const char *msg = NULL;
        const char *k;
        size_t kl;
        HfJson j;
        int r;

        /* Validate everything first: a malformed file contributes nothing. */
        hf_json_init(&j, json, n);
        r = hf_json_enter_object(&j);
        while (r >= 0 && (r = hf_json_next_key(&j, &k, &kl)) > 0) {
                if (!hf_json_key_is(k, kl, "packs")) {
                        r = hf_json_skip(&j);
                        continue;
                }
                have_packs = true;
                r = hf_json_enter_array(&j);
                while (r >= 0 && (r = hf_json_next_item(&j)) > 0) {
                        bool has_id = false, has_blobs = false;
                        const char *pk;
                        size_t pkl;

                        if (np == capp) {
                                size_t ncap = capp ? capp * 2 : 64;
                                HfId *nid = realloc(pack_ids, ncap * sizeof(HfId));
                                if (!nid)
                                        return -ENOMEM;
                                pack_ids = nid;
                                capp = ncap;
                        }
                        r = hf_json_enter_object(&j);
                        while (r >= 0 && (r = hf_json_next_key(&j, &pk, &pkl)) > 0) {
                                if (hf_json_key_is(pk, pkl, "id")) {
                                        const char *s;
                                        size_t sl;
                                        r = hf_json_string_raw(&j, &s, &sl);
                                        if (r >= 0 && hf_id_parse(s, sl, &pack_ids[np]) < 0) {
                                                msg = "a pack entry has no valid \"id\"";
                                                r = -EPROTO;
                                        }
                                        has_id = r >= 0;
                                        continue;
                                }
                                if (!hf_json_key_is(pk, pkl, "blobs")) {
                                        r = hf_json_skip(&j);
                                        continue;
                                }
                                has_blobs = true;
                                /* restic accepts null blobs (an empty pack entry). */
                                if ((r = hf_json_null(&j)) != 0)
                                        continue;
                                r = hf_json_enter_array(&j);
                                while (r >= 0 && (r = hf_json_next_item(&j)) > 0) {
                                        HfIndexEntry e = { .pack = (uint32_t)np };
                                        bool has_type;
                                        r = parse_blob(&j, &e, &has_type);
                                        if (r == -EPROTO || (r >= 0 && !has_type)) {
                                                msg = "a blob entry has a missing or invalid id, "
                                                      "type, offset or length";
                                                r = -EPROTO;
                                                break;
                                        }
                                        if (r < 0)
                                                break;
                                        if (e.length < HF_CRYPTO_OVERHEAD ||
                                            (uint64_t)e.offset + e.length > UINT32_MAX) {
                                                msg = "a blob entry has an impossible length";
                                                r = -EPROTO;
                                                break;
                                        }
                                        if (nv == capv) {
                                                size_t ncap = capv ? capv * 2 : 256;
                                                HfIndexEntry *nvv = realloc(v, ncap * sizeof(*nvv));
                                                if (!nvv)
                                                        return -ENOMEM;
                                                v = nvv;
                                                capv = ncap;
                                        }
                                        v[nv++] = e;
                                }
                        }
                        if (r >= 0 && !has_id) {
                                msg = "a pack entry has no valid \"id\"";
                                r = -EPROTO;
                        }
                        if (r >= 0 && !has_blobs) {
                                msg = "a pack entry has no \"blobs\" array";
                                r = -EPROTO;
                        }
                        if (r >= 0)
                                np++;
                }
        }
        if (r >= 0)
                r = hf_json_end(&j);
        if (r >= 0 && !have_packs) {
                msg = "no \"packs\" array (a legacy index format, or not an index)";
                r = -EPROTO;
        }
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                if (err) {
                        char where[160];
                        hf_buf_reset(err);
                        if (!msg && j.error)
                                (void)hf_json_error(&j, where, sizeof(where));
                        (void)hf_buf_puts(err, msg ? msg : j.error ? where : "malformed index");
                }
                return -EPROTO;
        }
        /* One table of the final size, not a doubling per power of two on the way. */
        r = hf_index_reserve(idx, idx->count + nv);
        if (r < 0)
                return r;
        for (size_t i = 0; i < nv; i++) {
                uint32_t pos;
                r = hf_index_add_pack(idx, &pack_ids[v[i].pack], &pos);
                if (r < 0)
                        return r;
                v[i].pack = pos;
                r = hf_index_add(idx, &v[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

int hf_index_format(const HfIndex *idx, const HfIndexEntry *entries, size_t n, HfBuf *out)
{
        int r;

        r = hf_buf_puts(out, "{\"packs\":[");
        for (size_t i = 0; r >= 0 && i < n;) {
                char hex[HF_ID_HEX_LEN + 1];
                uint32_t pack = entries[i].pack;

                hf_id_hex(hf_index_pack_id(idx, pack), hex);
                r = hf_buf_printf(out, "%s{\"id\":\"%s\",\"blobs\":[", i ? "," : "", hex);
                for (size_t j = i; r >= 0 && j < n && entries[j].pack == pack; j++, i++) {
                        const HfIndexEntry *e = &entries[j];
                        hf_id_hex(&e->id, hex);
                        r = hf_buf_printf(out,
                                          "%s{\"id\":\"%s\",\"type\":\"%s\",\"offset\":%u,"
                                          "\"length\":%u",
                                          j > 0 && entries[j - 1].pack == pack ? "," : "", hex,
                                          hf_blob_type_name(e->type), e->offset, e->length);
                        if (r >= 0 && e->uncompressed_length)
                                r = hf_buf_printf(out, ",\"uncompressed_length\":%u",
                                                  e->uncompressed_length);
                        if (r >= 0)
                                r = hf_buf_putc(out, '}');
                }
                if (r >= 0)
                        r = hf_buf_puts(out, "]}");
        }
        if (r >= 0)
                r = hf_buf_puts(out, "]}\n");
        return r;
}
