/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Repository layer: pack headers, the blob index, index/tree/snapshot/key/config JSON and the
 * blob codec, checked against the bytes restic writes (restic-format.md §2-§6).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <malloc.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "../../src/backend/backend.h"
#include "../../src/base/gojson.h"
#include "../../src/base/util.h"
#include "../../src/crypto/crypto.h"
#include "../../src/repo/codec.h"
#include "../../src/repo/index.h"
#include "../../src/repo/key.h"
#include "../../src/repo/pack.h"
#include "../../src/repo/repo.h"
#include "../../src/repo/snapshot.h"
#include "../../src/repo/tree.h"
#include "smaps.h"

/* Cheap scrypt for tests: a real key file, without half a second per call. */
static const HfKdfParams cheap_kdf = { .N = 1024, .r = 8, .p = 1 };

static HfId id_fill(uint8_t v)
{
        HfId id;

        memset(id.b, v, sizeof(id.b));
        return id;
}

/* xorshift64*: reproducible "random" IDs and data, so a failure can be replayed. */
static uint64_t rng_next(uint64_t *s)
{
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        return *s * 0x2545F4914F6CDD1DULL;
}

static void rng_fill(uint64_t *s, void *p, size_t n)
{
        uint8_t *o = p;

        for (size_t i = 0; i < n; i += 8) {
                uint64_t v = rng_next(s);
                memcpy(o + i, &v, MIN((size_t)8, n - i));
        }
}

static void put_le32(uint8_t *o, uint32_t v)
{
        o[0] = (uint8_t)v;
        o[1] = (uint8_t)(v >> 8);
        o[2] = (uint8_t)(v >> 16);
        o[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *i)
{
        return (uint32_t)i[0] | (uint32_t)i[1] << 8 | (uint32_t)i[2] << 16 | (uint32_t)i[3] << 24;
}

static void assert_buf_str(const HfBuf *b, const char *want)
{
        assert_non_null(b->data);
        if (b->len != strlen(want) || memcmp(b->data, want, b->len) != 0)
                fail_msg("got:\n%.*s\nwant:\n%s", (int)b->len, (const char *)b->data, want);
}

/* A temporary local backend with the vault layout. */
typedef struct TempBackend {
        char path[64];
        HfBackend *b;
} TempBackend;

static void temp_backend_open(TempBackend *t)
{
        (void)snprintf(t->path, sizeof(t->path), "/tmp/hf-test-repo-XXXXXX");
        assert_non_null(mkdtemp(t->path));
        assert_int_equal(hf_backend_local_open(t->path, true, &t->b), 0);
        assert_int_equal(t->b->ops->create(t->b), 0);
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)st;
        (void)flag;
        (void)ftw;
        return remove(p);
}

