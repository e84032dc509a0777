/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>
#include <time.h>

#include "../base/log.h"
#include "cli.h"

static const CliOption options[] = {
        { "host", 'H', "HOST", "only snapshots of this host" },
        { "tag", 0, "TAG", "only snapshots with this tag (repeatable: all must match)" },
        { "path", 0, "PATH", "only snapshots of exactly these paths (repeatable)" },
        { "latest", 0, "N", "only the newest N matching snapshots" },
        { NULL, 0, NULL, NULL },
};

/* The snapshot's stored JSON with "id" and "short_id" added (restic's --json shape). */
static int snapshot_json(const HfSnapshot *s, HfBuf *out)
{
        char hex[HF_ID_HEX_LEN + 1];
        size_t start = out->len;
        int r = hf_snapshot_format(s, out);

        if (r < 0)
                return r;
        if (out->len == start || out->data[out->len - 1] != '}')
                return -EPROTO;
        out->len--;
        hf_id_hex(&s->id, hex);
        return hf_buf_printf(out, ",\"id\":\"%s\",\"short_id\":\"%.8s\"}", hex, hex);
}

static void format_local(const HfTime *t, char *buf, size_t n)
{
        time_t sec = (time_t)t->sec;
        struct tm tm;

        if (!localtime_r(&sec, &tm) || strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm) == 0)
                (void)snprintf(buf, n, "?");
}

static int run(CliContext *ctx, int argc, char **argv)
{
        _cleanup_(hf_repo_freep) HfRepo *repo = NULL;
        HfSnapshotFilter f = { 0 };
        HfSnapshot *v = NULL;
        size_t n = 0, first = 0, shown = 0;
        unsigned errors = 0;
        uint64_t latest = 0;
        const char *lv;
        int r;

        if (argc > 0)
                return cli_usage_error("snapshots takes no arguments (filter with --host, --tag, "
                                       "--path)");
        if ((lv = cli_value(ctx, "latest")) && (hf_parse_u64(lv, &latest) < 0 || latest == 0))
                return cli_usage_error("--latest wants a positive number");
        r = cli_open_repo(ctx, &repo);
        if (r != EXIT_OK)
                return r;
        if (cli_filter(ctx, &f) < 0)
                return EXIT_FAILED;
        r = hf_snapshot_load_all(repo, &v, &n, &errors);
        if (r < 0) {
                cli_filter_done(&f);
                return EXIT_FAILED;
        }
        /* Keep the matching ones in place, oldest first. */
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
                if (!hf_snapshot_match(&v[i], &f)) {
                        hf_snapshot_done(&v[i]);
                        continue;
                }
                if (m != i)
                        v[m] = v[i];
                m++;
        }
        if (latest && m > latest)
                first = m - latest;

        if (ctx->json) {
                HfBuf out = HF_BUF_INIT(SIZE_MAX / 2);
                r = hf_buf_putc(&out, '[');
                for (size_t i = first; r >= 0 && i < m; i++) {
                        if (i > first)
                                r = hf_buf_putc(&out, ',');
                        if (r >= 0)
                                r = snapshot_json(&v[i], &out);
                }
                if (r >= 0)
                        r = hf_buf_puts(&out, "]\n");
                if (r >= 0)
                        fwrite(out.data, 1, out.len, stdout);
                hf_buf_free(&out);
        } else {
                printf("%-8s  %-19s  %-16s  %-16s  %s\n", "ID", "Time", "Host", "Tags", "Paths");
                printf("--------------------------------------------------------------------------"
                       "------\n");
                for (size_t i = first; i < m; i++) {
                        char hex[HF_ID_HEX_LEN + 1], when[32], tags[256] = "";
                        size_t tl = 0;
                        hf_id_hex(&v[i].id, hex);
                        format_local(&v[i].time, when, sizeof(when));
                        for (size_t t = 0; t < v[i].n_tags && tl < sizeof(tags); t++)
                                tl += (size_t)snprintf(tags + tl, sizeof(tags) - tl, "%s%s",
                                                       t ? "," : "", v[i].tags[t]);
                        for (size_t p = 0; p < MAX(v[i].n_paths, (size_t)1); p++) {
                                if (p == 0)
                                        printf("%.8s  %-19s  %-16s  %-16s  %s\n", hex, when,
                                               v[i].hostname ? v[i].hostname : "", tags,
                                               v[i].n_paths ? v[i].paths[0] : "");
                                else
                                        printf("%-8s  %-19s  %-16s  %-16s  %s\n", "", "", "", "",
                                               v[i].paths[p]);
                        }
                        shown++;
                }
                printf("--------------------------------------------------------------------------"
                       "------\n%zu snapshot%s\n",
                       shown, shown == 1 ? "" : "s");
        }
        hf_snapshot_array_free(v, m);
        cli_filter_done(&f);
        if (r < 0)
                return EXIT_FAILED;
        return errors ? EXIT_INCOMPLETE : EXIT_OK;
}

const CliCommand cmd_snapshots = {
        .name = "snapshots",
        .usage = "[OPTIONS]",
        .summary = "list snapshots",
        .details = "Exit code 3: some snapshot files could not be read (they are named above).",
        .options = options,
        .run = run,
};
