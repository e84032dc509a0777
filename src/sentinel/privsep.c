/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Privilege separation (docs/internals/privsep.md, after OpenSSH's): the bytes of files an
 * attacker wrote are parsed only in a child that runs as nobody, with no capabilities, no new
 * privileges, and a seccomp filter that allows reading from fds it was given, talking on its
 * socket, and exiting. The privileged parent opens the files (read-only) and passes the fds
 * with SCM_RIGHTS; the child answers with a fixed-size HfFeatures. A child that dies or hangs
 * is killed and replaced; the file is then judged on its metadata alone.
 */
#include <grp.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "../base/log.h"
#include "sentinel-internal.h"

#define NOBODY 65534

struct HfAnalyzer {
        pid_t pid;
        int sock;
        uint32_t seq;
};

typedef struct Request {
        uint32_t seq;
        uint8_t has_pre;
} Request;

typedef struct Reply {
        uint32_t seq;
        int32_t r;
        HfFeatures f;
} Reply;

static int install_seccomp(void)
{
#define ALLOW(nr)                                                                                  \
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1),                                           \
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)
        struct sock_filter f[] = {
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
                ALLOW(SYS_read),
                ALLOW(SYS_pread64),
                ALLOW(SYS_recvmsg),
                ALLOW(SYS_sendmsg),
                ALLOW(SYS_write),
                ALLOW(SYS_close),
                ALLOW(SYS_fstat),
                ALLOW(SYS_newfstatat),
                ALLOW(SYS_mmap),
                ALLOW(SYS_munmap),
                ALLOW(SYS_brk),
                ALLOW(SYS_mremap),
                ALLOW(SYS_madvise),
                ALLOW(SYS_exit),
                ALLOW(SYS_exit_group),
                ALLOW(SYS_rt_sigreturn),
                ALLOW(SYS_futex),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        };
#undef ALLOW
        struct sock_fprog prog = { .len = (unsigned short)ELEMENTSOF(f), .filter = f };

        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return -errno;
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
                return -errno;
        return 0;
}

static _noreturn_ void child_main(int sock)
{
        /* Drop everything before the first byte of hostile input is read. */
        if (setgroups(0, NULL) < 0 || setresgid(NOBODY, NOBODY, NOBODY) < 0 ||
            setresuid(NOBODY, NOBODY, NOBODY) < 0)
                _exit(10);
        (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        /* Warm up malloc (brk/mmap) before the filter. */
        free(malloc(4 << 20));
        if (install_seccomp() < 0)
                _exit(11);
        for (;;) {
                Request req;
                char cbuf[CMSG_SPACE(2 * sizeof(int))];
                struct iovec iov = { &req, sizeof(req) };
                struct msghdr mh = { .msg_iov = &iov,
                                     .msg_iovlen = 1,
                                     .msg_control = cbuf,
                                     .msg_controllen = sizeof(cbuf) };
                ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
                if (n <= 0)
                        _exit(0);
                int fds[2] = { -1, -1 }, nfd = 0;
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                                nfd = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                                if (nfd > 2)
                                        nfd = 2;
                                memcpy(fds, CMSG_DATA(c), (size_t)nfd * sizeof(int));
                        }
                Reply rep = { .seq = req.seq, .r = -EINVAL };
                if (n == sizeof(req) && nfd == (req.has_pre ? 2 : 1))
                        rep.r = hf_analyze_fds(req.has_pre ? fds[0] : -1, fds[nfd - 1], &rep.f);
                for (int i = 0; i < nfd; i++)
                        close(fds[i]);
                if (write(sock, &rep, sizeof(rep)) != sizeof(rep))
                        _exit(0);
        }
}

static int spawn(HfAnalyzer *a)
{
        int sv[2];

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        pid_t pid = fork();
        if (pid < 0) {
                close(sv[0]);
                close(sv[1]);
                return -errno;
        }
        if (pid == 0) {
                close(sv[0]);
                (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
                /* Only the socket stays open: no fanotify group, no database, no store. */
                for (int fd = 3; fd < 1024; fd++)
                        if (fd != sv[1])
                                close(fd);
                child_main(sv[1]);
        }
        close(sv[1]);
        a->pid = pid;
        a->sock = sv[0];
        return 0;
}

int hf_analyzer_new(HfAnalyzer **ret)
{
        HfAnalyzer *a = calloc(1, sizeof(*a));
        int r;

        if (!a)
                return -ENOMEM;
        a->sock = -1;
        r = spawn(a);
        if (r < 0) {
                free(a);
                return r;
        }
        *ret = a;
        return 0;
}

static void reap(HfAnalyzer *a)
{
        if (a->pid > 0) {
                (void)kill(a->pid, SIGKILL);
                (void)waitpid(a->pid, NULL, 0);
        }
        closep(&a->sock);
        a->sock = -1;
        a->pid = 0;
}

HfAnalyzer *hf_analyzer_free(HfAnalyzer *a)
{
        if (!a)
                return NULL;
        reap(a);
        free(a);
        return NULL;
}

pid_t hf_analyzer_pid(HfAnalyzer *a)
{
        return a->pid;
}

int hf_analyzer_run(HfAnalyzer *a, int pre_fd, int post_fd, HfFeatures *ret)
{
        Request req = { .seq = ++a->seq, .has_pre = pre_fd >= 0 };
        int fds[2] = { pre_fd, post_fd }, nfd = pre_fd >= 0 ? 2 : 1;
        char cbuf[CMSG_SPACE(2 * sizeof(int))];
        struct iovec iov = { &req, sizeof(req) };
        struct msghdr mh = { .msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = cbuf,
                             .msg_controllen = CMSG_SPACE((size_t)nfd * sizeof(int)) };
        Reply rep;
        int r;

        if (a->sock < 0 && (r = spawn(a)) < 0)
                return r;
        memset(cbuf, 0, sizeof(cbuf));
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN((size_t)nfd * sizeof(int));
        memcpy(CMSG_DATA(c), pre_fd >= 0 ? fds : fds + 1, (size_t)nfd * sizeof(int));
        if (sendmsg(a->sock, &mh, MSG_NOSIGNAL) != sizeof(req)) {
                reap(a);
                return -EPIPE;
        }
        for (;;) {
                struct pollfd p = { .fd = a->sock, .events = POLLIN };
                int k = poll(&p, 1, 3000);
                if (k <= 0) {
                        log_warning("analysis child %d hung or died; restarting it", a->pid);
                        reap(a);
                        return -ETIMEDOUT;
                }
                ssize_t n = read(a->sock, &rep, sizeof(rep));
                if (n != sizeof(rep)) {
                        reap(a);
                        return -EPIPE;
                }
                if (rep.seq != req.seq)
                        continue;
                break;
        }
        if (rep.r < 0)
                return rep.r;
        *ret = rep.f;
        return 0;
}