static void temp_backend_close(TempBackend *t)
{
        hf_backend_free(t->b);
        t->b = NULL;
        (void)nftw(t->path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* --------------------------------------------------------------------------------------------
 * Packs */

typedef struct PackFixture {
        HfKey key;
        HfCodec *codec;
        HfCipher *cipher;
        HfPacker *packer;
        HfId ids[6];
        uint32_t lens[6], ulens[6];
        uint8_t types[6];
} PackFixture;

/* Six blobs: data and tree, compressed and not, one empty. */
static void pack_fixture_build(PackFixture *f)
{
        _cleanup_buf_ HfBuf enc = HF_BUF_INIT(1u << 24);
        uint64_t seed = 42;

        assert_int_equal(hf_key_generate(&f->key), 0);
        assert_int_equal(hf_codec_new(&f->key, HF_COMPRESSION_AUTO, &f->codec), 0);
        assert_int_equal(hf_cipher_new(&f->key, &f->cipher), 0);
        assert_int_equal(hf_packer_new(&f->packer), 0);
        for (size_t i = 0; i < 6; i++) {
                uint8_t plain[5000];
                size_t n = i == 5 ? 0 : 1000 * (i + 1);
                bool compress = i != 3;

                if (i == 0 || i == 1 || i == 3)
                        memset(plain, 'a' + (int)i, n); /* compresses */
                else
                        rng_fill(&seed, plain, n); /* does not */
                hf_sha256(plain, n, &f->ids[i]);
                f->types[i] = i == 1 || i == 4 ? HF_BLOB_TREE : HF_BLOB_DATA;
                assert_int_equal(hf_codec_seal(f->codec, plain, n, compress, &enc, &f->ulens[i]),
                                 0);
                f->lens[i] = (uint32_t)enc.len;
                assert_int_equal(hf_packer_add(f->packer, (HfBlobType)f->types[i], &f->ids[i],
                                               enc.data, enc.len, f->ulens[i]),
                                 0);
        }
        /* Compressed data and tree blobs, and three kinds stored as they are. */
        assert_int_equal(f->ulens[0], 1000);
        assert_int_equal(f->ulens[1], 2000);
        assert_int_equal(f->ulens[2], 0); /* random data is not made bigger */
        assert_int_equal(f->ulens[3], 0); /* compression not asked for */
        assert_int_equal(f->ulens[4], 0);
        assert_int_equal(f->ulens[5], 0); /* empty: never marked compressed */
}

static void pack_fixture_done(PackFixture *f)
{
        hf_packer_free(f->packer);
        hf_cipher_free(f->cipher);
        hf_codec_free(f->codec);
        hf_key_wipe(&f->key);
}

static void check_blobs(const PackFixture *f, const HfPackBlob *v, size_t n)
{
        uint32_t off = 0;

        assert_int_equal(n, 6);
        for (size_t i = 0; i < n; i++) {
                assert_true(hf_id_eq(&v[i].id, &f->ids[i]));
                assert_int_equal(v[i].type, f->types[i]);
                assert_int_equal(v[i].offset, off);
                assert_int_equal(v[i].length, f->lens[i]);
                assert_int_equal(v[i].uncompressed_length, f->ulens[i]);
                off += f->lens[i];
        }
}

static void test_pack_header_roundtrip(void **state)
{
        PackFixture f = { 0 };
        _cleanup_free_ HfPackBlob *parsed = NULL;
        _cleanup_buf_ HfBuf plain = HF_BUF_INIT(1u << 20);
        const uint8_t *data;
        size_t len, n, entries = 0;
        uint64_t data_len = 0, sum = 0;
        uint32_t hlen;
        HfId pack_id, want;

        (void)state;
        pack_fixture_build(&f);
        check_blobs(&f, hf_packer_blobs(f.packer), hf_packer_count(f.packer));
        for (size_t i = 0; i < 6; i++)
                sum += f.lens[i];
        assert_int_equal(hf_packer_size(f.packer), sum);

        assert_int_equal(hf_packer_finish(f.packer, f.cipher, &pack_id), 0);
        data = hf_packer_data(f.packer, &len);
        hf_sha256(data, len, &want);
        assert_true(hf_id_eq(&pack_id, &want));

        /* The trailing LE32 counts the encrypted header with its overhead, not itself. */
        hlen = get_le32(data + len - 4);
        for (size_t i = 0; i < 6; i++)
                entries += f.ulens[i] ? HF_PACK_ENTRY_COMPRESSED : HF_PACK_ENTRY_PLAIN;
        assert_int_equal(hlen, entries + HF_CRYPTO_OVERHEAD);
        assert_int_equal(sum + hlen + 4, len);

        assert_int_equal(hf_buf_reserve(&plain, hlen), 0);
        assert_int_equal(hf_cipher_decrypt(f.cipher, data + len - 4 - hlen, hlen, plain.data), 0);
        plain.len = hlen - HF_CRYPTO_OVERHEAD;
        /* Entry layout: type byte (2/3 when compressed), LE32 length, [LE32 ulen], ID. */
        assert_int_equal(plain.data[0], 2);
        assert_int_equal(get_le32(plain.data + 1), f.lens[0]);
        assert_int_equal(get_le32(plain.data + 5), 1000);
        assert_memory_equal(plain.data + 9, f.ids[0].b, 32);
        assert_int_equal(plain.data[41], 3); /* compressed tree */
        assert_int_equal(get_le32(plain.data + 42), f.lens[1]);
        assert_int_equal(get_le32(plain.data + 46), 2000);
        assert_memory_equal(plain.data + 50, f.ids[1].b, 32);
        assert_int_equal(plain.data[82], 0); /* data stored as is: 37-byte entry */
        assert_int_equal(get_le32(plain.data + 83), f.lens[2]);
        assert_memory_equal(plain.data + 87, f.ids[2].b, 32);

        assert_int_equal(hf_pack_parse_header(plain.data, plain.len, &parsed, &n, &data_len), 0);
        check_blobs(&f, parsed, n);
        assert_int_equal(data_len, sum);

        /* A reset packer starts from offset 0 again. */
        hf_packer_reset(f.packer);
        assert_int_equal(hf_packer_count(f.packer), 0);
        assert_int_equal(hf_packer_size(f.packer), 0);
        pack_fixture_done(&f);
}

static void test_pack_parse_header_errors(void **state)
{
        uint8_t h[2 * HF_PACK_ENTRY_COMPRESSED + 1];
        HfPackBlob *v = NULL;
        size_t n = 99;
        uint64_t dl;

        (void)state;
        memset(h, 0x11, sizeof(h));
        /* An empty header is valid (no blobs). */
        assert_int_equal(hf_pack_parse_header(h, 0, &v, &n, &dl), 0);
        assert_int_equal(n, 0);
        assert_int_equal(dl, 0);
        free(v);
        v = NULL;

        h[0] = 0;
        put_le32(h + 1, 100);
        /* A whole plain entry parses; one byte short does not. */
        assert_int_equal(hf_pack_parse_header(h, HF_PACK_ENTRY_PLAIN, &v, &n, &dl), 0);
        assert_int_equal(n, 1);
        assert_int_equal(v[0].length, 100);
        free(v);
        v = NULL;
        assert_int_equal(hf_pack_parse_header(h, HF_PACK_ENTRY_PLAIN - 1, &v, &n, &dl), -EPROTO);
        /* A valid entry followed by a stray byte: the second entry is truncated. */
        assert_int_equal(hf_pack_parse_header(h, HF_PACK_ENTRY_PLAIN + 1, &v, &n, &dl), -EPROTO);

        h[0] = 3;
        put_le32(h + 5, 500);
        assert_int_equal(hf_pack_parse_header(h, HF_PACK_ENTRY_COMPRESSED, &v, &n, &dl), 0);
        assert_int_equal(v[0].type, HF_BLOB_TREE);
        assert_int_equal(v[0].uncompressed_length, 500);
        free(v);
        v = NULL;
        assert_int_equal(hf_pack_parse_header(h, HF_PACK_ENTRY_COMPRESSED - 1, &v, &n, &dl),
                         -EPROTO);

        /* Unknown type bytes, first and second entry. */
        for (int t = 4; t < 256; t += 51) {
                h[0] = (uint8_t)t;
                assert_int_equal(hf_pack_parse_header(h, HF_PACK_ENTRY_COMPRESSED, &v, &n, &dl),
                                 -EPROTO);
        }
        h[0] = 0;
        h[HF_PACK_ENTRY_PLAIN] = 4;
        assert_int_equal(hf_pack_parse_header(h, 2 * HF_PACK_ENTRY_PLAIN, &v, &n, &dl), -EPROTO);

        /* A blob shorter than the crypto overhead cannot exist. */
        h[0] = 0;
        put_le32(h + 1, HF_CRYPTO_OVERHEAD - 1);
        assert_int_equal(hf_pack_parse_header(h, HF_PACK_ENTRY_PLAIN, &v, &n, &dl), -EPROTO);
        assert_null(v);
}

static void save_pack(HfBackend *b, const char *hex, const void *p, size_t n)
{
        assert_int_equal(hf_backend_save(b, HF_FILE_PACK, hex, p, n), 0);
}

/* Pages of [off, off + len) of the mapping m that are in the page cache. */
static size_t resident_pages(const uint8_t *m, size_t off, size_t len)
{
        size_t page = (size_t)sysconf(_SC_PAGESIZE), n = len / page, count = 0;
        _cleanup_free_ unsigned char *vec = malloc(n);

        assert_non_null(vec);
        assert_int_equal(mincore((void *)(m + off), len, vec), 0);
        for (size_t i = 0; i < n; i++)
                count += vec[i] & 1;
        return count;
}

/* len bytes of the file at path, mapped after it was dropped from the page cache (checked: this
 * needs a file system with a page cache, not tmpfs). */
static uint8_t *map_uncached(const char *path, size_t len)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        uint8_t *m;

        assert_true(fd >= 0);
        assert_int_equal(fdatasync(fd), 0);
        assert_int_equal(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
        m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
        assert_true(m != MAP_FAILED);
        close(fd);
        assert_int_equal(resident_pages(m, 0, len), 0);
        return m;
}

/* A local vault's prefetch reads the asked bytes of a pack into the page cache, no others. */
static void test_local_prefetch(void **state)
{
        const size_t mib = 1u << 20, len = 8 * mib, page = (size_t)sysconf(_SC_PAGESIZE);
        _cleanup_free_ uint8_t *data = malloc(len);
        char hex[HF_ID_HEX_LEN + 1], path[160];
        TempBackend tb;
        uint8_t *m, *im;

        (void)state;
        assert_non_null(data);
        for (size_t i = 0; i < len; i++)
                data[i] = (uint8_t)(i * 2654435761u >> 13);
        temp_backend_open(&tb);
        hf_id_hex(&(HfId){ .b = { 0x5e, 0x11 } }, hex);
        save_pack(tb.b, hex, data, len);
        (void)snprintf(path, sizeof(path), "%s/data/%.2s/%s", tb.path, hex, hex);
        m = map_uncached(path, len);

        hf_backend_prefetch(tb.b, HF_FILE_PACK, hex, 2 * mib, 3 * mib);
        /* Read in the background: wait for it, up to 10 s. */
        for (int i = 0; i < 1000 && resident_pages(m, 2 * mib, 3 * mib) < 3 * mib / page; i++)
                nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
        assert_int_equal(resident_pages(m, 2 * mib, 3 * mib), 3 * mib / page);
        assert_int_equal(resident_pages(m, 0, mib), 0);
        assert_int_equal(resident_pages(m, 6 * mib, 2 * mib), 0);

        /* Hints about what is not there are ignored. */
        hf_backend_prefetch(tb.b, HF_FILE_PACK, "00", 0, mib);
        assert_int_equal(resident_pages(m, 0, mib), 0);

        /* Only packs are read ahead: not an index file of the same name. */
        assert_int_equal(hf_backend_save(tb.b, HF_FILE_INDEX, hex, data, mib), 0);
        (void)snprintf(path, sizeof(path), "%s/index/%s", tb.path, hex);
        im = map_uncached(path, mib);
        hf_backend_prefetch(tb.b, HF_FILE_INDEX, hex, 0, mib);
        nanosleep(&(struct timespec){ .tv_nsec = 200 * 1000 * 1000 }, NULL);
        assert_int_equal(resident_pages(im, 0, mib), 0);
        assert_int_equal(resident_pages(m, 0, mib), 0);

        assert_int_equal(munmap(im, mib), 0);
        assert_int_equal(munmap(m, len), 0);
        temp_backend_close(&tb);
}

static void test_local_lists_at_once(void **state)
{
        TempBackend tb;
        struct statfs sf;

        (void)state;
        assert_true(hf_backend_local_fs_type(0xEF53));     /* ext4 */
        assert_true(hf_backend_local_fs_type(0x58465342)); /* XFS */
        assert_true(hf_backend_local_fs_type(0x9123683E)); /* btrfs */
        assert_true(hf_backend_local_fs_type(0x01021994)); /* tmpfs */
        /* f_type is a signed word: a magic with the top bit set, widened from 32 bits with
         * its sign, still matches. */
        assert_true(hf_backend_local_fs_type((unsigned long)(long)(int32_t)0x9123683E));
        assert_false(hf_backend_local_fs_type(0x6969));     /* NFS */
        assert_false(hf_backend_local_fs_type(0xFF534D42)); /* CIFS */
        assert_false(hf_backend_local_fs_type(0xFE534D42)); /* SMB2 */
        assert_false(hf_backend_local_fs_type(0x65735546)); /* FUSE */
        assert_false(hf_backend_local_fs_type(0x01021997)); /* 9p */
        assert_false(hf_backend_local_fs_type(0x00C36400)); /* CephFS */
        assert_false(hf_backend_local_fs_type(0x01161970)); /* GFS2 */
        assert_false(hf_backend_local_fs_type(0x794C7630)); /* overlayfs: layers unknown */
        assert_false(hf_backend_local_fs_type(0));

        /* The backend asks about the folder of the type, as statfs(2) sees it. */
        temp_backend_open(&tb);
        assert_int_equal(statfs(tb.path, &sf), 0);
        assert_int_equal(hf_backend_lists_at_once(tb.b, HF_FILE_LOCK),
                         hf_backend_local_fs_type((unsigned long)sf.f_type));
        temp_backend_close(&tb);
}

static void test_pack_read_header_backend(void **state)
{
        PackFixture f = { 0 };
        TempBackend tb;
        _cleanup_buf_ HfBuf err = HF_BUF_INIT(512);
        _cleanup_free_ uint8_t *copy = NULL;
        HfPackBlob *v = NULL;
        const uint8_t *data;
        char hex[HF_ID_HEX_LEN + 1];
        size_t len, n;
        HfId pack_id;

        (void)state;
        temp_backend_open(&tb);
        pack_fixture_build(&f);
        assert_int_equal(hf_packer_finish(f.packer, f.cipher, &pack_id), 0);
        data = hf_packer_data(f.packer, &len);
        hf_id_hex(&pack_id, hex);
        save_pack(tb.b, hex, data, len);

        assert_int_equal(hf_pack_read_header(tb.b, f.cipher, hex, len, &v, &n, &err), 0);
        check_blobs(&f, v, n);
        free(v);
        v = NULL;

        copy = malloc(len + 1);
        assert_non_null(copy);

        /* Header lengths out of range: 0, below the crypto overhead, past the file. */
        const uint32_t bad_hlen[] = { 0, HF_CRYPTO_OVERHEAD - 1, (uint32_t)len - 3, UINT32_MAX };
        for (size_t i = 0; i < ELEMENTSOF(bad_hlen); i++) {
                memcpy(copy, data, len);
                put_le32(copy + len - 4, bad_hlen[i]);
                hf_id_hex(&(HfId){ .b = { 0xa0, (uint8_t)i } }, hex);
                save_pack(tb.b, hex, copy, len);
                hf_buf_reset(&err);
                assert_int_equal(hf_pack_read_header(tb.b, f.cipher, hex, len, &v, &n, &err),
                                 -EPROTO);
                assert_non_null(strstr((char *)err.data, "out of range"));
        }

        /* A header length above 16 MiB in a file big enough to hold it. */
        {
                size_t big = HF_PACK_HEADER_MAX + 64;
                _cleanup_free_ uint8_t *z = calloc(1, big);
                assert_non_null(z);
                put_le32(z + big - 4, HF_PACK_HEADER_MAX + 1);
                hf_id_hex(&(HfId){ .b = { 0xa1 } }, hex);
                save_pack(tb.b, hex, z, big);
                assert_int_equal(hf_pack_read_header(tb.b, f.cipher, hex, big, &v, &n, &err),
                                 -EPROTO);
        }

        /* Too short to hold any header. */
        hf_id_hex(&(HfId){ .b = { 0xa2 } }, hex);
        save_pack(tb.b, hex, data, 20);
        assert_int_equal(hf_pack_read_header(tb.b, f.cipher, hex, 20, &v, &n, &err), -EPROTO);

        /* A flipped bit in the encrypted header: the MAC catches it. */
        memcpy(copy, data, len);
        copy[len - 10] ^= 1;
        hf_id_hex(&(HfId){ .b = { 0xa3 } }, hex);
        save_pack(tb.b, hex, copy, len);
        assert_int_equal(hf_pack_read_header(tb.b, f.cipher, hex, len, &v, &n, &err), -EBADMSG);

        /* One extra byte in front: the blobs no longer fill the file exactly. */
        copy[0] = 0;
        memcpy(copy + 1, data, len);
        hf_id_hex(&(HfId){ .b = { 0xa4 } }, hex);
        save_pack(tb.b, hex, copy, len + 1);
        assert_int_equal(hf_pack_read_header(tb.b, f.cipher, hex, len + 1, &v, &n, &err), -EPROTO);
        assert_non_null(strstr((char *)err.data, "whole file"));
        assert_null(v);

        pack_fixture_done(&f);
        temp_backend_close(&tb);
}

/* --------------------------------------------------------------------------------------------
 * Index */

#define N_RANDOM 100000

static HfIndexEntry entry_for(uint64_t *seed, uint32_t i)
{
        HfIndexEntry e = { 0 };

        rng_fill(seed, e.id.b, sizeof(e.id.b));
        e.type = (uint8_t)(i % 3 == 0 ? HF_BLOB_TREE : HF_BLOB_DATA);
        e.pack = i % 97;
        e.offset = i * 7;
        e.length = 32 + i;
        e.uncompressed_length = i % 2 ? i * 3 : 0;
        return e;
}

static void assert_entry_eq(const HfIndexEntry *a, const HfIndexEntry *b)
{
        assert_true(hf_id_eq(&a->id, &b->id));
        assert_int_equal(a->type, b->type);
        assert_int_equal(a->pack, b->pack);
        assert_int_equal(a->offset, b->offset);
        assert_int_equal(a->length, b->length);
        assert_int_equal(a->uncompressed_length, b->uncompressed_length);
}

static int count_entry(void *ud, const HfIndexEntry *e)
{
        (void)e;
        (*(size_t *)ud)++;
        return 0;
}

static void test_index_random(void **state)
{
        _cleanup_(hf_index_freep) HfIndex *idx = NULL;
        _cleanup_free_ HfIndexEntry *v = calloc(N_RANDOM, sizeof(HfIndexEntry));
        uint64_t seed = 0x1234567;
        size_t count = N_RANDOM;

        (void)state;
        assert_non_null(v);
        assert_int_equal(hf_index_new(&idx), 0);
        for (uint32_t i = 0; i < N_RANDOM; i++) {
                v[i] = entry_for(&seed, i);
                assert_int_equal(hf_index_add(idx, &v[i]), 1);
        }
        assert_int_equal(hf_index_count(idx), N_RANDOM);
        for (uint32_t i = 0; i < N_RANDOM; i++) {
                const HfIndexEntry *e = hf_index_lookup(idx, (HfBlobType)v[i].type, &v[i].id);
                assert_non_null(e);
                assert_entry_eq(e, &v[i]);
                /* The same ID as the other blob type is a different key. */
                assert_null(hf_index_lookup(idx, (HfBlobType)!v[i].type, &v[i].id));
        }
        /* A second copy keeps the first (any copy of a blob is as good as another). */
        {
                HfIndexEntry dup = v[5];
                dup.pack = 1234;
                assert_int_equal(hf_index_add(idx, &dup), 0);
                assert_int_equal(hf_index_lookup(idx, (HfBlobType)dup.type, &dup.id)->pack,
                                 v[5].pack);
                dup.length = 0;
                assert_int_equal(hf_index_add(idx, &dup), -EINVAL);
        }
        /* Update moves an entry; unknown ones are -ENOENT. */
        for (uint32_t i = 0; i < N_RANDOM; i += 10) {
                v[i].pack = 7777;
                v[i].offset = 1;
                assert_int_equal(hf_index_update(idx, &v[i]), 0);
        }
        {
                HfIndexEntry none = entry_for(&seed, 1);
                assert_int_equal(hf_index_update(idx, &none), -ENOENT);
                assert_int_equal(hf_index_remove(idx, (HfBlobType)none.type, &none.id), -ENOENT);
        }
        /* Remove a pseudo-random half; the rest must stay reachable. */
        for (uint32_t i = 0; i < N_RANDOM; i++) {
                if (((uint64_t)i * 2654435761u >> 7) % 2)
                        continue;
                assert_int_equal(hf_index_remove(idx, (HfBlobType)v[i].type, &v[i].id), 0);
                v[i].length = 0; /* marks it removed here */
                count--;
        }
        assert_int_equal(hf_index_count(idx), count);
        for (uint32_t i = 0; i < N_RANDOM; i++) {
                const HfIndexEntry *e = hf_index_lookup(idx, (HfBlobType)v[i].type, &v[i].id);
                if (v[i].length == 0) {
                        assert_null(e);
                        continue;
                }
                assert_non_null(e);
                assert_entry_eq(e, &v[i]);
        }
        /* foreach visits each remaining entry once. */
        {
                size_t seen = 0;
                assert_int_equal(hf_index_foreach(idx, count_entry, &seen), 0);
                assert_int_equal(seen, count);
        }
}

/*
 * hf_index_reserve makes the table big enough at once: entries already in stay reachable, and
 * adding up to the reserved count moves nothing (a lookup's pointer stays valid, which it
 * would not across a growth). A smaller reservation changes nothing.
 */
static void test_index_reserve(void **state)
{
        _cleanup_(hf_index_freep) HfIndex *idx = NULL;
        _cleanup_free_ HfIndexEntry *v = calloc(N_RANDOM, sizeof(HfIndexEntry));
        const HfIndexEntry *first;
        uint64_t seed = 0x7654321;

        (void)state;
        assert_non_null(v);
        assert_int_equal(hf_index_new(&idx), 0);
        for (uint32_t i = 0; i < N_RANDOM; i++)
                v[i] = entry_for(&seed, i);
        for (uint32_t i = 0; i < 3000; i++)
                assert_int_equal(hf_index_add(idx, &v[i]), 1);
        assert_int_equal(hf_index_reserve(idx, N_RANDOM), 0);
        first = hf_index_lookup(idx, (HfBlobType)v[0].type, &v[0].id);
        assert_non_null(first);
        assert_entry_eq(first, &v[0]);
        assert_int_equal(hf_index_reserve(idx, 10), 0);
        for (uint32_t i = 3000; i < N_RANDOM; i++)
                assert_int_equal(hf_index_add(idx, &v[i]), 1);
        assert_ptr_equal(hf_index_lookup(idx, (HfBlobType)v[0].type, &v[0].id), first);
        assert_int_equal(hf_index_count(idx), N_RANDOM);
        for (uint32_t i = 0; i < N_RANDOM; i++) {
                const HfIndexEntry *e = hf_index_lookup(idx, (HfBlobType)v[i].type, &v[i].id);
                assert_non_null(e);
                assert_entry_eq(e, &v[i]);
        }
}

/*
 * A large blob table starts on a 2 MiB boundary and is advised huge pages (it is filled at
 * once when rehashed); a small one is left to malloc.
 */
static void test_index_table_huge(void **state)
{
        _cleanup_(hf_index_freep) HfIndex *idx = NULL;
        const void *t;
        size_t bytes;

        (void)state;
        assert_int_equal(hf_index_new(&idx), 0);
        t = hf_index_table(idx, &bytes);
        assert_true(bytes < HF_HUGE_HINT_MIN);
        if (smaps_have_thp())
                assert_int_equal(smaps_huge_advised(t), 0);
        /* Fresh memory is zero anyway: glibc fills what it hands out with 0xa5 while the test
         * reserves, so a table left unzeroed shows. */
        (void)mallopt(M_PERTURB, 0x5a);
        assert_int_equal(hf_index_reserve(idx, 200000), 0);
        (void)mallopt(M_PERTURB, 0);
        t = hf_index_table(idx, &bytes);
        assert_true(bytes >= HF_HUGE_HINT_MIN);
        assert_int_equal((uintptr_t)t % (2u << 20), 0);
        if (smaps_have_thp())
                assert_int_equal(smaps_huge_advised(t), 1);
        /* Zeroed: every slot empty, so lookups find nothing. */
        for (size_t i = 0; i < bytes; i += 4096)
                assert_int_equal(((const uint8_t *)t)[i], 0);
}

/*
 * IDs that share a home slot make one long probe chain (and wrap around the table's end);
 * removing from its middle, its start and its end must leave the others reachable.
 */
static void test_index_backward_shift(void **state)
{
        _cleanup_(hf_index_freep) HfIndex *idx = NULL;
        HfIndexEntry v[40];
        bool gone[40] = { false };
        const int order[] = { 20, 0, 39, 1, 38, 10, 11, 12, 25 };

        (void)state;
        assert_int_equal(hf_index_new(&idx), 0);
        for (uint32_t i = 0; i < 40; i++) {
                /* The hash is the first 8 bytes: all data blobs land on slot 1023 of 1024. */
                uint64_t h = 1023 + (uint64_t)(i % 4) * 1024 * 1024;
                v[i] = (HfIndexEntry){ .type = HF_BLOB_DATA, .length = 100 + i, .offset = i };
                memcpy(v[i].id.b, &h, 8);
                v[i].id.b[8] = (uint8_t)i;
                v[i].id.b[31] = 0x5a;
                assert_int_equal(hf_index_add(idx, &v[i]), 1);
        }
        for (size_t k = 0; k < ELEMENTSOF(order); k++) {
                int d = order[k];
                assert_int_equal(hf_index_remove(idx, HF_BLOB_DATA, &v[d].id), 0);
                gone[d] = true;
                for (int i = 0; i < 40; i++) {
                        const HfIndexEntry *e = hf_index_lookup(idx, HF_BLOB_DATA, &v[i].id);
                        if (gone[i])
                                assert_null(e);
                        else {
                                assert_non_null(e);
                                assert_int_equal(e->length, 100 + i);
                        }
                }
        }
        /* Removed entries can come back. */
        assert_int_equal(hf_index_add(idx, &v[20]), 1);
        assert_non_null(hf_index_lookup(idx, HF_BLOB_DATA, &v[20].id));
        assert_int_equal(hf_index_count(idx), 40 - ELEMENTSOF(order) + 1);
}

static void test_index_packs(void **state)
{
        _cleanup_(hf_index_freep) HfIndex *idx = NULL;
        uint32_t pos, again;

        (void)state;
        assert_int_equal(hf_index_new(&idx), 0);
        /* Enough packs to grow the pack table a few times. */
        for (uint32_t i = 0; i < 2000; i++) {
                HfId p = id_fill(0);
                memcpy(p.b, &i, sizeof(i));
                assert_int_equal(hf_index_add_pack(idx, &p, &pos), 0);
                assert_int_equal(pos, i);
                assert_int_equal(hf_index_add_pack(idx, &p, &again), 0);
                assert_int_equal(again, i);
        }
        assert_int_equal(hf_index_n_packs(idx), 2000);
        for (uint32_t i = 0; i < 2000; i++) {
                HfId p = id_fill(0);
                memcpy(p.b, &i, sizeof(i));
                assert_int_equal(hf_index_find_pack(idx, &p, &pos), 0);
                assert_int_equal(pos, i);
                assert_true(hf_id_eq(hf_index_pack_id(idx, pos), &p));
        }
        {
                HfId p = id_fill(0xee);
                assert_int_equal(hf_index_find_pack(idx, &p, &pos), -ENOENT);
        }
        assert_null(hf_index_pack_id(idx, 2000));
}

/* 64-hex-digit IDs for JSON fixtures. */
#define ID_0 "0000000000000000000000000000000000000000000000000000000000000000"
#define ID_1 "1111111111111111111111111111111111111111111111111111111111111111"
#define ID_2 "2222222222222222222222222222222222222222222222222222222222222222"
#define ID_3 "3333333333333333333333333333333333333333333333333333333333333333"
#define ID_4 "4444444444444444444444444444444444444444444444444444444444444444"
#define ID_7 "7777777777777777777777777777777777777777777777777777777777777777"
#define ID_8 "8888888888888888888888888888888888888888888888888888888888888888"
#define ID_9 "9999999999999999999999999999999999999999999999999999999999999999"
#define ID_UA "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
#define ID_a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define ID_b "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define ID_c "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
#define ID_e "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"

static const HfIndexEntry *find_blob(HfIndex *idx, HfBlobType t, const char *hex)
{
        HfId id;

        assert_int_equal(hf_id_parse(hex, strlen(hex), &id), 0);
        return hf_index_lookup(idx, t, &id);
}

static void test_index_parse_restic(void **state)
{
        /* As restic writes it, with blobs out of offset order, plus fields it may add. */
        static const char json[] = "{\"supersedes\":[\"" ID_9 "\"],\"packs\":[{\"id\":\"" ID_a
                                   "\",\"blobs\":["
                                   "{\"id\":\"" ID_1
                                   "\",\"type\":\"tree\",\"offset\":986515,\"length\":857,"
                                   "\"uncompressed_length\":4162},"
                                   "{\"id\":\"" ID_2
                                   "\",\"type\":\"data\",\"offset\":0,\"length\":986483,"
                                   "\"uncompressed_length\":986417,\"future\":{\"x\":[1,2]}},"
                                   "{\"id\":\"" ID_3
                                   "\",\"type\":\"data\",\"offset\":986483,\"length\":32}],"
                                   "\"extra\":true},"
                                   "{\"id\":\"" ID_b "\",\"blobs\":null},"
                                   "{\"id\":\"" ID_c
                                   "\",\"blobs\":[{\"length\":40,\"offset\":0,\"type\":\"data\","
                                   "\"id\":\"" ID_4 "\"}]}],\"unknown\":null}\n";
        _cleanup_(hf_index_freep) HfIndex *idx = NULL;
        _cleanup_buf_ HfBuf err = HF_BUF_INIT(512);
        const HfIndexEntry *e;
        uint32_t pos;
        HfId p;

        (void)state;
        assert_int_equal(hf_index_new(&idx), 0);
        assert_int_equal(hf_index_parse(idx, json, sizeof(json) - 1, &err), 0);
        assert_int_equal(hf_index_count(idx), 4);

        e = find_blob(idx, HF_BLOB_TREE, ID_1);
        assert_non_null(e);
        assert_int_equal(e->offset, 986515);
        assert_int_equal(e->length, 857);
        assert_int_equal(e->uncompressed_length, 4162);
        assert_null(find_blob(idx, HF_BLOB_DATA, ID_1));
        assert_int_equal(hf_id_parse(ID_a, 64, &p), 0);
        assert_true(hf_id_eq(hf_index_pack_id(idx, e->pack), &p));

        e = find_blob(idx, HF_BLOB_DATA, ID_2);
        assert_non_null(e);
        assert_int_equal(e->offset, 0);
        assert_int_equal(e->length, 986483);
        assert_int_equal(e->uncompressed_length, 986417);

        e = find_blob(idx, HF_BLOB_DATA, ID_3);
        assert_non_null(e);
        assert_int_equal(e->uncompressed_length, 0); /* absent: stored uncompressed */
        assert_int_equal(e->length, 32);

        e = find_blob(idx, HF_BLOB_DATA, ID_4);
        assert_non_null(e);
        assert_int_equal(hf_id_parse(ID_c, 64, &p), 0);
        assert_true(hf_id_eq(hf_index_pack_id(idx, e->pack), &p));
        assert_int_equal(hf_index_find_pack(idx, &p, &pos), 0);

        /* Parsing merges: a second file adds to the same index; repeats are harmless. */
        assert_int_equal(hf_index_parse(idx, json, sizeof(json) - 1, &err), 0);
        assert_int_equal(hf_index_count(idx), 4);
}

static void test_index_parse_malformed(void **state)
{
        static const char *const bad[] = {
                "",
                "{",
                "[]",
                "{\"packs\":{}}",
                "{\"nopacks\":[]}",
                "[{\"id\":\"" ID_a "\",\"blobs\":[]}]", /* the legacy bare-array index */
                "{\"packs\":[{\"blobs\":[]}]}",
                "{\"packs\":[{\"id\":\"xyz\",\"blobs\":[]}]}",
                "{\"packs\":[{\"id\":\"" ID_a "\"}]}",
                "{\"packs\":[{\"id\":\"" ID_a "\",\"blobs\":{}}]}",
                "{\"packs\":[{\"id\":\"" ID_a "\",\"blobs\":[{\"type\":\"data\",\"offset\":0,"
                "\"length\":40}]}]}",
                "{\"packs\":[{\"id\":\"" ID_a "\",\"blobs\":[{\"id\":\"" ID_1 "\","
                "\"type\":\"foo\",\"offset\":0,\"length\":40}]}]}",
                "{\"packs\":[{\"id\":\"" ID_a "\",\"blobs\":[{\"id\":\"" ID_1 "\","
                "\"offset\":0,\"length\":40}]}]}",
                "{\"packs\":[{\"id\":\"" ID_a "\",\"blobs\":[{\"id\":\"" ID_1 "\","
                "\"type\":\"data\",\"length\":40}]}]}",
                "{\"packs\":[{\"id\":\"" ID_a "\",\"blobs\":[{\"id\":\"" ID_1 "\","
                "\"type\":\"data\",\"offset\":-1,\"length\":40}]}]}",
                "{\"packs\":[{\"id\":\"" ID_a "\",\"blobs\":[{\"id\":\"" ID_1 "\","
                "\"type\":\"data\",\"offset\":0,\"length\":31}]}]}",
                "{\"packs\":[{\"id\":\"" ID_a "\",\"blobs\":[{\"id\":\"" ID_1 "\","
                "\"type\":\"data\",\"offset\":4294967295,\"length\":40}]}]}",
                "{\"packs\":[{\"id\":\"" ID_a "\",\"blobs\":[{\"id\":\"" ID_1 "\","
                "\"type\":\"data\",\"offset\":0,\"length\":1.5e3}]}]}",
                "{\"packs\":[{\"id\":\"" ID_a "\",\"blobs\":[{\"id\":\"" ID_1 "\","
                "\"type\":\"data\",\"offset\":0,\"length\":40,\"uncompressed_length\":\"9\"}]}]}",
                "{\"packs\":[{\"id\":\"" ID_a "\",\"blobs\":[{\"id\":\"" ID_1 "\","
                "\"type\":\"data\",\"offset\":0,\"length\":40}]}]} trailing",
        };

        (void)state;
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_(hf_index_freep) HfIndex *idx = NULL;
                _cleanup_buf_ HfBuf err = HF_BUF_INIT(512);
                int r;

                assert_int_equal(hf_index_new(&idx), 0);
                r = hf_index_parse(idx, bad[i], strlen(bad[i]), &err);
                if (r != -EPROTO)
                        fail_msg("input %zu gave %d, not -EPROTO: %s", i, r, bad[i]);
                if (err.len == 0)
                        fail_msg("input %zu: no message", i);
        }
}

static void test_index_format_roundtrip(void **state)
{
        _cleanup_(hf_index_freep) HfIndex *idx = NULL, *back = NULL;
        _cleanup_free_ HfIndexEntry *sorted = NULL;
        _cleanup_buf_ HfBuf out = HF_BUF_INIT(SIZE_MAX / 2), err = HF_BUF_INIT(512);
        uint64_t seed = 99;
        size_t n;
        uint32_t packs[3];

        (void)state;
        assert_int_equal(hf_index_new(&idx), 0);
        for (int p = 0; p < 3; p++) {
                HfId pid = id_fill((uint8_t)(0xa0 + p));
                assert_int_equal(hf_index_add_pack(idx, &pid, &packs[p]), 0);
        }
        for (uint32_t i = 0; i < 300; i++) {
                HfIndexEntry e = entry_for(&seed, i);
                e.pack = packs[i % 3];
                assert_int_equal(hf_index_add(idx, &e), 1);
        }
        assert_int_equal(hf_index_sorted_by_pack(idx, &sorted, &n), 0);
        assert_int_equal(n, 300);
        for (size_t i = 1; i < n; i++)
                assert_true(sorted[i - 1].pack < sorted[i].pack ||
                            (sorted[i - 1].pack == sorted[i].pack &&
                             sorted[i - 1].offset <= sorted[i].offset));
        assert_int_equal(hf_index_format(idx, sorted, n, &out), 0);
        assert_int_equal(out.data[out.len - 1], '\n');

        assert_int_equal(hf_index_new(&back), 0);
        assert_int_equal(hf_index_parse(back, out.data, out.len, &err), 0);
        assert_int_equal(hf_index_count(back), 300);
        assert_int_equal(hf_index_n_packs(back), 3);
        for (size_t i = 0; i < n; i++) {
                const HfIndexEntry *e = hf_index_lookup(back, (HfBlobType)sorted[i].type,
                                                        &sorted[i].id);
                assert_non_null(e);
                assert_true(hf_id_eq(hf_index_pack_id(back, e->pack),
                                     hf_index_pack_id(idx, sorted[i].pack)));
                assert_int_equal(e->offset, sorted[i].offset);
                assert_int_equal(e->length, sorted[i].length);
                assert_int_equal(e->uncompressed_length, sorted[i].uncompressed_length);
        }

        /* The exact bytes for one pack with a compressed and a plain blob. */
        {
                _cleanup_(hf_index_freep) HfIndex *one = NULL;
                HfIndexEntry v[2] = {
                        { .id = id_fill(0x11),
                          .offset = 0,
                          .length = 40,
                          .uncompressed_length = 100,
                          .type = HF_BLOB_DATA },
                        { .id = id_fill(0x22), .offset = 40, .length = 60, .type = HF_BLOB_TREE },
                };
                HfId pid = id_fill(0xcc);
                uint32_t pos;
                assert_int_equal(hf_index_new(&one), 0);
                assert_int_equal(hf_index_add_pack(one, &pid, &pos), 0);
                v[0].pack = v[1].pack = pos;
                hf_buf_reset(&out);
                assert_int_equal(hf_index_format(one, v, 2, &out), 0);
                assert_buf_str(&out, "{\"packs\":[{\"id\":\"" ID_c "\",\"blobs\":["
                                     "{\"id\":\"" ID_1 "\",\"type\":\"data\",\"offset\":0,"
                                     "\"length\":40,\"uncompressed_length\":100},"
                                     "{\"id\":\"" ID_2 "\",\"type\":\"tree\",\"offset\":40,"
                                     "\"length\":60}]}]}\n");
                hf_buf_reset(&out);
                assert_int_equal(hf_index_format(one, v, 0, &out), 0);
                assert_buf_str(&out, "{\"packs\":[]}\n");
        }
}

/* --------------------------------------------------------------------------------------------
 * Trees */

/* 2024-01-02T02:04:05Z */
#define SEC 1704161045
#define T_UTC "2024-01-02T02:04:05.123456789Z"
#define T_OFF "2024-01-02T03:04:05.5+01:00"
#define T_ZERO "0001-01-01T00:00:00Z"
#define TIMES3 "\"mtime\":\"" T_UTC "\",\"atime\":\"" T_UTC "\",\"ctime\":\"" T_UTC "\""

static const HfTime t_utc = { .sec = SEC, .nsec = 123456789, .off = 0 };
static const HfTime t_off = { .sec = SEC, .nsec = 500000000, .off = 3600 };
static const HfTime t_zero = { .sec = -62135596800LL, .nsec = 0, .off = 0 };

static HfNode *add_node(HfTree *t, const char *name, size_t len, HfNodeType type, uint32_t mode)
{
        HfNode *n;

        assert_int_equal(hf_tree_add(t, &n), 0);
        assert_int_equal(hf_node_set_name(n, name, len), 0);
        n->type = type;
        n->mode = mode;
        n->mtime = n->atime = n->ctime = t_utc;
        return n;
}

static void set_content(HfNode *n, size_t k, const uint8_t *fills)
{
        n->content = k ? calloc(k, sizeof(HfId)) : NULL;
        for (size_t i = 0; i < k; i++)
                n->content[i] = id_fill(fills[i]);
        n->n_content = k;
}

/* Nodes of every kind, with the names and targets that need Go's quoting. */
static void build_tree(HfTree *t)
{
        HfNode *n;

        /* Added out of order on purpose: hf_tree_sort orders by raw bytes. */
        n = add_node(t, "q\"uo\\te.txt", 11, HF_NODE_FILE, 0644);
        n->size = 1;
        set_content(n, 1, (const uint8_t[]){ 0x04 });

        n = add_node(t, "a<b>&.txt", 9, HF_NODE_FILE, 0644);
        n->uid = 1000;
        n->gid = 100;
        n->user = strdup("alice");
        n->group = strdup("users");
        n->inode = 11;
        n->device_id = 2049;
        n->size = 5;
        n->links = 1;
        set_content(n, 1, (const uint8_t[]){ 0x01 });

        n = add_node(t, "inv\xfe.txt", 8, HF_NODE_FILE, 0644);
        n->size = 3;
        n->links = 2;
        set_content(n, 2, (const uint8_t[]){ 0x02, 0x03 });

        n = add_node(t, "dev", 3, HF_NODE_CHARDEV, HF_GOMODE_DEVICE | HF_GOMODE_CHARDEVICE | 0644);
        n->inode = 12;
        n->device_id = 5;
        n->links = 1;
        n->device = 259; /* 1:3 */

        n = add_node(t, "dir", 3, HF_NODE_DIR, HF_GOMODE_DIR | 0755);
        n->mtime = t_off;
        n->ctime = t_zero;
        n->inode = 13;
        n->device_id = 2049;
        n->has_subtree = true;
        n->subtree = id_fill(0xaa);

        n = add_node(t, "empty", 5, HF_NODE_FILE, 0600);
        n->inode = 14;
        n->device_id = 2049;
        n->links = 1;

        n = add_node(t, "link", 4, HF_NODE_SYMLINK, HF_GOMODE_SYMLINK | 0777);
        n->links = 1;
        n->linktarget = malloc(6);
        memcpy(n->linktarget, "tgt\xff/x", 6);
        n->linktarget_len = 6;

        add_node(t, "nbsp\xc2\xa0x", 7, HF_NODE_FIFO, HF_GOMODE_NAMEDPIPE | 0644);

        add_node(t, "x\nnl", 4, HF_NODE_FILE, 0644);

        n = add_node(t, "xattr.txt", 9, HF_NODE_FILE, 0644);
        assert_int_equal(hf_node_add_xattr(n, "user.a", "val", 3), 0);
        assert_int_equal(hf_node_add_xattr(n, "user.bin", "\x00\xff\x10", 3), 0);
        assert_int_equal(hf_node_add_xattr(n, "user.empty", "", 0), 0);

        assert_int_equal(hf_tree_sort(t), 0);
}

/* What restic (Go 1.19's encoding/json) writes for that tree, byte for byte (§6.3-§6.5). */
static const char tree_json[] =
        "{\"nodes\":["
        "{\"name\":\"a\\u003cb\\u003e\\u0026.txt\",\"type\":\"file\",\"mode\":420," TIMES3
        ",\"uid\":1000,\"gid\":100,\"user\":\"alice\",\"group\":\"users\",\"inode\":11,"
        "\"device_id\":2049,\"size\":5,\"links\":1,\"content\":[\"" ID_0 "\"]},"
        "{\"name\":\"dev\",\"type\":\"chardev\",\"mode\":69206436," TIMES3
        ",\"uid\":0,\"gid\":0,\"inode\":12,\"device_id\":5,\"links\":1,\"device\":259,"
        "\"content\":null},"
        "{\"name\":\"dir\",\"type\":\"dir\",\"mode\":2147484141,\"mtime\":\"" T_OFF
        "\",\"atime\":\"" T_UTC "\",\"ctime\":\"" T_ZERO "\",\"uid\":0,\"gid\":0,\"inode\":13,"
        "\"device_id\":2049,\"content\":null,\"subtree\":\"" ID_a "\"},"
        "{\"name\":\"empty\",\"type\":\"file\",\"mode\":384," TIMES3
        ",\"uid\":0,\"gid\":0,\"inode\":14,\"device_id\":2049,\"links\":1,\"content\":[]},"
        "{\"name\":\"inv\\\\xfe.txt\",\"type\":\"file\",\"mode\":420," TIMES3
        ",\"uid\":0,\"gid\":0,\"size\":3,\"links\":2,\"content\":[\"" ID_0 "\",\"" ID_0 "\"]},"
        "{\"name\":\"link\",\"type\":\"symlink\",\"mode\":134218239," TIMES3
        ",\"uid\":0,\"gid\":0,\"links\":1,\"linktarget\":\"tgt\\ufffd/x\","
        "\"linktarget_raw\":\"dGd0/y94\",\"content\":null},"
        "{\"name\":\"nbsp\\\\u00a0x\",\"type\":\"fifo\",\"mode\":33554852," TIMES3
        ",\"uid\":0,\"gid\":0,\"content\":null},"
        "{\"name\":\"q\\\\\\\"uo\\\\\\\\te.txt\",\"type\":\"file\",\"mode\":420," TIMES3
        ",\"uid\":0,\"gid\":0,\"size\":1,\"content\":[\"" ID_0 "\"]},"
        "{\"name\":\"x\\\\nnl\",\"type\":\"file\",\"mode\":420," TIMES3
        ",\"uid\":0,\"gid\":0,\"content\":[]},"
        "{\"name\":\"xattr.txt\",\"type\":\"file\",\"mode\":420," TIMES3
        ",\"uid\":0,\"gid\":0,\"extended_attributes\":[{\"name\":\"user.a\",\"value\":\"dmFs\"},"
        "{\"name\":\"user.bin\",\"value\":\"AP8Q\"},{\"name\":\"user.empty\",\"value\":\"\"}],"
        "\"content\":[]}"
        "]}\n";

/* The content IDs in tree_json are written as ID_0 above; put the real ones in. */
static void expected_tree_json(HfBuf *out)
{
        static const struct {
                const char *node;
                uint8_t fill[2];
                int k;
        } ids[] = {
                { "a\\u003cb", { 0x01 }, 1 },
                { "inv\\\\xfe", { 0x02, 0x03 }, 2 },
                { "q\\\\\\\"uo", { 0x04 }, 1 },
        };
        char *s;

        assert_int_equal(hf_buf_append(out, tree_json, sizeof(tree_json) - 1), 0);
        s = (char *)out->data;
        for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
                char *p = strstr(s, ids[i].node);
                assert_non_null(p);
                p = strstr(p, "\"content\":[\"");
                assert_non_null(p);
                p += strlen("\"content\":[\"");
                for (int k = 0; k < ids[i].k; k++) {
                        char hex[HF_ID_HEX_LEN + 1];
                        HfId id = id_fill(ids[i].fill[k]);
                        hf_id_hex(&id, hex);
                        memcpy(p, hex, HF_ID_HEX_LEN);
                        p += HF_ID_HEX_LEN + 3; /* ",\"" */
                }
        }
}

