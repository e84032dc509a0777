/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "progress.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "../base/util.h"
#include "vault.h"

#define REFRESH_NS (250 * 1000 * 1000)

struct HfProgress {
        const char *verb;
        atomic_uint_fast64_t files, bytes, total_files, total_bytes;
        atomic_bool total_known;
        pthread_mutex_t lock; /* item, stop */
        pthread_cond_t cond;
        char item[512];
        bool stop;
        pthread_t thread;
        double start;
};

static void render(HfProgress *p, bool final)
{
        char line[1024], b1[32], b2[32], rate[32], eta[32], el[32];
        double now = hf_now_mono(), secs = now - p->start;
        uint64_t bytes = atomic_load(&p->bytes), tb = atomic_load(&p->total_bytes);
        uint64_t files = atomic_load(&p->files), tf = atomic_load(&p->total_files);
        struct winsize ws;
        int cols = 80, n;

        if (ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20)
                cols = ws.ws_col;
        (void)hf_format_bytes(rate, sizeof(rate), secs > 0 ? (uint64_t)((double)bytes / secs) : 0);
        (void)hf_format_duration(el, sizeof(el), secs);
        if (atomic_load(&p->total_known) && tb > 0 && bytes > 0 && bytes < tb) {
                double left = (double)(tb - bytes) / ((double)bytes / secs);
                (void)hf_format_duration(eta, sizeof(eta), left);
                n = snprintf(line, sizeof(line),
                             "[%s] %5.1f%%  %llu/%llu files  %s/%s  %s/s  ETA %s", el,
                             100.0 * (double)bytes / (double)tb, (unsigned long long)files,
                             (unsigned long long)tf, hf_format_bytes(b1, sizeof(b1), bytes),
                             hf_format_bytes(b2, sizeof(b2), tb), rate, eta);
        } else
                n = snprintf(line, sizeof(line), "[%s] %llu files  %s  %s/s", el,
                             (unsigned long long)files, hf_format_bytes(b1, sizeof(b1), bytes),
                             rate);
        if (!final && n > 0 && n + 4 < cols && p->item[0]) {
                int room = cols - n - 3;
                size_t len = strlen(p->item);
                const char *it = p->item;
                if ((int)len > room)
                        it += len - (size_t)room;
                n += snprintf(line + n, sizeof(line) - (size_t)n, "  %s", it);
        }
        if (n > cols - 1)
                line[cols - 1] = 0;
        hf_out_lock();
        fprintf(stderr, "\r\033[K%s", final ? "" : line);
        fflush(stderr);
        hf_out_unlock();
}

static void *progress_main(void *arg)
{
        HfProgress *p = arg;

        pthread_mutex_lock(&p->lock);
        while (!p->stop) {
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until);
                until.tv_nsec += REFRESH_NS;
                if (until.tv_nsec >= 1000000000) {
                        until.tv_sec++;
                        until.tv_nsec -= 1000000000;
                }
                (void)pthread_cond_timedwait(&p->cond, &p->lock, &until);
                if (p->stop)
                        break;
                render(p, false);
        }
        pthread_mutex_unlock(&p->lock);
        render(p, true);
        return NULL;
}

int hf_progress_new(const char *verb, bool enabled, HfProgress **ret)
{
        HfProgress *p;

        *ret = NULL;
        if (!enabled)
                return 0;
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->verb = verb;
        p->start = hf_now_mono();
        pthread_mutex_init(&p->lock, NULL);
        pthread_cond_init(&p->cond, NULL);
        if (pthread_create(&p->thread, NULL, progress_main, p) != 0) {
                free(p);
                return 0; /* no display is not a reason to fail */
        }
        *ret = p;
        return 0;
}

HfProgress *hf_progress_free(HfProgress *p)
{
        if (!p)
                return NULL;
        pthread_mutex_lock(&p->lock);
        p->stop = true;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
        pthread_join(p->thread, NULL);
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->cond);
        free(p);
        return NULL;
}

void hf_progress_add_files(HfProgress *p, uint64_t n)
{
        if (p)
                atomic_fetch_add(&p->files, n);
}

void hf_progress_add_bytes(HfProgress *p, uint64_t n)
{
        if (p)
                atomic_fetch_add(&p->bytes, n);
}

void hf_progress_add_total(HfProgress *p, uint64_t files, uint64_t bytes)
{
        if (!p)
                return;
        atomic_fetch_add(&p->total_files, files);
        atomic_fetch_add(&p->total_bytes, bytes);
}

void hf_progress_total_known(HfProgress *p)
{
        if (p)
                atomic_store(&p->total_known, true);
}

void hf_progress_set_item(HfProgress *p, const char *item)
{
        if (!p)
                return;
        pthread_mutex_lock(&p->lock);
        (void)snprintf(p->item, sizeof(p->item), "%s", item);
        pthread_mutex_unlock(&p->lock);
}
