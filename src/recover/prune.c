/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * `holdfast recover --prune`: the vault half of the shadow store's retention. A pre-image is
 * redundant once a vault snapshot provably holds its exact bytes: the same file node, size and
 * chunk IDs, computed here with the vault's own polynomial (so restic's chunk boundaries). Such
 * rows go into preimage_vaulted; their SHA-256 is recorded, so a later recovery from the vault
 * can prove it put back the pre-image's bytes. Then the policy of src/sentinel/retention.c runs
 * here when no sentinel does (a running sentinel prunes on its own).
 */
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <string.h>

#include "../base/log.h"
#include "../base/util.h"
#include "../chunker/chunker.h"
#include "../sentinel/retention.h"
#include "../sentinel/sentinel.h"
#include "recover-internal.h"

#define STORE ".holdfast"

/* Does the file at fd chunk into exactly the blobs of node n? Fills sha with its SHA-256. */
static int same_content(HfRepo *repo, int fd, const HfNode *n, char sha[65])
{
        _cleanup_(hf_chunker_freep) HfChunker *ch = NULL;
        _cleanup_(hf_sha256_freep) HfSha256 *whole = NULL, *part = NULL;
        _cleanup_free_ uint8_t *buf = malloc(1 << 20);
        size_t k = 0;
        uint64_t off = 0;
        HfId id;
        int r;

        if (!buf)
                return -ENOMEM;
        r = hf_chunker_new(hf_repo_pol(repo), &ch);
        if (r < 0)
                return r;
        if (hf_sha256_new(&whole) < 0 || hf_sha256_new(&part) < 0)
                return -ENOMEM;
        bool open_chunk = false, same = true;
        for (;;) {
                ssize_t got = pread(fd, buf, 1 << 20, (off_t)off);
                if (got < 0)
                        return -errno;
                if (got == 0)
                        break;
                off += (uint64_t)got;
                hf_sha256_update(whole, buf, (size_t)got);
                for (size_t p = 0; p < (size_t)got;) {
                        bool cut;
                        size_t m = hf_chunker_scan(ch, buf + p, (size_t)got - p, &cut, NULL);
                        hf_sha256_update(part, buf + p, m);
                        open_chunk = true;
                        p += m;
                        if (cut) {
                                hf_sha256_final(part, &id);
                                hf_sha256_init(part);
                                open_chunk = false;
                                same = same && k < n->n_content && hf_id_eq(&id, &n->content[k]);
                                k++;
                        }
                }
        }
        if (open_chunk) {
                hf_sha256_final(part, &id);
                same = same && k < n->n_content && hf_id_eq(&id, &n->content[k]);
                k++;
        }
        hf_sha256_final(whole, &id);
        hf_hex_encode(id.b, 32, sha);
        sha[64] = 0;
        return same && k == n->n_content && off == n->size;
}

static pid_t sentinel_running(const char *state)
{
        char p[4096], buf[32], comm[64];
        uint64_t pid;

        (void)snprintf(p, sizeof(p), "%s/sentinel.pid", state);
        _cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
        if (n <= 0)
                return 0;
        buf[n] = 0;
        buf[strcspn(buf, "\n")] = 0;
        if (hf_parse_u64(buf, &pid) < 0 || pid == 0 || pid > INT32_MAX || kill((pid_t)pid, 0) < 0)
                return 0;
        (void)snprintf(p, sizeof(p), "/proc/%llu/comm", (unsigned long long)pid);
        _cleanup_close_ int cfd = open(p, O_RDONLY | O_CLOEXEC);
        n = cfd < 0 ? -1 : read(cfd, comm, sizeof(comm) - 1);
        if (n <= 0)
                return 0;
        comm[n] = 0;
        return strncmp(comm, "holdfast", 8) == 0 ? (pid_t)pid : 0;
}