static void assert_node_eq(const HfNode *a, const HfNode *b)
{
        assert_int_equal(a->name_len, b->name_len);
        assert_memory_equal(a->name, b->name, a->name_len);
        assert_int_equal(a->type, b->type);
        assert_int_equal(a->mode, b->mode);
        assert_int_equal(a->mtime.sec, b->mtime.sec);
        assert_int_equal(a->mtime.nsec, b->mtime.nsec);
        assert_int_equal(a->mtime.off, b->mtime.off);
        assert_int_equal(a->atime.sec, b->atime.sec);
        assert_int_equal(a->ctime.sec, b->ctime.sec);
        assert_int_equal(a->uid, b->uid);
        assert_int_equal(a->gid, b->gid);
        assert_string_equal(a->user ? a->user : "", b->user ? b->user : "");
        assert_string_equal(a->group ? a->group : "", b->group ? b->group : "");
        assert_int_equal(a->inode, b->inode);
        assert_int_equal(a->device_id, b->device_id);
        assert_int_equal(a->size, b->size);
        assert_int_equal(a->links, b->links);
        assert_int_equal(a->device, b->device);
        assert_int_equal(a->linktarget_len, b->linktarget_len);
        if (a->linktarget_len)
                assert_memory_equal(a->linktarget, b->linktarget, a->linktarget_len);
        assert_int_equal(a->n_xattrs, b->n_xattrs);
        for (size_t i = 0; i < a->n_xattrs; i++) {
                assert_string_equal(a->xattrs[i].name, b->xattrs[i].name);
                assert_int_equal(a->xattrs[i].len, b->xattrs[i].len);
                if (a->xattrs[i].len)
                        assert_memory_equal(a->xattrs[i].value, b->xattrs[i].value,
                                            a->xattrs[i].len);
        }
        assert_int_equal(a->n_content, b->n_content);
        if (a->n_content)
                assert_memory_equal(a->content, b->content, a->n_content * sizeof(HfId));
        assert_int_equal(a->has_subtree, b->has_subtree);
        if (a->has_subtree)
                assert_true(hf_id_eq(&a->subtree, &b->subtree));
}

