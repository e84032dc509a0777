/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "lock.h"

#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "../base/log.h"

#define LOCK_MAX (64u * 1024)
#define LOCK_REFRESH_SECONDS 300
#define LOCK_STALE_SECONDS (30 * 60)
/* restic's wait between saving a lock and looking for competing ones, in seconds. */
#define LOCK_PAUSE 0.2

struct HfLock {
        HfRepo *repo;
        HfId id;
        bool exclusive;
        pthread_t refresher;
        bool has_refresher;
        pthread_mutex_t mu;
        pthread_cond_t cond;
        bool stop;
        double written; /* monotonic time the lock file was written */
};

static int lock_format(bool exclusive, HfBuf *out)
{
        HfTime now = hf_time_now();
        int r;

        r = hf_buf_puts(out, "{\"time\":\"");
        if (r >= 0)
                r = hf_time_format(out, &now);
        if (r >= 0)
                r = hf_buf_printf(
                        out, "\",\"exclusive\":%s,\"hostname\":", exclusive ? "true" : "false");
        if (r >= 0)
                r = hf_json_put_string(out, hf_hostname(), strlen(hf_hostname()));
        if (r >= 0)
                r = hf_buf_puts(out, ",\"username\":");
        if (r >= 0)
                r = hf_json_put_string(out, hf_username(), strlen(hf_username()));
        if (r >= 0)
                r = hf_buf_printf(out, ",\"pid\":%d", (int)getpid());
        if (r >= 0 && getuid())
                r = hf_buf_printf(out, ",\"uid\":%u", (unsigned)getuid());
        if (r >= 0 && getgid())
                r = hf_buf_printf(out, ",\"gid\":%u", (unsigned)getgid());
        if (r >= 0)
                r = hf_buf_putc(out, '}');
        return r;
}

int hf_lock_parse(const void *json, size_t n, HfLockInfo *ret)
{
        json_error_t jerr;
        json_t *root = json_loadb(json, n, 0, &jerr), *v;
        HfLockInfo l = { 0 };
        int r = -EPROTO;

        if (!root || !json_is_object(root))
                goto out;
        v = json_object_get(root, "time");
        if (!v || !json_is_string(v) ||
            hf_time_parse(json_string_value(v), json_string_length(v), &l.time) < 0)
                goto out;
        l.exclusive = json_is_true(json_object_get(root, "exclusive"));
        v = json_object_get(root, "hostname");
        if (v && json_is_string(v))
                (void)snprintf(l.hostname, sizeof(l.hostname), "%s", json_string_value(v));
        v = json_object_get(root, "username");
        if (v && json_is_string(v))
                (void)snprintf(l.username, sizeof(l.username), "%s", json_string_value(v));
        v = json_object_get(root, "pid");
        if (v && json_is_integer(v))
                l.pid = json_integer_value(v);
        v = json_object_get(root, "uid");
        if (v && json_is_integer(v))
                l.uid = (uint32_t)json_integer_value(v);
        v = json_object_get(root, "gid");
        if (v && json_is_integer(v))
                l.gid = (uint32_t)json_integer_value(v);
        *ret = l;
        r = 0;
out:
        json_decref(root);
        return r;
}

static bool dead_here(const HfLockInfo *l)
{
        if (strcmp(l->hostname, hf_hostname()) != 0 || l->pid <= 0 || l->pid > INT32_MAX)
                return false;
        return kill((pid_t)l->pid, 0) < 0 && errno == ESRCH;
}

bool hf_lock_is_stale(const HfLockInfo *l)
{
        if (time(NULL) - l->time.sec > LOCK_STALE_SECONDS)
                return true;
        return dead_here(l);
}

typedef struct LockScan {
        HfRepo *repo;
        const HfId *own;
        bool exclusive;
        int conflict;
} LockScan;

static int load_lock(HfRepo *r, const HfId *id, HfLockInfo *ret)
{
        _cleanup_buf_ HfBuf json = HF_BUF_INIT(LOCK_MAX);
        int k;

        k = hf_repo_load_file(r, HF_FILE_LOCK, id, &json, true);
        if (k < 0)
                return k;
        k = hf_lock_parse(json.data, json.len, ret);
        if (k >= 0)
                ret->id = *id;
        return k;
}

static int check_conflicts(HfRepo *r, const HfId *own, bool exclusive)
{
        _cleanup_free_ HfId *ids = NULL;
        size_t n = 0;
        int k;

        k = hf_repo_list_ids(r, HF_FILE_LOCK, &ids, &n);
        if (k < 0)
                return log_error_errno(k, "%s/locks: cannot list: %m",
                                       hf_repo_backend(r)->location);
        for (size_t i = 0; i < n; i++) {
                char hex[HF_ID_HEX_LEN + 1];
                HfLockInfo l;

                if (own && hf_id_eq(own, &ids[i]))
                        continue;
                /* Locks that cannot be read (removed meanwhile, empty, damaged) are ignored,
                 * as restic does. */
                if (load_lock(r, &ids[i], &l) < 0)
                        continue;
                if (!exclusive && !l.exclusive)
                        continue;
                hf_id_hex(&ids[i], hex);
                if (dead_here(&l)) {
                        log_notice("ignoring lock %.8s of process %lld on this host, which no "
                                   "longer runs (\"holdfast unlock\" removes it)",
                                   hex, (long long)l.pid);
                        continue;
                }
                log_error("the vault is locked%s by PID %lld on %s (user %s) since lock %.8s; "
                          "if that process is gone, \"holdfast unlock\" removes stale locks",
                          l.exclusive ? " exclusively" : "", (long long)l.pid, l.hostname,
                          l.username, hex);
                return -EBUSY;
        }
        return 0;
}