int hf_recover_prune(const HfPruneOptions *o)
{
        char dbp[4096];
        sqlite3 *db = NULL;
        sqlite3_stmt *s = NULL, *ins = NULL, *sha = NULL;
        _cleanup_(hf_vault_src_freep) HfVaultSrc *v = NULL;
        uint64_t vaulted = 0, checked = 0;
        HfRetention pol;
        HfPruneStats st;
        int r;

        r = hf_db_path(o->state_dir, dbp, sizeof(dbp));
        if (r < 0)
                return r;
        if (access(dbp, F_OK) < 0) {
                log_error("no sentinel database at %s", dbp);
                return -ENOENT;
        }
        if (sqlite3_open_v2(dbp, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
                log_error("%s: cannot open: %s", dbp, db ? sqlite3_errmsg(db) : "?");
                sqlite3_close(db);
                return -EIO;
        }
        sqlite3_busy_timeout(db, 10000);
        r = hf_retention_schema(db);
        if (r < 0)
                goto out;
        if (o->repo) {
                r = hf_vault_src_new(o->repo, 1e18, &v);
                if (r < 0)
                        goto out;
                if (sqlite3_prepare_v2(db,
                                       "SELECT p.id, p.time, p.path, p.store_root, p.store_path,"
                                       " p.size FROM preimages p LEFT JOIN preimage_vaulted v ON"
                                       " v.preimage_id = p.id WHERE p.released IS NULL AND"
                                       " p.method IN ('reflink','copy') AND p.store_path IS NOT"
                                       " NULL AND v.preimage_id IS NULL ORDER BY p.time",
                                       -1, &s, NULL) != SQLITE_OK ||
                    sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO preimage_vaulted VALUES (?,?,?)",
                                       -1, &ins, NULL) != SQLITE_OK ||
                    sqlite3_prepare_v2(db,
                                       "UPDATE preimages SET sha256 = ? WHERE id = ? AND sha256"
                                       " IS NULL",
                                       -1, &sha, NULL) != SQLITE_OK) {
                        log_error("%s: %s", dbp, sqlite3_errmsg(db));
                        r = -EIO;
                        goto out;
                }
                while (sqlite3_step(s) == SQLITE_ROW) {
                        const char *path = (const char *)sqlite3_column_text(s, 2),
                                   *root = (const char *)sqlite3_column_text(s, 3),
                                   *rel = (const char *)sqlite3_column_text(s, 4);
                        double t = sqlite3_column_double(s, 1);
                        char file[8192], hex[65], id8[9];
                        const HfNode *n;
                        bool hit = false;
                        if (!path || !root || !rel || strstr(rel, ".."))
                                continue;
                        checked++;
                        (void)snprintf(file, sizeof(file), "%s/" STORE "/%s",
                                       strcmp(root, "/") ? root : "", rel);
                        _cleanup_close_ int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                        if (fd < 0)
                                continue;
                        /* The snapshot before the capture (the file unchanged since), then the
                         * newest one. */
                        for (int pass = 0; pass < 2 && !hit; pass++) {
                                if (!hf_vault_src_pick(v, pass == 0 ? t : 1e18)) {
                                        log_debug("%s: pass %d: no snapshot", path, pass);
                                        continue;
                                }
                                int lr = hf_vault_src_lookup(v, path, &n);
                                if (lr < 0 || n->type != HF_NODE_FILE ||
                                    (int64_t)n->size != sqlite3_column_int64(s, 5)) {
                                        log_debug("%s: pass %d: lookup %d", path, pass, lr);
                                        continue;
                                }
                                int same = same_content(o->repo, fd, n, hex);
                                log_debug("%s: pass %d: %s", path, pass,
                                          same == 1 ? "held by the vault" : "differs");
                                if (same == 1)
                                        hit = hf_vault_src_snapshot(v, id8, NULL);
                        }
                        if (!hit)
                                continue;
                        if (o->dry_run) {
                                vaulted++;
                                continue;
                        }
                        sqlite3_reset(ins);
                        sqlite3_bind_int64(ins, 1, sqlite3_column_int64(s, 0));
                        sqlite3_bind_text(ins, 2, id8, -1, SQLITE_TRANSIENT);
                        sqlite3_bind_double(ins, 3, hf_recover_now());
                        sqlite3_reset(sha);
                        sqlite3_bind_text(sha, 1, hex, -1, SQLITE_TRANSIENT);
                        sqlite3_bind_int64(sha, 2, sqlite3_column_int64(s, 0));
                        if (sqlite3_step(ins) == SQLITE_DONE && sqlite3_step(sha) == SQLITE_DONE)
                                vaulted++;
                }
        }
        pid_t running = sentinel_running(o->state_dir);
        hf_retention_defaults(&pol);
        if (o->window > 0)
                pol.window = o->window;
        if (o->max_share > 0)
                pol.max_share = o->max_share;
        pol.dry_run = o->dry_run || running > 0;
        r = hf_shadow_prune(db, &pol, hf_recover_now(), &st);
        if (r < 0)
                goto out;
        if (o->out.json)
                printf("{\"message_type\":\"prune\",\"checked\":%llu,\"vaulted\":%llu,"
                       "\"sentinel_running\":%s,\"released\":%llu,\"released_bytes\":%llu,"
                       "\"by_window\":%llu,\"by_vault\":%llu,\"by_budget\":%llu,"
                       "\"pins_released\":%llu,\"protected\":%llu,\"kept\":%llu,"
                       "\"kept_bytes\":%llu,\"over_budget\":%s,\"dry_run\":%s}\n",
                       (unsigned long long)checked, (unsigned long long)vaulted,
                       running ? "true" : "false", (unsigned long long)st.released,
                       (unsigned long long)st.released_bytes, (unsigned long long)st.by_window,
                       (unsigned long long)st.by_vault, (unsigned long long)st.by_budget,
                       (unsigned long long)st.pins_released, (unsigned long long)st.protected_rows,
                       (unsigned long long)st.kept, (unsigned long long)st.kept_bytes,
                       st.over_budget ? "true" : "false", pol.dry_run ? "true" : "false");
        else {
                char b1[32], b2[32];
                if (o->repo)
                        printf("%llu of %llu pre-image(s) are held by the vault (marked "
                               "releasable)\n",
                               (unsigned long long)vaulted, (unsigned long long)checked);
                if (running)
                        printf("the sentinel (pid %d) is running and releases pre-images itself; "
                               "it would release:\n",
                               (int)running);
                printf("%s%llu pre-image(s), %s (%llu past the window, %llu held by the vault, "
                       "%llu over the budget), %llu pin(s); %llu kept for open incidents; "
                       "%llu left, %s\n",
                       pol.dry_run ? "would release " : "released ",
                       (unsigned long long)st.released,
                       hf_format_bytes(b1, sizeof(b1), st.released_bytes),
                       (unsigned long long)st.by_window, (unsigned long long)st.by_vault,
                       (unsigned long long)st.by_budget, (unsigned long long)st.pins_released,
                       (unsigned long long)st.protected_rows, (unsigned long long)st.kept,
                       hf_format_bytes(b2, sizeof(b2), st.kept_bytes));
        }
        r = st.over_budget ? HF_INCOMPLETE : 0;
out:
        sqlite3_finalize(s);
        sqlite3_finalize(ins);
        sqlite3_finalize(sha);
        sqlite3_close(db);
        return r;
}