static void test_tree_format_exact(void **state)
{
        HfTree t = { 0 };
        _cleanup_buf_ HfBuf out = HF_BUF_INIT(SIZE_MAX / 2), want = HF_BUF_INIT(SIZE_MAX / 2);

        (void)state;
        build_tree(&t);
        assert_int_equal(hf_tree_format(&t, &out), 0);
        expected_tree_json(&want);
        assert_buf_str(&out, (const char *)want.data);
        hf_tree_done(&t);

        /* An empty tree. */
        hf_buf_reset(&out);
        assert_int_equal(hf_tree_format(&t, &out), 0);
        assert_buf_str(&out, "{\"nodes\":[]}\n");
}

static void test_tree_roundtrip(void **state)
{
        HfTree t = { 0 }, back = { 0 };
        _cleanup_buf_ HfBuf out = HF_BUF_INIT(SIZE_MAX / 2), err = HF_BUF_INIT(512);

        (void)state;
        build_tree(&t);
        assert_int_equal(hf_tree_format(&t, &out), 0);
        assert_int_equal(hf_tree_parse(out.data, out.len, &back, &err), 0);
        assert_int_equal(back.n, t.n);
        for (size_t i = 0; i < t.n; i++)
                assert_node_eq(&t.nodes[i], &back.nodes[i]);
        /* Lookup by raw name works on the parsed tree. */
        assert_non_null(hf_tree_find(&back, "inv\xfe.txt", 8));
        assert_non_null(hf_tree_find(&back, "q\"uo\\te.txt", 11));
        assert_null(hf_tree_find(&back, "inv", 3));
        hf_tree_done(&back);

        /* Whitespace, other key order, unknown keys and unsorted nodes are all accepted. */
        {
                static const char loose[] =
                        "{ \"extra\": 1, \"nodes\": [\n"
                        "  {\"type\": \"file\", \"name\": \"b\", \"content\": [], \"future\": "
                        "{}},\n"
                        "  {\"name\": \"a\", \"type\": \"dir\", \"subtree\": \"" ID_e "\"}\n"
                        "] }";
                assert_int_equal(hf_tree_parse(loose, sizeof(loose) - 1, &back, &err), 0);
                assert_int_equal(back.n, 2);
                assert_string_equal(back.nodes[0].name, "a");
                assert_true(back.nodes[0].has_subtree);
                assert_string_equal(back.nodes[1].name, "b");
                hf_tree_done(&back);
        }
        hf_tree_done(&t);
}

