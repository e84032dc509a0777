/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "interrupt.h"

#include <signal.h>
#include <string.h>

atomic_bool hf_interrupted;

static void on_signal(int sig)
{
        static const char msg[] = "\nholdfast: interrupted; finishing cleanly (again to abort)\n";

        if (atomic_exchange(&hf_interrupted, true)) {
                signal(sig, SIG_DFL);
                raise(sig);
                return;
        }
        (void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
}

void hf_signal_setup(void)
{
        struct sigaction sa;

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        (void)sigaction(SIGINT, &sa, NULL);
        (void)sigaction(SIGTERM, &sa, NULL);
        (void)sigaction(SIGHUP, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
}
