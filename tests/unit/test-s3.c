/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The S3 backend's pure parts: SigV4 against the examples in AWS's documentation ("Signature
 * Calculations for the Authorization Header: Transferring Payload in a Single Chunk"), URI
 * encoding, ISO dates, and the XML reader on real RGW replies and hostile input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "../../src/backend/s3.h"
#include "../../src/base/util.h"

#define AKID "AKIAIOSFODNN7EXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define EMPTY_SHA "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define HOST "examplebucket.s3.amazonaws.com"
#define DATE "20130524T000000Z"

static void check_sig(const char *method, const char *uri, const char *query, const HfS3Header *h,
                      size_t n, const char *payload, const char *want_sig)
{
        _cleanup_buf_ HfBuf out = HF_BUF_INIT(1 << 16);
        HfSigV4 s = { .method = method,
                      .uri = uri,
                      .query = query,
                      .headers = h,
                      .n_headers = n,
                      .payload_hash = payload,
                      .amz_date = DATE,
                      .region = "us-east-1",
                      .service = "s3",
                      .access_key = AKID,
                      .secret_key = SECRET };
        const char *sig;

        assert_int_equal(hf_sigv4_authorization(&s, &out), 0);
        assert_true(strncmp((char *)out.data,
                            "AWS4-HMAC-SHA256 Credential=" AKID "/20130524/us-east-1/s3/"
                            "aws4_request, SignedHeaders=",
                            strlen("AWS4-HMAC-SHA256 Credential=" AKID
                                   "/20130524/us-east-1/s3/aws4_request, SignedHeaders=")) == 0);
        sig = strstr((char *)out.data, "Signature=");
        assert_non_null(sig);
        assert_string_equal(sig + 10, want_sig);
}

static void test_sigv4_get_object(void **state)
{
        const HfS3Header h[] = {
                { "host", HOST },
                { "range", "bytes=0-9" },
                { "x-amz-content-sha256", EMPTY_SHA },
                { "x-amz-date", DATE },
        };
        _cleanup_buf_ HfBuf sts = HF_BUF_INIT(1 << 16);
        HfSigV4 s = { .method = "GET",
                      .uri = "/test.txt",
                      .query = "",
                      .headers = h,
                      .n_headers = 4,
                      .payload_hash = EMPTY_SHA,
                      .amz_date = DATE,
                      .region = "us-east-1",
                      .service = "s3" };

        (void)state;
        assert_int_equal(hf_sigv4_string_to_sign(&s, &sts), 0);
        assert_string_equal((char *)sts.data,
                            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/"
                            "aws4_request\n"
                            "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
        check_sig("GET", "/test.txt", "", h, 4, EMPTY_SHA,
                  "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

static void test_sigv4_put_object(void **state)
{
        const char *payload = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072";
        const HfS3Header h[] = {
                { "date", "Fri, 24 May 2013 00:00:00 GMT" },
                { "host", HOST },
                { "x-amz-content-sha256", payload },
                { "x-amz-date", DATE },
                { "x-amz-storage-class", "REDUCED_REDUNDANCY" },
        };
        _cleanup_buf_ HfBuf path = HF_BUF_INIT(256);

        (void)state;
        /* "/test$file.text": '$' is encoded in the canonical URI. */
        assert_int_equal(hf_s3_uri_encode(&path, "/test$file.text", 15, true), 0);
        assert_string_equal((char *)path.data, "/test%24file.text");
        check_sig("PUT", (char *)path.data, "", h, 5, payload,
                  "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

static void test_sigv4_bucket_queries(void **state)
{
        const HfS3Header h[] = {
                { "host", HOST },
                { "x-amz-content-sha256", EMPTY_SHA },
                { "x-amz-date", DATE },
        };

        (void)state;
        check_sig("GET", "/", "lifecycle=", h, 3, EMPTY_SHA,
                  "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
        check_sig("GET", "/", "max-keys=2&prefix=J", h, 3, EMPTY_SHA,
                  "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

static void test_sigv4_rejects(void **state)
{
        _cleanup_buf_ HfBuf out = HF_BUF_INIT(1 << 16);
        const HfS3Header unsorted[] = { { "x-amz-date", DATE }, { "host", HOST } };
        const HfS3Header upper[] = { { "Host", HOST } };
        const HfS3Header newline[] = { { "host", "a\r\nx-evil: 1" } };
        HfSigV4 s = { .method = "GET",
                      .uri = "/",
                      .query = "",
                      .payload_hash = EMPTY_SHA,
                      .amz_date = DATE,
                      .region = "us-east-1",
                      .service = "s3",
                      .access_key = AKID,
                      .secret_key = SECRET };

        (void)state;
        s.headers = unsorted;
        s.n_headers = 2;
        assert_int_equal(hf_sigv4_authorization(&s, &out), -EINVAL);
        s.headers = upper;
        s.n_headers = 1;
        assert_int_equal(hf_sigv4_authorization(&s, &out), -EINVAL);
        s.headers = newline;
        assert_int_equal(hf_sigv4_authorization(&s, &out), -EINVAL);
        s.headers = upper;
        s.amz_date = "2013";
        assert_int_equal(hf_sigv4_authorization(&s, &out), -EINVAL);
}

static void test_uri_encode(void **state)
{
        _cleanup_buf_ HfBuf b = HF_BUF_INIT(256);

        (void)state;
        assert_int_equal(hf_s3_uri_encode(&b, "a b/c~d_e-f.g+h=\xc3\xa9", 18, false), 0);
        assert_string_equal((char *)b.data, "a%20b%2Fc~d_e-f.g%2Bh%3D%C3%A9");
        hf_buf_reset(&b);
        assert_int_equal(hf_s3_uri_encode(&b, "pre/data/ab", 11, true), 0);
        assert_string_equal((char *)b.data, "pre/data/ab");
}

static void test_dates(void **state)
{
        char amz[17], iso[21];
        int64_t t;

        (void)state;
        hf_s3_amz_date(1369353600, amz);
        assert_string_equal(amz, "20130524T000000Z");
        hf_s3_iso_date(1369353600 + 3661, iso);
        assert_string_equal(iso, "2013-05-24T01:01:01Z");
        assert_int_equal(hf_s3_parse_iso_date(iso, strlen(iso), &t), 0);
        assert_int_equal(t, 1369353600 + 3661);
        assert_int_equal(hf_s3_parse_iso_date("2026-11-30T04:20:22.113526000Z", 30, &t), 0);
        assert_int_equal(t, 1796012422);
        assert_int_equal(hf_s3_parse_iso_date("2024-02-29T00:00:00.5Z", 22, &t), 0);
        assert_int_equal(t, 1709164800);
        assert_int_equal(hf_s3_parse_iso_date("2023-02-29T00:00:00Z", 20, &t), -EINVAL);
        assert_int_equal(hf_s3_parse_iso_date("2023-01-01T00:00:00", 19, &t), -EINVAL);
        assert_int_equal(hf_s3_parse_iso_date("2023-01-01T00:00:00+01:00", 25, &t), -EINVAL);
        assert_int_equal(hf_s3_parse_iso_date("2023-01-01T00:00:00.Z", 21, &t), -EINVAL);
        assert_int_equal(hf_s3_parse_iso_date("2023-13-01T00:00:00Z", 20, &t), -EINVAL);
        assert_int_equal(hf_s3_parse_iso_date("1969-12-31T23:59:59Z", 20, &t), -EINVAL);
}

/* ---- XML ---- */

typedef struct Seen {
        char keys[8][HF_S3_KEY_MAX + 1];
        uint64_t sizes[8];
        int64_t mtimes[8];
        size_t n;
} Seen;

static int on_obj(void *userdata, const HfS3Object *o)
{
        Seen *s = userdata;

        if (s->n == 8)
                return -E2BIG;
        memcpy(s->keys[s->n], o->key, o->key_len + 1);
        s->sizes[s->n] = o->size;
        s->mtimes[s->n] = o->mtime;
        s->n++;
        return 0;
}

/* As RGW 16.2 answers ListObjectsV2 (abridged). */
static const char list_page[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
        "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        "<Name>b</Name><Prefix>pre/data/</Prefix><MaxKeys>1000</MaxKeys>"
        "<IsTruncated>true</IsTruncated>"
        "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</"
        "NextContinuationToken>"
        "<Contents><Key>pre/data/13/13b9</Key><LastModified>2026-11-27T04:17:26.058Z"
        "</LastModified><ETag>&quot;abc&quot;</ETag><Size>907</Size>"
        "<StorageClass>STANDARD</StorageClass><Owner><ID>x</ID></Owner><Type>Normal</Type>"
        "</Contents>\n  <Contents><Key>a&amp;b&#x2F;&#233;&lt;</Key><Size>0</Size></Contents>"
        "<KeyCount>2</KeyCount></ListBucketResult>";

static void test_xml_list(void **state)
{
        Seen s = { 0 };
        char token[HF_S3_TOKEN_MAX + 1];
        bool truncated = false;

        (void)state;
        assert_int_equal(
                hf_s3_parse_list(list_page, strlen(list_page), on_obj, &s, &truncated, token), 0);
        assert_true(truncated);
        assert_string_equal(token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
        assert_int_equal(s.n, 2);
        assert_string_equal(s.keys[0], "pre/data/13/13b9");
        assert_int_equal(s.sizes[0], 907);
        assert_int_equal(s.mtimes[0], 1795753046);
        assert_string_equal(s.keys[1], "a&b/\xc3\xa9<");
        assert_int_equal(s.sizes[1], 0);
}

static void test_xml_error_and_lock(void **state)
{
        static const char err[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error>"
                                  "<Code>NoSuchBucket</Code><Message></Message><BucketName>x"
                                  "</BucketName><RequestId>tx0</RequestId></Error>";
        static const char lock[] =
                "<ObjectLockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                "<ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>"
                "<Mode>COMPLIANCE</Mode><Days>3</Days></DefaultRetention></Rule>"
                "</ObjectLockConfiguration>";
        static const char lock_years[] =
                "<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule>"
                "<DefaultRetention><Mode>GOVERNANCE</Mode><Years>2</Years></DefaultRetention>"
                "</Rule></ObjectLockConfiguration>";
        static const char lock_both[] =
                "<ObjectLockConfiguration><Rule><DefaultRetention><Mode>GOVERNANCE</Mode>"
                "<Years>2</Years><Days>1</Days></DefaultRetention></Rule>"
                "</ObjectLockConfiguration>";
        static const char upload[] = "<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k"
                                     "</Key><UploadId>2~abc</UploadId>"
                                     "</InitiateMultipartUploadResult>";
        char code[64], msg[256], id[HF_S3_TOKEN_MAX + 1];
        HfS3LockConfig c;

        (void)state;
        assert_int_equal(hf_s3_parse_error(err, strlen(err), code, msg), 0);
        assert_string_equal(code, "NoSuchBucket");
        assert_string_equal(msg, "");
        assert_int_equal(hf_s3_parse_error(lock, strlen(lock), code, msg), -ENOENT);
        assert_int_equal(hf_s3_parse_lock_config(lock, strlen(lock), &c), 0);
        assert_true(c.enabled);
        assert_int_equal(c.mode, HF_S3_LOCK_COMPLIANCE);
        assert_int_equal(c.days, 3);
        assert_int_equal(hf_s3_parse_lock_config(lock_years, strlen(lock_years), &c), 0);
        assert_int_equal(c.mode, HF_S3_LOCK_GOVERNANCE);
        assert_int_equal(c.days, 730);
        assert_int_equal(hf_s3_parse_lock_config(lock_both, strlen(lock_both), &c), -EPROTO);
        assert_int_equal(hf_s3_parse_upload_id(upload, strlen(upload), id), 0);
        assert_string_equal(id, "2~abc");
        assert_int_equal(hf_s3_parse_upload_id(err, strlen(err), id), -EPROTO);
}

typedef struct VSeen {
        size_t versions, markers;
        char last[64];
} VSeen;

static int on_ver(void *userdata, const HfS3Version *v)
{
        VSeen *s = userdata;

        if (v->delete_marker)
                s->markers++;
        else
                s->versions++;
        (void)snprintf(s->last, sizeof(s->last), "%s", v->version_id);
        return 0;
}

static void test_xml_versions(void **state)
{
        static const char doc[] =
                "<ListVersionsResult><Name>b</Name><Prefix>locks/x</Prefix>"
                "<IsTruncated>false</IsTruncated>"
                "<Version><Key>locks/x</Key><VersionId>v1</VersionId><IsLatest>false</IsLatest>"
                "<Size>3</Size></Version>"
                "<DeleteMarker><Key>locks/x</Key><VersionId>m1</VersionId>"
                "<IsLatest>true</IsLatest></DeleteMarker></ListVersionsResult>";
        char km[HF_S3_TOKEN_MAX + 1], vm[HF_S3_TOKEN_MAX + 1];
        VSeen s = { 0 };
        bool truncated = true;

        (void)state;
        assert_int_equal(hf_s3_parse_versions(doc, strlen(doc), on_ver, &s, &truncated, km, vm), 0);
        assert_false(truncated);
        assert_int_equal(s.versions, 1);
        assert_int_equal(s.markers, 1);
        assert_string_equal(s.last, "m1");
}

static int count_cb(void *userdata, const char *path, const char *text, size_t n)
{
        (*(size_t *)userdata)++;
        return 0;
}

static void test_xml_hostile(void **state)
{
        static const char *const bad[] = {
                "",
                "   ",
                "<a>",
                "<a></b>",
                "<a></a><b></b>",
                "text<a></a>",
                "<a></a>text",
                "<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>",
                "<a>&unknown;</a>",
                "<a>&#0;</a>",
                "<a>&#xD800;</a>",
                "<a>&#x110000;</a>",
                "<a>&#;</a>",
                "<a>&amp</a>",
                "<a b=\"1></a>",
                "<a b=1></a>",
                "<a><!-- never closed </a>",
                "<a><![CDATA[ never closed </a>",
                "<a>\0</a>",
                "<:></:>",
                "</a>",
                "<a/><a/>",
        };
        char deep[HF_S3_XML_DEPTH * 8 + 64] = "";
        char *big;
        size_t n = 0, len;

        (void)state;
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                len = i == 18 ? 9 : strlen(bad[i]);
                if (hf_s3_xml_walk(bad[i], len, count_cb, &n) != -EPROTO)
                        fail_msg("accepted: %s", bad[i]);
        }
        /* Nesting: the limit is accepted, one more level is not. */
        for (int i = 0; i < HF_S3_XML_DEPTH; i++)
                strcat(deep, "<a>");
        for (int i = 0; i < HF_S3_XML_DEPTH; i++)
                strcat(deep, "</a>");
        assert_int_equal(hf_s3_xml_walk(deep, strlen(deep), count_cb, &n), 0);
        memmove(deep + 3, deep, strlen(deep) + 1);
        memcpy(deep, "<a>", 3);
        strcat(deep, "</a>");
        assert_int_equal(hf_s3_xml_walk(deep, strlen(deep), count_cb, &n), -EPROTO);
        /* A leaf's text past the limit is refused; the same amount around children is not. */
        big = malloc(HF_S3_XML_TEXT_MAX + 64);
        assert_non_null(big);
        memcpy(big, "<a>", 3);
        memset(big + 3, 'x', HF_S3_XML_TEXT_MAX + 1);
        memcpy(big + 3 + HF_S3_XML_TEXT_MAX + 1, "</a>", 5);
        assert_int_equal(hf_s3_xml_walk(big, strlen(big), count_cb, &n), -EPROTO);
        memcpy(big + 3 + HF_S3_XML_TEXT_MAX + 1, "<b/></a>", 9);
        assert_int_equal(hf_s3_xml_walk(big, strlen(big), count_cb, &n), 0);
        free(big);
        /* What is fine: declarations, comments, CDATA, empty elements, '>' in text. */
        n = 0;
        assert_int_equal(hf_s3_xml_walk("\xef\xbb\xbf<?xml version=\"1.0\"?><!-- c --><a x='1'>"
                                        "<![CDATA[<b>]]>&gt;></a>\n",
                                        68, count_cb, &n),
                         0);
        assert_int_equal(n, 1);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sigv4_get_object),
                cmocka_unit_test(test_sigv4_put_object),
                cmocka_unit_test(test_sigv4_bucket_queries),
                cmocka_unit_test(test_sigv4_rejects),
                cmocka_unit_test(test_uri_encode),
                cmocka_unit_test(test_dates),
                cmocka_unit_test(test_xml_list),
                cmocka_unit_test(test_xml_error_and_lock),
                cmocka_unit_test(test_xml_versions),
                cmocka_unit_test(test_xml_hostile),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