/*
 * restic stores inode, device_id, size, links and device as Go uint64, and hf_tree_format writes
 * any uint64. Inode numbers with the top bit set occur (FUSE file systems that hash paths into
 * inode numbers, NFS file IDs), so a tree holding one must read back.
 */
static void test_tree_uint64_roundtrip(void **state)
{
        HfTree t = { 0 }, back = { 0 };
        _cleanup_buf_ HfBuf out = HF_BUF_INIT(SIZE_MAX / 2), err = HF_BUF_INIT(512);
        HfNode *n;
        int r;

        (void)state;
        n = add_node(&t, "f", 1, HF_NODE_FILE, 0644);
        n->inode = UINT64_MAX;
        n->device_id = (1ULL << 63) + 5;
        assert_int_equal(hf_tree_format(&t, &out), 0);
        assert_non_null(strstr((char *)out.data, "\"inode\":18446744073709551615,"));
        r = hf_tree_parse(out.data, out.len, &back, &err);
        if (r < 0)
                fail_msg("a tree with uint64 values >= 2^63 does not parse (%d): %s", r,
                         (char *)err.data);
        assert_int_equal(back.n, 1);
        assert_true(back.nodes[0].inode == UINT64_MAX);
        assert_true(back.nodes[0].device_id == (1ULL << 63) + 5);
        hf_tree_done(&back);
        hf_tree_done(&t);
}

static void test_tree_malformed(void **state)
{
#define NODE_TAIL ",\"type\":\"file\",\"content\":[]}"
        static const char *const bad[] = {
                "",
                "[]",
                "{}",
                "{\"nodes\":{}}",
                "{\"nodes\":[1]}",
                "{\"nodes\":[{\"type\":\"file\",\"content\":[]}]}", /* no name */
                "{\"nodes\":[{\"name\":\"\"" NODE_TAIL "]}",        /* empty name */
                "{\"nodes\":[{\"name\":\".\"" NODE_TAIL "]}",
                "{\"nodes\":[{\"name\":\"..\"" NODE_TAIL "]}",
                "{\"nodes\":[{\"name\":\"a/b\"" NODE_TAIL "]}",
                "{\"nodes\":[{\"name\":\"a\\\\x2fb\"" NODE_TAIL "]}", /* '/' once unquoted */
                "{\"nodes\":[{\"name\":\"a\\\\x00b\"" NODE_TAIL "]}", /* NUL once unquoted */
                "{\"nodes\":[{\"name\":\"a\\\\qb\"" NODE_TAIL "]}",   /* bad Go escape */
                "{\"nodes\":[{\"name\":\"a\\nb\"" NODE_TAIL "]}",     /* raw newline */
                "{\"nodes\":[{\"name\":\"a\"}]}",                     /* no type */
                "{\"nodes\":[{\"name\":\"a\",\"type\":\"door\",\"content\":null}]}",
                "{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"content\":[\"xyz\"]}]}",
                "{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"content\":[\"" ID_0 "0\"]}]}",
                "{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"content\":{}}]}",
                "{\"nodes\":[{\"name\":\"a\",\"type\":\"dir\",\"subtree\":\"abc\"}]}",
                "{\"nodes\":[{\"name\":\"a\",\"type\":\"dir\",\"subtree\":5}]}",
                "{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"mtime\":\"yesterday\"}]}",
                "{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"uid\":-1}]}",
                "{\"nodes\":[{\"name\":\"a\",\"type\":\"file\",\"mode\":4294967296}]}",
                "{\"nodes\":[{\"name\":\"a\",\"type\":\"symlink\",\"linktarget_raw\":\"!!\"}]}",
                "{\"nodes\":[{\"name\":\"a\",\"type\":\"file\","
                "\"extended_attributes\":[{\"value\":\"\"}]}]}",
                "{\"nodes\":[{\"name\":\"a\",\"type\":\"file\","
                "\"extended_attributes\":[{\"name\":\"n\",\"value\":\"%%\"}]}]}",
                "{\"nodes\":[{\"name\":\"a\"" NODE_TAIL ",{\"name\":\"a\"" NODE_TAIL "]}",
                "{\"nodes\":[{\"name\":\"b\"" NODE_TAIL ",{\"name\":\"a\"" NODE_TAIL
                ",{\"name\":\"b\"" NODE_TAIL "]}",
                "{\"nodes\":[{\"name\":\"a\\\\x41\"" NODE_TAIL ",{\"name\":\"aA\"" NODE_TAIL "]}",
        };
#undef NODE_TAIL

        (void)state;
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                HfTree t = { 0 };
                _cleanup_buf_ HfBuf err = HF_BUF_INIT(512);
                int r = hf_tree_parse(bad[i], strlen(bad[i]), &t, &err);

                if (r != -EPROTO)
                        fail_msg("input %zu gave %d, not -EPROTO: %s", i, r, bad[i]);
                if (err.len == 0)
                        fail_msg("input %zu: no message", i);
                assert_int_equal(t.n, 0);
        }
}

/* --------------------------------------------------------------------------------------------
 * Snapshots */

static void test_snapshot_exact_minimal(void **state)
{
        HfSnapshot s = { .time = t_utc, .tree = id_fill(0x11) };
        _cleanup_buf_ HfBuf out = HF_BUF_INIT(SIZE_MAX / 2);

        (void)state;
        assert_int_equal(hf_strv_push(&s.paths, &s.n_paths, "/srv/x"), 0);
        s.hostname = strdup("host");
        s.username = strdup("root");
        assert_int_equal(hf_snapshot_format(&s, &out), 0);
        /* json.Marshal: no trailing newline; uid/gid 0 omitted (root). */
        assert_buf_str(&out, "{\"time\":\"" T_UTC "\",\"tree\":\"" ID_1 "\",\"paths\":"
                             "[\"/srv/x\"],\"hostname\":\"host\",\"username\":\"root\"}");
        hf_snapshot_done(&s);

        /* paths has no omitempty in restic: an empty list is null. */
        s = (HfSnapshot){ .time = t_zero, .tree = id_fill(0x11) };
        hf_buf_reset(&out);
        assert_int_equal(hf_snapshot_format(&s, &out), 0);
        assert_buf_str(&out, "{\"time\":\"" T_ZERO "\",\"tree\":\"" ID_1 "\",\"paths\":null}");
}

