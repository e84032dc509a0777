/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * holdfast serve's request paths and Range headers, the parts of a request line an attacker
 * fully controls. A path that parses names only plain segments (no '.', '..', separators or
 * escapes that decode to them) and parses again to the same thing when rebuilt; a range lies
 * inside the file.
 */
#include <string.h>

#include "../../src/server/server.h"
#include "fuzz.h"

static void check_segments(const char *repo)
{
        const char *p = repo;

        FUZZ_CHECK(strlen(repo) < HF_REPO_PATH_MAX);
        if (!*p)
                return;
        for (;;) {
                const char *slash = strchr(p, '/');
                size_t n = slash ? (size_t)(slash - p) : strlen(p);
                FUZZ_CHECK(n > 0 && n <= HF_SEGMENT_MAX && p[0] != '.' && p[0] != '-');
                for (size_t i = 0; i < n; i++)
                        FUZZ_CHECK(p[i] != '%' && p[i] != '\\' && (unsigned char)p[i] > 0x20);
                if (!slash)
                        break;
                p = slash + 1;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        HfRequestPath p, q;
        uint64_t off, len, fsize = 0;
        char rebuilt[HF_URL_MAX * 2];
        int n = -1;

        if (hf_server_parse_path((const char *)data, size, &p) == 0) {
                FUZZ_CHECK(p.kind <= HF_PATH_METRICS);
                check_segments(p.repo);
                switch (p.kind) {
                case HF_PATH_REPO:
                        n = snprintf(rebuilt, sizeof(rebuilt), "/%s%s", p.repo, *p.repo ? "/" : "");
                        break;
                case HF_PATH_CONFIG:
                        n = snprintf(rebuilt, sizeof(rebuilt), "/%s%sconfig", p.repo,
                                     *p.repo ? "/" : "");
                        break;
                case HF_PATH_LIST:
                        n = snprintf(rebuilt, sizeof(rebuilt), "/%s%s%s/", p.repo,
                                     *p.repo ? "/" : "", hf_file_type_dir(p.type));
                        break;
                case HF_PATH_OBJECT:
                        FUZZ_CHECK(strlen(p.name) == 64);
                        n = snprintf(rebuilt, sizeof(rebuilt), "/%s%s%s/%s", p.repo,
                                     *p.repo ? "/" : "", hf_file_type_dir(p.type), p.name);
                        break;
                case HF_PATH_HEARTBEAT:
                        FUZZ_CHECK(p.name[0] && p.name[0] != '.' && !strchr(p.name, '/'));
                        break;
                case HF_PATH_METRICS:
                        break;
                }
                if (n > 0 && (size_t)n < sizeof(rebuilt)) {
                        FUZZ_CHECK(hf_server_parse_path(rebuilt, (size_t)n, &q) == 0);
                        FUZZ_CHECK(q.kind == p.kind && strcmp(q.repo, p.repo) == 0 &&
                                   strcmp(q.name, p.name) == 0);
                }
        }

        /* The same bytes as a Range header, against a few file sizes. */
        if (size >= 2)
                fsize = ((uint64_t)data[0] << 8 | data[1]) * 7;
        const uint64_t sizes[] = { 0, 1, fsize, UINT64_MAX / 4 };
        for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                if (hf_server_parse_range((const char *)data, size, sizes[i], &off, &len) == 0) {
                        FUZZ_CHECK(len > 0 && off < sizes[i] && len <= sizes[i] - off);
                }
        }
        return 0;
}
