/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "index.h"

#include <jansson.h>
#include <string.h>

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

int hf_index_new(HfIndex **ret)
{
        HfIndex *idx = calloc(1, sizeof(*idx));

        if (!idx)
                return -ENOMEM;
        idx->mask = 1023;
        idx->slots = calloc(idx->mask + 1, sizeof(HfIndexEntry));
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

static int grow_blobs(HfIndex *idx)
{
        size_t nmask = idx->mask * 2 + 1;
        HfIndexEntry *ns = calloc(nmask + 1, sizeof(HfIndexEntry));

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
        return 0;
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

static int parse_error(HfBuf *err, const char *msg)
{
        if (err) {
                hf_buf_reset(err);
                (void)hf_buf_puts(err, msg);
        }
        return -EPROTO;
}

static bool get_u32(json_t *o, const char *key, bool required, uint32_t *ret)
{
        json_t *v = json_object_get(o, key);

        if (!v) {
                *ret = 0;
                return !required;
        }
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > (json_int_t)UINT32_MAX)
                return false;
        *ret = (uint32_t)json_integer_value(v);
        return true;
}

static bool get_id(json_t *o, const char *key, HfId *ret)
{
        json_t *v = json_object_get(o, key);

        return v && json_is_string(v) &&
               hf_id_parse(json_string_value(v), json_string_length(v), ret) >= 0;
}

typedef struct ParsedEntry {
        size_t pack; /* position in the file's pack list */
        HfIndexEntry e;
} ParsedEntry;

int hf_index_parse(HfIndex *idx, const void *json, size_t n, HfBuf *err)
{
        _cleanup_free_ ParsedEntry *v = NULL;
        _cleanup_free_ HfId *pack_ids = NULL;
        size_t nv = 0, capv = 0;
        json_error_t jerr;
        json_t *root, *packs;
        int r = 0;

        root = json_loadb(json, n, 0, &jerr);
        if (!root) {
                if (err) {
                        hf_buf_reset(err);
                        (void)hf_buf_printf(err, "malformed JSON at line %d column %d: %s",
                                            jerr.line, jerr.column, jerr.text);
                }
                return -EPROTO;
        }
        packs = json_is_object(root) ? json_object_get(root, "packs") : NULL;
        if (!packs || !json_is_array(packs)) {
                r = parse_error(err, "no \"packs\" array (a legacy index format, or not an "
                                     "index)");
                goto out;
        }
        pack_ids = calloc(MAX(json_array_size(packs), (size_t)1), sizeof(HfId));
        if (!pack_ids) {
                r = -ENOMEM;
                goto out;
        }
        /* Validate everything first: a malformed file contributes nothing. */
        for (size_t i = 0; i < json_array_size(packs); i++) {
                json_t *p = json_array_get(packs, i), *blobs;

                if (!json_is_object(p) || !get_id(p, "id", &pack_ids[i])) {
                        r = parse_error(err, "a pack entry has no valid \"id\"");
                        goto out;
                }
                blobs = json_object_get(p, "blobs");
                if (!blobs || !json_is_array(blobs)) {
                        /* restic accepts null blobs (an empty pack entry). */
                        if (blobs && json_is_null(blobs))
                                continue;
                        r = parse_error(err, "a pack entry has no \"blobs\" array");
                        goto out;
                }
                for (size_t j = 0; j < json_array_size(blobs); j++) {
                        json_t *b = json_array_get(blobs, j), *type;
                        HfIndexEntry e = { 0 };

                        if (!json_is_object(b) || !get_id(b, "id", &e.id)) {
                                r = parse_error(err, "a blob entry has no valid \"id\"");
                                goto out;
                        }
                        type = json_object_get(b, "type");
                        if (!type || !json_is_string(type)) {
                                r = parse_error(err, "a blob entry has no \"type\"");
                                goto out;
                        }
                        if (strcmp(json_string_value(type), "data") == 0)
                                e.type = HF_BLOB_DATA;
                        else if (strcmp(json_string_value(type), "tree") == 0)
                                e.type = HF_BLOB_TREE;
                        else {
                                r = parse_error(err, "a blob entry has an unknown \"type\"");
                                goto out;
                        }
                        if (!get_u32(b, "offset", true, &e.offset) ||
                            !get_u32(b, "length", true, &e.length) ||
                            !get_u32(b, "uncompressed_length", false, &e.uncompressed_length)) {
                                r = parse_error(err, "a blob entry has a missing or invalid "
                                                     "offset, length or uncompressed_length");
                                goto out;
                        }
                        if (e.length < HF_CRYPTO_OVERHEAD ||
                            (uint64_t)e.offset + e.length > UINT32_MAX) {
                                r = parse_error(err, "a blob entry has an impossible length");
                                goto out;
                        }
                        if (nv == capv) {
                                size_t ncap = capv ? capv * 2 : 256;
                                ParsedEntry *nvv = realloc(v, ncap * sizeof(*nvv));
                                if (!nvv) {
                                        r = -ENOMEM;
                                        goto out;
                                }
                                v = nvv;
                                capv = ncap;
                        }
                        v[nv++] = (ParsedEntry){ .pack = i, .e = e };
                }
        }
        for (size_t i = 0; i < nv; i++) {
                uint32_t pos;
                r = hf_index_add_pack(idx, &pack_ids[v[i].pack], &pos);
                if (r < 0)
                        goto out;
                v[i].e.pack = pos;
                r = hf_index_add(idx, &v[i].e);
                if (r < 0)
                        goto out;
        }
        r = 0;
out:
        json_decref(root);
        return r;
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