static void test_snapshot_roundtrip(void **state)
{
        HfSnapshot s = { .time = t_off, .tree = id_fill(0x11) }, back = { 0 };
        _cleanup_buf_ HfBuf out = HF_BUF_INIT(SIZE_MAX / 2), err = HF_BUF_INIT(512);

        (void)state;
        s.has_parent = true;
        s.parent = id_fill(0x22);
        assert_int_equal(hf_strv_push(&s.paths, &s.n_paths, "/a"), 0);
        assert_int_equal(hf_strv_push(&s.paths, &s.n_paths, "/b<c>"), 0);
        s.hostname = strdup("h");
        s.username = strdup("u");
        s.uid = 1000;
        s.gid = 100;
        assert_int_equal(hf_strv_push(&s.excludes, &s.n_excludes, "*.tmp"), 0);
        assert_int_equal(hf_strv_push(&s.tags, &s.n_tags, "daily"), 0);
        assert_int_equal(hf_strv_push(&s.tags, &s.n_tags, "x y"), 0);
        s.has_original = true;
        s.original = id_fill(0x33);
        s.program_version = strdup("holdfast 0.1.0");
        s.has_summary = true;
        s.summary = (HfSnapshotSummary){
                .backup_start = t_utc,
                .backup_end = t_off,
                .files_new = 1,
                .files_changed = 2,
                .files_unmodified = 3,
                .dirs_new = 4,
                .dirs_changed = 5,
                .dirs_unmodified = 6,
                .data_blobs = 7,
                .tree_blobs = 8,
                .data_added = 9,
                .data_added_packed = 10,
                .total_files_processed = 11,
                .total_bytes_processed = 12,
        };
        assert_int_equal(hf_snapshot_format(&s, &out), 0);
        /* Go's field order (§6.2). */
        assert_buf_str(
                &out,
                "{\"time\":\"" T_OFF "\",\"parent\":\"" ID_2 "\",\"tree\":\"" ID_1
                "\",\"paths\":[\"/a\",\"/b\\u003cc\\u003e\"],\"hostname\":\"h\","
                "\"username\":\"u\",\"uid\":1000,\"gid\":100,\"excludes\":[\"*.tmp\"],"
                "\"tags\":[\"daily\",\"x y\"],\"original\":\"" ID_3 "\","
                "\"program_version\":\"holdfast 0.1.0\",\"summary\":{\"backup_start\":\"" T_UTC
                "\",\"backup_end\":\"" T_OFF "\",\"files_new\":1,"
                "\"files_changed\":2,\"files_unmodified\":3,\"dirs_new\":4,"
                "\"dirs_changed\":5,\"dirs_unmodified\":6,\"data_blobs\":7,"
                "\"tree_blobs\":8,\"data_added\":9,\"data_added_packed\":10,"
                "\"total_files_processed\":11,\"total_bytes_processed\":12}}");

        assert_int_equal(hf_snapshot_parse(out.data, out.len, &back, &err), 0);
        assert_int_equal(back.time.sec, s.time.sec);
        assert_int_equal(back.time.nsec, s.time.nsec);
        assert_int_equal(back.time.off, 3600);
        assert_true(back.has_parent && hf_id_eq(&back.parent, &s.parent));
        assert_true(hf_id_eq(&back.tree, &s.tree));
        assert_int_equal(back.n_paths, 2);
        assert_string_equal(back.paths[1], "/b<c>");
        assert_string_equal(back.hostname, "h");
        assert_string_equal(back.username, "u");
        assert_int_equal(back.uid, 1000);
        assert_int_equal(back.gid, 100);
        assert_int_equal(back.n_excludes, 1);
        assert_int_equal(back.n_tags, 2);
        assert_string_equal(back.tags[1], "x y");
        assert_true(back.has_original && hf_id_eq(&back.original, &s.original));
        assert_string_equal(back.program_version, "holdfast 0.1.0");
        assert_true(back.has_summary);
        assert_int_equal(back.summary.total_bytes_processed, 12);
        assert_int_equal(back.summary.backup_end.sec, SEC);

        /* Formatting what was parsed gives the same bytes. */
        {
                _cleanup_buf_ HfBuf again = HF_BUF_INIT(SIZE_MAX / 2);
                assert_int_equal(hf_snapshot_format(&back, &again), 0);
                assert_int_equal(again.len, out.len);
                assert_memory_equal(again.data, out.data, out.len);
        }
        hf_snapshot_done(&back);
        hf_snapshot_done(&s);

        /* A 2015-era snapshot: trailing newline, unknown fields. */
        {
                static const char old[] =
                        "{\"time\":\"2015-01-02T03:04:05.1+01:00\",\"tree\":\"" ID_1
                        "\",\"paths\":[\"/x\"],\"hostname\":\"h\","
                        "\"username\":\"u\",\"foo\":[1]}\n";
                assert_int_equal(hf_snapshot_parse(old, sizeof(old) - 1, &back, &err), 0);
                assert_int_equal(back.n_paths, 1);
                hf_snapshot_done(&back);
        }
}

static void test_snapshot_malformed(void **state)
{
        static const char *const bad[] = {
                "",
                "[]",
                "{\"tree\":\"" ID_1 "\"}",  /* no time */
                "{\"time\":\"" T_UTC "\"}", /* no tree */
                "{\"time\":\"" T_UTC "\",\"tree\":null}",
                "{\"time\":\"" T_UTC "\",\"tree\":\"abc\"}",
                "{\"time\":\"noon\",\"tree\":\"" ID_1 "\"}",
                "{\"time\":\"" T_UTC "\",\"tree\":\"" ID_1 "\",\"parent\":\"x\"}",
                "{\"time\":\"" T_UTC "\",\"tree\":\"" ID_1 "\",\"paths\":\"/x\"}",
                "{\"time\":\"" T_UTC "\",\"tree\":\"" ID_1 "\",\"tags\":[1]}",
                "{\"time\":\"" T_UTC "\",\"tree\":\"" ID_1 "\",\"uid\":-5}",
        };

        (void)state;
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                HfSnapshot s = { 0 };
                _cleanup_buf_ HfBuf err = HF_BUF_INIT(512);
                int r = hf_snapshot_parse(bad[i], strlen(bad[i]), &s, &err);
                if (r != -EPROTO)
                        fail_msg("input %zu gave %d, not -EPROTO: %s", i, r, bad[i]);
                if (err.len == 0)
                        fail_msg("input %zu: no message", i);
        }
}

/* --------------------------------------------------------------------------------------------
 * Key files */

static void test_keyfile_roundtrip(void **state)
{
        _cleanup_buf_ HfBuf json = HF_BUF_INIT(1u << 16), err = HF_BUF_INIT(512);
        HfKeyFile kf = { 0 };
        HfKey master, opened;
        const char *p;

        (void)state;
        assert_int_equal(hf_key_generate(&master), 0);
        assert_int_equal(
                hf_keyfile_create("secret", &master, &cheap_kdf, "alice", "host<1>", &json), 0);
        /* restic's field order; 64-byte salt (88 base64 characters). */
        assert_true(strncmp((char *)json.data, "{\"created\":\"", 12) == 0);
        p = strstr((char *)json.data, "\",\"username\":\"alice\",\"hostname\":\"host\\u003c1"
                                      "\\u003e\",\"kdf\":\"scrypt\",\"N\":1024,\"r\":8,\"p\":1,"
                                      "\"salt\":\"");
        assert_non_null(p);
        p = strstr(p, "\"salt\":\"") + 8;
        assert_int_equal(strcspn(p, "\""), 88);
        assert_true(strncmp(p + 86, "==\",\"data\":\"", 12) == 0);
        assert_int_equal(json.data[json.len - 1], '}');

        assert_int_equal(hf_keyfile_parse(json.data, json.len, &kf, &err), 0);
        assert_int_equal(kf.params.N, 1024);
        assert_int_equal(kf.params.r, 8);
        assert_int_equal(kf.params.p, 1);
        assert_int_equal(kf.salt.len, 64);
        assert_string_equal(kf.username, "alice");
        assert_string_equal(kf.hostname, "host<1>");
        assert_true(kf.created.sec > 1700000000);

        assert_int_equal(hf_keyfile_open(&kf, "secret", &opened), 0);
        assert_memory_equal(&opened, &master, sizeof(HfKey));
        assert_int_equal(hf_keyfile_open(&kf, "Secret", &opened), -EBADMSG);
        assert_int_equal(hf_keyfile_open(&kf, "", &opened), -EBADMSG);
        hf_keyfile_done(&kf);

        /* The master key JSON restic stores, and back. */
        {
                _cleanup_buf_ HfBuf mk = HF_BUF_INIT(4096);
                HfKey back;
                assert_int_equal(hf_masterkey_format(&master, &mk), 0);
                assert_true(strncmp((char *)mk.data, "{\"mac\":{\"k\":\"", 13) == 0);
                assert_non_null(strstr((char *)mk.data, "\"},\"encrypt\":\""));
                assert_int_equal(hf_masterkey_parse(mk.data, mk.len, &back), 0);
                assert_memory_equal(&back, &master, sizeof(HfKey));
                assert_int_equal(hf_masterkey_parse("{\"mac\":{}}", 10, &back), -EPROTO);
        }
}

static void test_keyfile_malformed(void **state)
{
#define SALT "\"salt\":\"AAAA\""
#define DATA "\"data\":\"" ID_UA "\""
        static const char *const bad[] = {
                "",
                "[]",
                "{\"kdf\":\"argon2\",\"N\":1024,\"r\":8,\"p\":1," SALT "," DATA "}",
                "{\"N\":1024,\"r\":8,\"p\":1," SALT "," DATA "}",
                "{\"kdf\":\"scrypt\",\"N\":1000,\"r\":8,\"p\":1," SALT "," DATA "}",
                "{\"kdf\":\"scrypt\",\"N\":1024,\"r\":0,\"p\":1," SALT "," DATA "}",
                "{\"kdf\":\"scrypt\",\"N\":1024,\"r\":8," SALT "," DATA "}",
                "{\"kdf\":\"scrypt\",\"N\":1024,\"r\":8,\"p\":1," DATA "}",
                "{\"kdf\":\"scrypt\",\"N\":1024,\"r\":8,\"p\":1,\"salt\":\"A!==\"," DATA "}",
                "{\"kdf\":\"scrypt\",\"N\":1024,\"r\":8,\"p\":1," SALT ",\"data\":\"AAAA\"}",
        };
#undef SALT
#undef DATA

        (void)state;
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                HfKeyFile kf = { 0 };
                _cleanup_buf_ HfBuf err = HF_BUF_INIT(512);
                int r = hf_keyfile_parse(bad[i], strlen(bad[i]), &kf, &err);
                if (r != -EPROTO)
                        fail_msg("input %zu gave %d, not -EPROTO: %s", i, r, bad[i]);
                if (err.len == 0)
                        fail_msg("input %zu: no message", i);
        }
}

static void test_kdf_params_parse(void **state)
{
        static const char *const bad[] = {
                "",
                "16384",
                "16384,8",
                "16384,8,1,1",
                "16384,8,1x",
                "1000,8,1",
                "0,8,1",
                "1,8,1",
                "16384,0,1",
                "16384,8,0",
                "x,8,1",
                "2097152,8,1", /* 128*N*r = 2 GiB: more memory than the 1 GiB limit */
                /* 128*N*r wraps to 0 in 64 bits; it is far above the limit, not below. */
                "144115188075855872,8,1",
                "4611686018427387904,8,1",
        };
        HfKdfParams p;

        (void)state;
        assert_int_equal(hf_kdf_params_parse("32768,8,7", &p), 0);
        assert_int_equal(p.N, 32768);
        assert_int_equal(p.r, 8);
        assert_int_equal(p.p, 7);
        assert_int_equal(hf_kdf_params_parse("1024,8,1", &p), 0);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                int r = hf_kdf_params_parse(bad[i], &p);
                if (r != -EINVAL)
                        fail_msg("\"%s\" gave %d, not -EINVAL", bad[i], r);
        }
}

/* A machine where a pass of scrypt takes ms_per_kn milliseconds per 1024 of N (r 8), and the
 * first call of all takes cold_factor times as long (fresh memory, first use). */
static double fake_ms_per_kn, fake_cold_factor;
static unsigned fake_calls;

static double fake_timer(const HfKdfParams *p)
{
        double t = fake_ms_per_kn * 1e-3 * (double)(p->N / 1024) * p->r / 8.0 * p->p;

        if (fake_calls++ == 0)
                t *= fake_cold_factor;
        return t;
}

static HfKdfParams fake_calibrate(unsigned target_ms, double ms_per_kn, double cold_factor)
{
        HfKdfParams p = { 0 };

        fake_ms_per_kn = ms_per_kn;
        fake_cold_factor = cold_factor;
        fake_calls = 0;
        assert_int_equal(hf_kdf_calibrate_with(target_ms, fake_timer, &p), 0);
        return p;
}

static void test_kdf_calibrate(void **state)
{
        HfKdfParams p;

        (void)state;
        /* 90 ms a pass at N 32768 (OpenSSL's scrypt on the CI machine; holdfast's own lane
         * takes 55-65 ms on this kind of machine now), a slow first call (there 1.1-1.3x; 2x
         * here). The memory cap stops N at 32768 (32 MiB); p fills 500 ms: 6 passes (540 ms).
         * The old rule, extrapolating the first call, gave p 3 (270 ms). */
        p = fake_calibrate(500, 90.0 / 32, 2.0);
        assert_int_equal(p.N, 32768);
        assert_int_equal(p.r, 8);
        assert_int_equal(p.p, 6);
        assert_true(fake_timer(&p) >= 0.4 && fake_timer(&p) <= 0.6);
        /* A slow machine: one pass at N 16384 takes 300 ms; doubling N would pass the
         * target, so N stays and p is 2 (600 ms, nearer 500 than 300). */
        p = fake_calibrate(500, 300.0 / 16, 1.0);
        assert_int_equal(p.N, 16384);
        assert_int_equal(p.p, 2);
        /* Slower than the target already at the start: the minimum, one pass. */
        p = fake_calibrate(500, 2000.0 / 16, 1.0);
        assert_int_equal(p.N, 16384);
        assert_int_equal(p.p, 1);
        /* Very fast: p is capped at 64. */
        p = fake_calibrate(500, 0.01, 1.0);
        assert_int_equal(p.N, 32768);
        assert_int_equal(p.p, 64);
}

/* --------------------------------------------------------------------------------------------
 * Codec */

