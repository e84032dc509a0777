/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * S3 replies (s3-xml.c): a hostile server or anyone on a plain-HTTP path writes them. The
 * first byte picks the reader (generic walk, error, listing, versions, lock configuration,
 * upload ID); the rest is the document. Every string handed on must fit its documented bound
 * and every reader must answer 0, -EPROTO or a callback's own error.
 */
#include <string.h>

#include "../../src/backend/s3.h"
#include "fuzz.h"

static int on_walk(void *userdata, const char *path, const char *text, size_t n)
{
        size_t *count = userdata;

        FUZZ_CHECK(strlen(path) > 0 && strlen(path) < HF_S3_XML_DEPTH * (HF_S3_XML_NAME_MAX + 1));
        FUZZ_CHECK(n <= HF_S3_XML_TEXT_MAX && text[n] == 0);
        if (++*count > 100000)
                return -ECANCELED;
        return 0;
}

static int on_object(void *userdata, const HfS3Object *o)
{
        size_t *count = userdata;

        FUZZ_CHECK(o->key_len > 0 && o->key_len <= HF_S3_KEY_MAX);
        FUZZ_CHECK(strlen(o->key) == o->key_len);
        if (++*count > 3)
                return -ECANCELED; /* a callback's error stops the walk */
        return 0;
}

static int on_version(void *userdata, const HfS3Version *v)
{
        size_t *count = userdata;

        FUZZ_CHECK(v->key_len > 0 && v->key_len <= HF_S3_KEY_MAX);
        FUZZ_CHECK(strlen(v->version_id) > 0 && strlen(v->version_id) <= HF_S3_TOKEN_MAX);
        ++*count;
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char a[HF_S3_TOKEN_MAX + 1], b[HF_S3_TOKEN_MAX + 1], code[64], msg[256];
        const char *doc = (const char *)data + 1;
        size_t n = size ? size - 1 : 0, count = 0;
        HfS3LockConfig lc;
        bool truncated;
        int r;

        if (size == 0)
                return 0;
        switch (data[0] % 6) {
        case 0:
                r = hf_s3_xml_walk(doc, n, on_walk, &count);
                FUZZ_CHECK(r == 0 || r == -EPROTO || r == -ECANCELED || r == -ENOMEM);
                break;
        case 1:
                r = hf_s3_parse_error(doc, n, code, msg);
                FUZZ_CHECK(r == 0 || r == -ENOENT || r == -EPROTO);
                FUZZ_CHECK(strlen(code) < 64 && strlen(msg) < 256);
                break;
        case 2:
                r = hf_s3_parse_list(doc, n, on_object, &count, &truncated, a);
                FUZZ_CHECK(r == 0 || r == -EPROTO || r == -ECANCELED || r == -ENOMEM);
                FUZZ_CHECK(r != -ECANCELED || count == 4);
                FUZZ_CHECK(strlen(a) <= HF_S3_TOKEN_MAX);
                FUZZ_CHECK(r != 0 || !truncated || a[0]);
                break;
        case 3:
                r = hf_s3_parse_versions(doc, n, on_version, &count, &truncated, a, b);
                FUZZ_CHECK(r == 0 || r == -EPROTO || r == -ENOMEM);
                FUZZ_CHECK(r != 0 || !truncated || a[0]);
                break;
        case 4:
                r = hf_s3_parse_lock_config(doc, n, &lc);
                FUZZ_CHECK(r == 0 || r == -EPROTO || r == -ENOMEM);
                if (r == 0) {
                        FUZZ_CHECK(lc.mode <= HF_S3_LOCK_COMPLIANCE);
                        FUZZ_CHECK((lc.mode == HF_S3_LOCK_NONE) == (lc.days == 0));
                }
                break;
        default:
                r = hf_s3_parse_upload_id(doc, n, a);
                FUZZ_CHECK(r == 0 || r == -EPROTO || r == -ENOMEM);
                FUZZ_CHECK(r != 0 || (a[0] && strlen(a) <= HF_S3_TOKEN_MAX));
                break;
        }
        return 0;
}
