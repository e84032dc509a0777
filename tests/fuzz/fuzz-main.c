/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Replay driver: runs LLVMFuzzerTestOneInput over every file in the folders (or files) given,
 * so the committed corpus is exercised in every build, without libFuzzer (casync's approach).
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Set by the sanitizer runtimes when linked in (weak: absent in a plain build). */
extern void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

/* The input being replayed, named on stderr when a check aborts or a sanitizer reports. */
static const char *current;

static void name_current(void)
{
        static const char msg[] = "fuzz-main: failing input: ";

        if (!current)
                return;
        (void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
        (void)!write(STDERR_FILENO, current, strlen(current));
        (void)!write(STDERR_FILENO, "\n", 1);
}

static void on_fatal_signal(int sig)
{
        name_current();
        signal(sig, SIG_DFL);
        raise(sig);
}

static int run_file(const char *path)
{
        struct stat st;
        uint8_t *buf;
        size_t got = 0;
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0 || fstat(fd, &st) < 0) {
                perror(path);
                return -1;
        }
        buf = malloc((size_t)st.st_size + 1);
        if (!buf) {
                close(fd);
                return -1;
        }
        while (got < (size_t)st.st_size) {
                ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
                if (n <= 0)
                        break;
                got += (size_t)n;
        }
        close(fd);
        current = path;
        (void)LLVMFuzzerTestOneInput(buf, got);
        current = NULL;
        free(buf);
        return 0;
}

int main(int argc, char **argv)
{
        unsigned count = 0;

        signal(SIGABRT, on_fatal_signal);
        signal(SIGSEGV, on_fatal_signal);
        signal(SIGBUS, on_fatal_signal);
        signal(SIGFPE, on_fatal_signal);
        if (__sanitizer_set_death_callback)
                __sanitizer_set_death_callback(name_current);

        for (int i = 1; i < argc; i++) {
                struct stat st;
                DIR *d;
                struct dirent *de;

                if (stat(argv[i], &st) < 0) {
                        perror(argv[i]);
                        return 1;
                }
                if (!S_ISDIR(st.st_mode)) {
                        if (run_file(argv[i]) < 0)
                                return 1;
                        count++;
                        continue;
                }
                d = opendir(argv[i]);
                if (!d) {
                        perror(argv[i]);
                        return 1;
                }
                while ((de = readdir(d))) {
                        char path[4096];
                        if (de->d_name[0] == '.')
                                continue;
                        (void)snprintf(path, sizeof(path), "%s/%s", argv[i], de->d_name);
                        if (run_file(path) < 0) {
                                closedir(d);
                                return 1;
                        }
                        count++;
                }
                closedir(d);
        }
        printf("%u inputs replayed\n", count);
        return count > 0 ? 0 : 1;
}