static void test_codec_seal_open(void **state)
{
        _cleanup_(hf_codec_freep) HfCodec *c = NULL;
        _cleanup_buf_ HfBuf enc = HF_BUF_INIT(1u << 24), out = HF_BUF_INIT(1u << 24);
        static uint8_t text[100000], noise[70000];
        uint64_t seed = 7;
        uint32_t ulen = 99;
        HfKey key;

        (void)state;
        for (size_t i = 0; i < sizeof(text); i++)
                text[i] = (uint8_t)("holdfast keeps what matters "[i % 28]);
        rng_fill(&seed, noise, sizeof(noise));
        assert_int_equal(hf_key_generate(&key), 0);
        assert_int_equal(hf_codec_new(&key, HF_COMPRESSION_AUTO, &c), 0);

        /* Compressible and compressed: ulen is the plaintext length, the blob is smaller. */
        assert_int_equal(hf_codec_seal(c, text, sizeof(text), true, &enc, &ulen), 0);
        assert_int_equal(ulen, sizeof(text));
        assert_true(enc.len < sizeof(text) / 10);
        assert_int_equal(hf_codec_open(c, enc.data, enc.len, ulen, &out), 0);
        assert_int_equal(out.len, sizeof(text));
        assert_memory_equal(out.data, text, sizeof(text));
        /* The wrong plaintext length is a malformed blob, never a short read. */
        hf_buf_reset(&out);
        assert_int_equal(hf_codec_open(c, enc.data, enc.len, ulen - 1, &out), -EPROTO);
        hf_buf_reset(&out);
        assert_int_equal(hf_codec_open(c, enc.data, enc.len, ulen + 1, &out), -EPROTO);
        assert_int_equal(hf_codec_open(c, enc.data, enc.len, HF_BLOB_MAX_PLAIN + 1, &out), -EPROTO);

        /* Not compressed on request: ulen 0, the blob is plaintext + 32. */
        assert_int_equal(hf_codec_seal(c, text, 1000, false, &enc, &ulen), 0);
        assert_int_equal(ulen, 0);
        assert_int_equal(enc.len, 1000 + HF_CRYPTO_OVERHEAD);
        hf_buf_reset(&out);
        assert_int_equal(hf_codec_open(c, enc.data, enc.len, 0, &out), 0);
        assert_memory_equal(out.data, text, 1000);

        /* Incompressible data is stored as is even when compression is asked for. */
        assert_int_equal(hf_codec_seal(c, noise, sizeof(noise), true, &enc, &ulen), 0);
        assert_int_equal(ulen, 0);
        assert_int_equal(enc.len, sizeof(noise) + HF_CRYPTO_OVERHEAD);

        /* A zero-length blob is never marked compressed (restic reads ulen 0 as "not"). */
        assert_int_equal(hf_codec_seal(c, "", 0, true, &enc, &ulen), 0);
        assert_int_equal(ulen, 0);
        assert_int_equal(enc.len, HF_CRYPTO_OVERHEAD);
        hf_buf_reset(&out);
        assert_int_equal(hf_codec_open(c, enc.data, enc.len, 0, &out), 0);
        assert_int_equal(out.len, 0);

        /* Damage anywhere is a MAC failure; too short is malformed. */
        assert_int_equal(hf_codec_seal(c, text, 5000, true, &enc, &ulen), 0);
        enc.data[enc.len / 2] ^= 0x80;
        assert_int_equal(hf_codec_open(c, enc.data, enc.len, ulen, &out), -EBADMSG);
        assert_int_equal(hf_codec_open(c, enc.data, HF_CRYPTO_OVERHEAD - 1, 0, &out), -EPROTO);

        /* Another key cannot open it. */
        {
                _cleanup_(hf_codec_freep) HfCodec *other = NULL;
                HfKey k2;
                assert_int_equal(hf_key_generate(&k2), 0);
                assert_int_equal(hf_codec_new(&k2, HF_COMPRESSION_AUTO, &other), 0);
                assert_int_equal(hf_codec_seal(c, text, 5000, true, &enc, &ulen), 0);
                assert_int_equal(hf_codec_open(other, enc.data, enc.len, ulen, &out), -EBADMSG);
        }
}

/*
 * The read paths' open: appended to what out holds, a compressed blob decrypted where it lies
 * in enc, a stored one straight into out; a bad MAC or length leaves out as it was.
 */
static void test_codec_open_inplace(void **state)
{
        _cleanup_(hf_codec_freep) HfCodec *c = NULL;
        _cleanup_buf_ HfBuf enc = HF_BUF_INIT(1u << 24), out = HF_BUF_INIT(1u << 24);
        static uint8_t text[300000], noise[300000];
        uint64_t seed = 11;
        uint32_t ulen = 99;
        HfKey key;

        (void)state;
        for (size_t i = 0; i < sizeof(text); i++)
                text[i] = (uint8_t)("what was kept comes back "[i % 25]);
        rng_fill(&seed, noise, sizeof(noise));
        assert_int_equal(hf_key_generate(&key), 0);
        assert_int_equal(hf_codec_new(&key, HF_COMPRESSION_AUTO, &c), 0);

        for (int stored = 0; stored < 2; stored++) {
                const uint8_t *plain = stored ? noise : text;
                size_t n = stored ? sizeof(noise) : sizeof(text);

                assert_int_equal(hf_codec_seal(c, plain, n, true, &enc, &ulen), 0);
                assert_int_equal(ulen, stored ? 0 : n);
                hf_buf_reset(&out);
                assert_int_equal(hf_buf_append(&out, "head", 4), 0);
                assert_int_equal(hf_codec_open_inplace(c, enc.data, enc.len, ulen, &out), 0);
                assert_int_equal(out.len, 4 + n);
                assert_memory_equal(out.data, "head", 4);
                assert_memory_equal(out.data + 4, plain, n);
                assert_int_equal(out.data[out.len], 0);

                /* A flipped bit: the MAC fails, out keeps what it had. */
                assert_int_equal(hf_codec_seal(c, plain, n, true, &enc, &ulen), 0);
                enc.data[enc.len / 3] ^= 0x04;
                hf_buf_reset(&out);
                assert_int_equal(hf_buf_append(&out, "head", 4), 0);
                assert_int_equal(hf_codec_open_inplace(c, enc.data, enc.len, ulen, &out), -EBADMSG);
                assert_int_equal(out.len, 4);
                assert_memory_equal(out.data, "head", 4);
        }
        /* A compressed blob said to be a byte longer than it is: malformed. */
        assert_int_equal(hf_codec_seal(c, text, sizeof(text), true, &enc, &ulen), 0);
        hf_buf_reset(&out);
        assert_int_equal(hf_codec_open_inplace(c, enc.data, enc.len, ulen + 1, &out), -EPROTO);
        assert_int_equal(out.len, 0);
        assert_int_equal(hf_codec_open_inplace(c, enc.data, HF_CRYPTO_OVERHEAD - 1, 0, &out),
                         -EPROTO);
}

/* zstd frames restic's Go encoder writes: no content size, or several frames back to back. */
static void test_codec_open_foreign_frames(void **state)
{
        _cleanup_(hf_codec_freep) HfCodec *c = NULL;
        _cleanup_(hf_cipher_freep) HfCipher *cipher = NULL;
        _cleanup_buf_ HfBuf out = HF_BUF_INIT(1u << 20);
        static uint8_t text[50000], frame[60000], enc[60000 + HF_CRYPTO_OVERHEAD];
        ZSTD_CCtx *z = ZSTD_createCCtx();
        size_t k1, k2;
        HfKey key;

        (void)state;
        for (size_t i = 0; i < sizeof(text); i++)
                text[i] = (uint8_t)(i * 7 % 13 + 'a');
        assert_int_equal(hf_key_generate(&key), 0);
        assert_int_equal(hf_codec_new(&key, HF_COMPRESSION_AUTO, &c), 0);
        assert_int_equal(hf_cipher_new(&key, &cipher), 0);
        assert_non_null(z);
        assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(z, ZSTD_c_contentSizeFlag, 0)));
        assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(z, ZSTD_c_checksumFlag, 1)));
        k1 = ZSTD_compress2(z, frame, sizeof(frame), text, 20000);
        assert_false(ZSTD_isError(k1));
        k2 = ZSTD_compress2(z, frame + k1, sizeof(frame) - k1, text + 20000, sizeof(text) - 20000);
        assert_false(ZSTD_isError(k2));
        ZSTD_freeCCtx(z);

        assert_int_equal(hf_cipher_encrypt(cipher, frame, k1 + k2, enc), 0);
        assert_int_equal(hf_codec_open(c, enc, k1 + k2 + HF_CRYPTO_OVERHEAD, sizeof(text), &out),
                         0);
        assert_int_equal(out.len, sizeof(text));
        assert_memory_equal(out.data, text, sizeof(text));
}

static void encrypt_plain(HfCipher *cipher, const void *p, size_t n, HfBuf *out)
{
        hf_buf_reset(out);
        assert_int_equal(hf_buf_reserve(out, n + HF_CRYPTO_OVERHEAD), 0);
        assert_int_equal(hf_cipher_encrypt(cipher, p, n, out->data), 0);
        out->len = n + HF_CRYPTO_OVERHEAD;
}

static void test_codec_files(void **state)
{
        _cleanup_(hf_codec_freep) HfCodec *c = NULL;
        _cleanup_(hf_cipher_freep) HfCipher *cipher = NULL;
        _cleanup_buf_ HfBuf enc = HF_BUF_INIT(1u << 20), out = HF_BUF_INIT(1u << 20),
                            dec = HF_BUF_INIT(1u << 20);
        static const char json[] = "{\"packs\":[]}\n";
        uint8_t zbuf[256];
        size_t zn;
        HfKey key;

        (void)state;
        assert_int_equal(hf_key_generate(&key), 0);
        assert_int_equal(hf_codec_new(&key, HF_COMPRESSION_OFF, &c), 0);
        assert_int_equal(hf_cipher_new(&key, &cipher), 0);

        /* v2 writes 0x02 || zstd(json), even with data compression off. */
        assert_int_equal(hf_codec_seal_file(c, 2, json, sizeof(json) - 1, &enc), 0);
        assert_int_equal(hf_codec_decrypt(c, enc.data, enc.len, &dec), 0);
        assert_int_equal(dec.data[0], 0x02);
        assert_int_equal(hf_codec_open_file(c, 2, enc.data, enc.len, 1u << 20, &out), 0);
        assert_buf_str(&out, json);
        /* ... which a v1 reader must refuse. */
        hf_buf_reset(&out);
        assert_int_equal(hf_codec_open_file(c, 1, enc.data, enc.len, 1u << 20, &out), -EPROTO);

        /* v1 writes raw JSON. */
        assert_int_equal(hf_codec_seal_file(c, 1, json, sizeof(json) - 1, &enc), 0);
        assert_int_equal(enc.len, sizeof(json) - 1 + HF_CRYPTO_OVERHEAD);
        hf_buf_reset(&out);
        assert_int_equal(hf_codec_open_file(c, 1, enc.data, enc.len, 1u << 20, &out), 0);
        assert_buf_str(&out, json);

        /* Raw JSON (object or array) is read in v2 too (upgraded v1 vaults). */
        encrypt_plain(cipher, "[1,2]", 5, &enc);
        hf_buf_reset(&out);
        assert_int_equal(hf_codec_open_file(c, 2, enc.data, enc.len, 1u << 20, &out), 0);
        assert_buf_str(&out, "[1,2]");

        /* A hand-made 0x02 + zstd stream, as restic writes it. */
        zbuf[0] = 0x02;
        zn = ZSTD_compress(zbuf + 1, sizeof(zbuf) - 1, json, sizeof(json) - 1, 3);
        assert_false(ZSTD_isError(zn));
        encrypt_plain(cipher, zbuf, zn + 1, &enc);
        hf_buf_reset(&out);
        assert_int_equal(hf_codec_open_file(c, 2, enc.data, enc.len, 1u << 20, &out), 0);
        assert_buf_str(&out, json);
        /* Decoding past the caller's ceiling is -E2BIG, not a truncated document. */
        hf_buf_reset(&out);
        assert_int_equal(hf_codec_open_file(c, 2, enc.data, enc.len, 4, &out), -E2BIG);
        /* A stream cut short is malformed. */
        encrypt_plain(cipher, zbuf, zn - 3, &enc);
        hf_buf_reset(&out);
        assert_int_equal(hf_codec_open_file(c, 2, enc.data, enc.len, 1u << 20, &out), -EPROTO);

        /* Any other first byte is an unknown encoding; so is an empty file. */
        const char *const others[] = { "\x01{}", "\x00{}", "x{}", " {}", "\x03" };
        for (size_t i = 0; i < ELEMENTSOF(others); i++) {
                encrypt_plain(cipher, others[i], strlen(others[i]) ? strlen(others[i]) : 3, &enc);
                hf_buf_reset(&out);
                assert_int_equal(hf_codec_open_file(c, 2, enc.data, enc.len, 1u << 20, &out),
                                 -EPROTO);
        }
        encrypt_plain(cipher, "", 0, &enc);
        assert_int_equal(hf_codec_open_file(c, 2, enc.data, enc.len, 1u << 20, &out), -EPROTO);
        encrypt_plain(cipher, "\x02", 1, &enc);
        assert_int_equal(hf_codec_open_file(c, 2, enc.data, enc.len, 1u << 20, &out), -EPROTO);
}