static int write_lock(HfRepo *r, bool exclusive, HfId *ret_id)
{
        _cleanup_buf_ HfBuf json = HF_BUF_INIT(LOCK_MAX);
        int k = lock_format(exclusive, &json);

        if (k < 0)
                return k;
        return hf_repo_save_file(r, HF_FILE_LOCK, json.data, json.len, ret_id);
}

static void remove_lock(HfRepo *r, const HfId *id)
{
        char hex[HF_ID_HEX_LEN + 1];
        int k;

        hf_id_hex(id, hex);
        k = hf_backend_remove(hf_repo_backend(r), HF_FILE_LOCK, hex);
        if (k < 0 && k != -ENOENT)
                log_warning_errno(k, "%s/locks/%s: cannot remove lock: %m",
                                  hf_repo_backend(r)->location, hex);
}

static void *refresher(void *arg)
{
        HfLock *l = arg;

        pthread_mutex_lock(&l->mu);
        while (!l->stop) {
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until);
                until.tv_sec += LOCK_REFRESH_SECONDS;
                while (!l->stop && pthread_cond_timedwait(&l->cond, &l->mu, &until) == 0)
                        ;
                if (l->stop)
                        break;
                /* New lock first, then drop the old one, so the vault is never unlocked. */
                HfId nid;
                if (write_lock(l->repo, l->exclusive, &nid) >= 0) {
                        HfId old = l->id;
                        l->id = nid;
                        remove_lock(l->repo, &old);
                } else
                        log_warning("cannot refresh the vault lock; will retry");
        }
        pthread_mutex_unlock(&l->mu);
        return NULL;
}

int hf_lock_begin(HfRepo *r, bool exclusive, HfLock **ret)
{
        HfLock *l;
        int k;

        k = check_conflicts(r, NULL, exclusive);
        if (k < 0)
                return k;
        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        l->repo = r;
        l->exclusive = exclusive;
        pthread_mutex_init(&l->mu, NULL);
        pthread_cond_init(&l->cond, NULL);
        k = write_lock(r, exclusive, &l->id);
        if (k < 0) {
                free(l);
                return k;
        }
        l->written = hf_now_mono();
        if (pthread_create(&l->refresher, NULL, refresher, l) == 0)
                l->has_refresher = true;
        *ret = l;
        return 0;
}

int hf_lock_confirm(HfLock **lp)
{
        HfLock *l = *lp;
        double left;
        int k;

        /*
         * Another client may have locked at the same moment: look again. Each client looks
         * after its own lock is saved, so the later of two sees the earlier one, provided a
         * listing shows every save made before it. On a local filesystem it does (restic's
         * protocol, on any backend, pauses 200 ms first); elsewhere a listing may lag, so the
         * second look waits until 200 ms after the save, as restic's does.
         */
        if (hf_backend_lists_at_once(hf_repo_backend(l->repo), HF_FILE_LOCK)) {
                log_debug("lock: second look at once (the vault is on a local filesystem)");
        } else {
                left = LOCK_PAUSE - (hf_now_mono() - l->written);
                log_debug("lock: second look after the protocol's pause (%.0f ms left of it)",
                          MAX(left, 0.0) * 1e3);
                if (left > 0)
                        (void)nanosleep(&(struct timespec){ .tv_nsec = (long)(left * 1e9) }, NULL);
        }
        k = check_conflicts(l->repo, &l->id, l->exclusive);
        if (k < 0) {
                *lp = hf_lock_release(l);
                return k;
        }
        return 0;
}

int hf_lock_acquire(HfRepo *r, bool exclusive, HfLock **ret)
{
        HfLock *l = NULL;
        int k = hf_lock_begin(r, exclusive, &l);

        if (k < 0)
                return k;
        k = hf_lock_confirm(&l);
        if (k < 0)
                return k;
        *ret = l;
        return 0;
}

HfLock *hf_lock_release(HfLock *l)
{
        if (!l)
                return NULL;
        pthread_mutex_lock(&l->mu);
        l->stop = true;
        pthread_cond_broadcast(&l->cond);
        pthread_mutex_unlock(&l->mu);
        if (l->has_refresher)
                pthread_join(l->refresher, NULL);
        remove_lock(l->repo, &l->id);
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->cond);
        free(l);
        return NULL;
}

int hf_lock_remove_stale(HfRepo *r, bool all, unsigned *ret_removed)
{
        _cleanup_free_ HfId *ids = NULL;
        unsigned removed = 0;
        size_t n = 0;
        int k;

        k = hf_repo_list_ids(r, HF_FILE_LOCK, &ids, &n);
        if (k < 0)
                return k;
        for (size_t i = 0; i < n; i++) {
                HfLockInfo l;
                if (!all && load_lock(r, &ids[i], &l) >= 0 && !hf_lock_is_stale(&l))
                        continue;
                remove_lock(r, &ids[i]);
                removed++;
        }
        *ret_removed = removed;
        return 0;
}