/*
 * zstd frees a workspace that has been much too large for 128 calls and takes a new one for
 * the next large input; the codec's allocator hands the old block back instead. Round trips
 * of large and small blobs in turns: after the first turn, no fresh memory.
 */
static void test_codec_reuses_workspace(void **state)
{
        _cleanup_(hf_codec_freep) HfCodec *c = NULL;
        _cleanup_buf_ HfBuf enc = HF_BUF_INIT(4u << 20), out = HF_BUF_INIT(4u << 20);
        const size_t big = 1u << 20;
        uint8_t *plain = malloc(big);
        size_t after_first = 0;
        HfKey key;

        (void)state;
        assert_non_null(plain);
        for (size_t i = 0; i < big; i++) /* compressible, not trivially */
                plain[i] = (uint8_t)("holdfast vault "[(i + i / 1000) % 15] ^ ((i / 4096) & 3));
        assert_int_equal(hf_key_generate(&key), 0);
        assert_int_equal(hf_codec_new(&key, HF_COMPRESSION_AUTO, &c), 0);
        for (int turn = 0; turn < 3; turn++) {
                for (int k = 0; k < 301; k++) {
                        size_t n = k % 300 == 0 ? big : 200 + (size_t)k;
                        const uint8_t *p = plain + (k % 300 == 0 ? 0 : (size_t)k * 7);
                        uint32_t ulen = 0;

                        assert_int_equal(hf_codec_seal(c, p, n, true, &enc, &ulen), 0);
                        assert_int_equal(ulen, n);
                        hf_buf_reset(&out);
                        assert_int_equal(hf_codec_open(c, enc.data, enc.len, ulen, &out), 0);
                        assert_int_equal(out.len, n);
                        assert_memory_equal(out.data, p, n);
                }
                if (turn == 0)
                        after_first = hf_codec_fresh_allocs(c);
        }
        assert_true(after_first >= 1);
        assert_int_equal(hf_codec_fresh_allocs(c), after_first);
        free(plain);
}

/*
 * A frame that gives its size is decoded in one call, anything else streamed: both must give
 * the same document, append to what the buffer holds, and refuse a size that lies.
 */
static void test_codec_file_frames(void **state)
{
        _cleanup_(hf_codec_freep) HfCodec *c = NULL;
        _cleanup_(hf_cipher_freep) HfCipher *cipher = NULL;
        _cleanup_buf_ HfBuf enc = HF_BUF_INIT(1u << 20), out = HF_BUF_INIT(1u << 20);
        static const char json[] = "{\"packs\":[{\"id\":\"x\",\"blobs\":[]}]}\n";
        const size_t n = sizeof(json) - 1;
        ZSTD_CCtx *z = ZSTD_createCCtx();
        uint8_t zbuf[512];
        size_t a, b;
        HfKey key;

        (void)state;
        assert_non_null(z);
        assert_int_equal(hf_key_generate(&key), 0);
        assert_int_equal(hf_codec_new(&key, HF_COMPRESSION_AUTO, &c), 0);
        assert_int_equal(hf_cipher_new(&key, &cipher), 0);
        zbuf[0] = 0x02;

        /* One frame with its size, appended after what the buffer already holds. */
        a = ZSTD_compress(zbuf + 1, sizeof(zbuf) - 1, json, n, 3);
        assert_false(ZSTD_isError(a));
        assert_int_equal(ZSTD_getFrameContentSize(zbuf + 1, a), n);
        encrypt_plain(cipher, zbuf, a + 1, &enc);
        hf_buf_reset(&out);
        assert_int_equal(hf_buf_append(&out, "ab", 2), 0);
        assert_int_equal(hf_codec_open_file(c, 2, enc.data, enc.len, 1u << 20, &out), 0);
        assert_int_equal(out.len, n + 2);
        assert_memory_equal(out.data, "ab", 2);
        assert_memory_equal(out.data + 2, json, n);
        assert_int_equal(out.data[out.len], 0);

        /* The size in the frame header (one byte here, after magic and descriptor) is checked:
         * smaller or larger than the content, the file is malformed and out is unchanged. */
        assert_int_equal(zbuf[1 + 5], n);
        for (int d = -1; d <= 100; d += 101) {
                zbuf[1 + 5] = (uint8_t)((int)n + d);
                encrypt_plain(cipher, zbuf, a + 1, &enc);
                hf_buf_reset(&out);
                assert_int_equal(hf_buf_append(&out, "ab", 2), 0);
                assert_int_equal(hf_codec_open_file(c, 2, enc.data, enc.len, 1u << 20, &out),
                                 -EPROTO);
                assert_int_equal(out.len, 2);
                assert_string_equal((char *)out.data, "ab");
        }
        zbuf[1 + 5] = (uint8_t)n;
        /* A claimed size over the ceiling is refused (the one-call path must check it too). */
        encrypt_plain(cipher, zbuf, a + 1, &enc);
        hf_buf_reset(&out);
        assert_int_equal(hf_codec_open_file(c, 2, enc.data, enc.len, n - 1, &out), -E2BIG);

        /* Two frames in a row: streamed, both decoded. */
        b = ZSTD_compress(zbuf + 1 + a, sizeof(zbuf) - 1 - a, json, n, 1);
        assert_false(ZSTD_isError(b));
        encrypt_plain(cipher, zbuf, a + b + 1, &enc);
        hf_buf_reset(&out);
        assert_int_equal(hf_codec_open_file(c, 2, enc.data, enc.len, 1u << 20, &out), 0);
        assert_int_equal(out.len, 2 * n);
        assert_memory_equal(out.data, json, n);
        assert_memory_equal(out.data + n, json, n);

        /* A frame that does not say its size: streamed. */
        assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(z, ZSTD_c_contentSizeFlag, 0)));
        a = ZSTD_compress2(z, zbuf + 1, sizeof(zbuf) - 1, json, n);
        assert_false(ZSTD_isError(a));
        assert_true(ZSTD_getFrameContentSize(zbuf + 1, a) == ZSTD_CONTENTSIZE_UNKNOWN);
        encrypt_plain(cipher, zbuf, a + 1, &enc);
        hf_buf_reset(&out);
        assert_int_equal(hf_codec_open_file(c, 2, enc.data, enc.len, 1u << 20, &out), 0);
        assert_buf_str(&out, json);
        ZSTD_freeCCtx(z);
}

/*
 * Callers decode small files (locks: lock.c loads them into a 64 KiB buffer) into buffers
 * whose own ceiling is far below the decoder's limit. A 100-byte compressed lock must decode.
 */
static void test_codec_file_into_small_buffer(void **state)
{
        _cleanup_(hf_codec_freep) HfCodec *c = NULL;
        _cleanup_buf_ HfBuf enc = HF_BUF_INIT(1u << 20), out = HF_BUF_INIT(64u * 1024);
        static const char lock[] = "{\"time\":\"2026-01-01T00:00:00Z\",\"exclusive\":true,"
                                   "\"hostname\":\"h\",\"username\":\"u\",\"pid\":1}";
        HfKey key;
        int r;

        (void)state;
        assert_int_equal(hf_key_generate(&key), 0);
        assert_int_equal(hf_codec_new(&key, HF_COMPRESSION_AUTO, &c), 0);
        assert_int_equal(hf_codec_seal_file(c, 2, lock, sizeof(lock) - 1, &enc), 0);
        r = hf_codec_open_file(c, 2, enc.data, enc.len, 1024u * 1024 * 1024, &out);
        if (r < 0)
                fail_msg("a compressed %zu-byte file does not decode into a 64 KiB buffer: %d",
                         sizeof(lock) - 1, r);
        assert_buf_str(&out, lock);
}

/* --------------------------------------------------------------------------------------------
 * Config */

static void test_config(void **state)
{
        _cleanup_buf_ HfBuf out = HF_BUF_INIT(4096);
        char id[65];
        HfPol pol;
        int version;

        (void)state;
        assert_int_equal(hf_config_format(2, ID_7, (HfPol)0x3DA3358B4DC173, &out), 0);
        /* 123 bytes for v2, as restic writes it. */
        assert_buf_str(&out, "{\"version\":2,\"id\":\"" ID_7 "\",\"chunker_polynomial\":"
                             "\"3da3358b4dc173\"}");
        assert_int_equal(out.len, 123);
        assert_int_equal(hf_config_parse(out.data, out.len, &version, id, &pol), 0);
        assert_int_equal(version, 2);
        assert_string_equal(id, ID_7);
        assert_int_equal(pol, 0x3DA3358B4DC173);

        /* v1 with the 2015 fixture's trailing newline and upper-case hex. */
        {
                static const char v1[] = "{\"version\":1,\"id\":\"" ID_8 "\","
                                         "\"chunker_polynomial\":\"2482734CACCA49\"}\n";
                assert_int_equal(hf_config_parse(v1, sizeof(v1) - 1, &version, id, &pol), 0);
                assert_int_equal(version, 1);
                assert_int_equal(pol, 0x2482734cacca49);
        }

        /* Version 3 is unsupported, not malformed. */
        {
                static const char v3[] = "{\"version\":3,\"id\":\"" ID_7 "\","
                                         "\"chunker_polynomial\":\"3da3358b4dc173\"}";
                version = 99;
                assert_int_equal(hf_config_parse(v3, sizeof(v3) - 1, &version, id, &pol),
                                 -EOPNOTSUPP);
                assert_int_equal(version, 99);
        }

        static const char *const bad[] = {
                /* reducible polynomials (restic/chunker's list) */
                "{\"version\":2,\"id\":\"" ID_7 "\",\"chunker_polynomial\":\"38f1e565e288df\"}",
                "{\"version\":2,\"id\":\"" ID_7 "\",\"chunker_polynomial\":\"30a8295b9d5c91\"}",
                /* not degree 53 */
                "{\"version\":2,\"id\":\"" ID_7 "\",\"chunker_polynomial\":\"7\"}",
                "{\"version\":2,\"id\":\"" ID_7 "\",\"chunker_polynomial\":\"\"}",
                "{\"version\":2,\"id\":\"" ID_7 "\",\"chunker_polynomial\":\"0x3da3358b4dc173\"}",
                "{\"version\":2,\"id\":\"" ID_7 "\",\"chunker_polynomial\":3}",
                "{\"version\":2,\"id\":\"" ID_7 "\"}",
                "{\"version\":2,\"chunker_polynomial\":\"3da3358b4dc173\"}",
                "{\"version\":\"2\",\"id\":\"" ID_7 "\",\"chunker_polynomial\":\"3da3358b4dc173\"}",
                "{\"id\":\"" ID_7 "\",\"chunker_polynomial\":\"3da3358b4dc173\"}",
                "[]",
                "",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                int r = hf_config_parse(bad[i], strlen(bad[i]), &version, id, &pol);
                if (r != -EPROTO)
                        fail_msg("input %zu gave %d, not -EPROTO: %s", i, r, bad[i]);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_pack_header_roundtrip),
                cmocka_unit_test(test_pack_parse_header_errors),
                cmocka_unit_test(test_pack_read_header_backend),
                cmocka_unit_test(test_local_prefetch),
                cmocka_unit_test(test_local_lists_at_once),
                cmocka_unit_test(test_index_random),
                cmocka_unit_test(test_index_reserve),
                cmocka_unit_test(test_index_table_huge),
                cmocka_unit_test(test_index_backward_shift),
                cmocka_unit_test(test_index_packs),
                cmocka_unit_test(test_index_parse_restic),
                cmocka_unit_test(test_index_parse_malformed),
                cmocka_unit_test(test_index_format_roundtrip),
                cmocka_unit_test(test_tree_format_exact),
                cmocka_unit_test(test_tree_roundtrip),
                cmocka_unit_test(test_tree_uint64_roundtrip),
                cmocka_unit_test(test_tree_malformed),
                cmocka_unit_test(test_snapshot_exact_minimal),
                cmocka_unit_test(test_snapshot_roundtrip),
                cmocka_unit_test(test_snapshot_malformed),
                cmocka_unit_test(test_keyfile_roundtrip),
                cmocka_unit_test(test_keyfile_malformed),
                cmocka_unit_test(test_kdf_params_parse),
                cmocka_unit_test(test_kdf_calibrate),
                cmocka_unit_test(test_codec_seal_open),
                cmocka_unit_test(test_codec_open_inplace),
                cmocka_unit_test(test_codec_open_foreign_frames),
                cmocka_unit_test(test_codec_files),
                cmocka_unit_test(test_codec_reuses_workspace),
                cmocka_unit_test(test_codec_file_frames),
                cmocka_unit_test(test_codec_file_into_small_buffer),
                cmocka_unit_test(test_config),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
