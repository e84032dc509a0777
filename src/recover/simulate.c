/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The attack simulator: the behaviours of issue 5's evaluation harness (detection-notes.md
 * §2), played against a sandbox only.
 *
 * Safety: a sandbox is a folder the simulator created itself (hf_sim_prepare). It carries a
 * token bound to the folder's device and inode with a random nonce, listing the files the
 * simulator wrote; the simulator refuses any folder without a valid token (a token copied
 * elsewhere names the wrong inode), and touches only the listed files, opened with openat2()
 * beneath the folder with no symlinks, magic links or mount crossings. The raw-disk attack
 * writes only to a loop device whose backing file is the sandbox's own disk.img.
 */
#include <fcntl.h>
#include <linux/loop.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>

#include "../base/log.h"
#include "../base/util.h"
#include "recover-internal.h"

#define TOKEN_MAGIC "holdfast-sandbox 1"
#define TOKEN_MAX (16u << 20)
#define MAX_FILES 1000000
#define NOTE_NAME "HOW_TO_RECOVER_FILES.txt"
#define DISK_NAME "disk.img"
#define DISK_SIZE (16u << 20)

const char *const hf_sim_kinds[] = {
        "encrypt", "encrypt-new", "encrypt-rename", "intermittent", "intermittent-4k",
        "shred",   "truncate",    "bibi",           "split",        "slow",
        "base64",  "mmap",        "rename-folder",  "raw-disk",     NULL,
};

static const char *const kind_help[] = {
        "full in-place encryption of every file, ransom note per folder",
        "encrypt to NAME.locked, then delete the original",
        "encrypt in place, then rename with a new extension",
        "intermittent encryption: 1 MiB encrypted, 1 MiB skipped",
        "intermittent encryption: every 16th 4 KiB block",
        "shred-like: 3 overwrite passes (random, random, zeros), then delete",
        "truncate every file to zero (O_TRUNC and ftruncate)",
        "BiBi-like wiper: 4 threads overwrite with random data and rename to RANDOM.BiBiN",
        "the work split over 20 cooperating processes",
        "slow attacker: one file every 5 s",
        "ciphertext written as base64 (entropy masking)",
        "encryption through a shared writable mmap",
        "in-place encryption; each folder renamed to NAME.locked after its first file",
        "dd-like write of 1 MiB to the sandbox's loop block device",
};

bool hf_sim_kind_valid(const char *kind)
{
        for (size_t i = 0; hf_sim_kinds[i]; i++)
                if (strcmp(kind, hf_sim_kinds[i]) == 0)
                        return true;
        return false;
}

const char *hf_sim_kind_help(const char *kind)
{
        for (size_t i = 0; hf_sim_kinds[i]; i++)
                if (strcmp(kind, hf_sim_kinds[i]) == 0)
                        return kind_help[i];
        return NULL;
}

/* ---- the token ---- */

void hf_sandbox_token_done(HfSandboxToken *t)
{
        free(t->disk);
        hf_strv_free(t->files, t->n_files);
        *t = (HfSandboxToken){ 0 };
}

static int hexv(char c)
{
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A relative path of the sandbox: no "", ".", ".." components, no leading '/', bounded. */
static bool rel_ok(const char *p, size_t n)
{
        if (n == 0 || n > 1024 || p[0] == '/')
                return false;
        if (p[n - 1] == '/')
                return false;
        for (size_t i = 0; i < n;) {
                size_t j = i;
                while (j < n && p[j] != '/')
                        j++;
                size_t l = j - i;
                if (l == 0 || l > 255 || (l == 1 && p[i] == '.') ||
                    (l == 2 && p[i] == '.' && p[i + 1] == '.'))
                        return false;
                i = j + 1;
        }
        return !(n == strlen(HF_SANDBOX_TOKEN) && memcmp(p, HF_SANDBOX_TOKEN, n) == 0);
}

static int unescape_rel(const char *s, size_t n, char **ret)
{
        _cleanup_free_ char *p = malloc(n + 1);
        size_t k = 0;

        if (!p)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (c == '%') {
                        if (i + 2 >= n)
                                return -EPROTO;
                        int a = hexv(s[i + 1]), b = hexv(s[i + 2]);
                        if (a < 0 || b < 0 || (a == 0 && b == 0))
                                return -EPROTO;
                        c = (char)(a * 16 + b);
                        i += 2;
                } else if ((unsigned char)c <= ' ' || (unsigned char)c > '~')
                        return -EPROTO;
                p[k++] = c;
        }
        p[k] = 0;
        if (!rel_ok(p, k))
                return -EPROTO;
        *ret = TAKE_PTR(p);
        return 0;
}

int hf_sandbox_token_parse(const char *text, size_t n, HfSandboxToken *ret)
{
        HfSandboxToken t = { 0 };
        const char *p = text, *end = text + n;
        bool magic = false, nonce = false, dev = false, ino = false, fin = false;
        int r = 0;

        if (n > TOKEN_MAX || memchr(text, 0, n))
                return -EPROTO;
        while (p < end && !fin) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                if (!nl) {
                        r = -EPROTO;
                        break;
                }
                size_t l = (size_t)(nl - p);
                if (!magic) {
                        if (l != strlen(TOKEN_MAGIC) || memcmp(p, TOKEN_MAGIC, l) != 0) {
                                r = -EPROTO;
                                break;
                        }
                        magic = true;
                } else if (l == 38 && memcmp(p, "nonce ", 6) == 0) {
                        for (size_t i = 0; i < 32; i++)
                                if (hexv(p[6 + i]) < 0)
                                        r = -EPROTO;
                        memcpy(t.nonce, p + 6, 32);
                        t.nonce[32] = 0;
                        nonce = true;
                } else if (l > 4 && l < 30 &&
                           (memcmp(p, "dev ", 4) == 0 || memcmp(p, "ino ", 4) == 0)) {
                        char num[32];
                        uint64_t v;
                        memcpy(num, p + 4, l - 4);
                        num[l - 4] = 0;
                        if (hf_parse_u64(num, &v) < 0)
                                r = -EPROTO;
                        else if (p[0] == 'd') {
                                t.dev = v;
                                dev = true;
                        } else {
                                t.ino = v;
                                ino = true;
                        }
                } else if (l > 14 && l < 64 && memcmp(p, "disk /dev/loop", 14) == 0) {
                        for (size_t i = 14; i < l; i++)
                                if (p[i] < '0' || p[i] > '9')
                                        r = -EPROTO;
                        free(t.disk);
                        /* Not strndup: the line is not NUL-terminated in the buffer. */
                        t.disk = malloc(l - 5 + 1);
                        if (!t.disk)
                                r = -ENOMEM;
                        else {
                                memcpy(t.disk, p + 5, l - 5);
                                t.disk[l - 5] = 0;
                        }
                } else if (l > 5 && memcmp(p, "file ", 5) == 0) {
                        char *f = NULL;
                        if (t.n_files >= MAX_FILES)
                                r = -E2BIG;
                        else
                                r = unescape_rel(p + 5, l - 5, &f);
                        if (r == 0) {
                                r = hf_strv_push(&t.files, &t.n_files, f);
                                free(f);
                        }
                } else if (l == 3 && memcmp(p, "end", 3) == 0)
                        fin = true;
                else
                        r = -EPROTO;
                if (r < 0)
                        break;
                p = nl + 1;
        }
        if (r == 0 && (!magic || !nonce || !dev || !ino || !fin || p != end))
                r = -EPROTO;
        if (r < 0) {
                hf_sandbox_token_done(&t);
                return r;
        }
        *ret = t;
        return 0;
}

/* ---- preparing a sandbox ---- */

typedef struct Collect {
        HfBuf *b;
} Collect;

static int collect(void *ud, const char *rel)
{
        Collect *c = ud;
        int r = hf_buf_puts(c->b, "file ");
        for (const unsigned char *s = (const unsigned char *)rel; r >= 0 && *s; s++)
                r = (*s <= ' ' || *s > '~' || *s == '%') ? hf_buf_printf(c->b, "%%%02x", *s)
                                                         : hf_buf_putc(c->b, (char)*s);
        return r < 0 ? r : hf_buf_putc(c->b, '\n');
}

static int loop_attach(const char *img, char *dev, size_t devn)
{
        _cleanup_close_ int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
        _cleanup_close_ int ffd = open(img, O_RDWR | O_CLOEXEC);

        if (ctl < 0 || ffd < 0)
                return -errno;
        for (int attempt = 0; attempt < 16; attempt++) {
                int n = ioctl(ctl, LOOP_CTL_GET_FREE);
                if (n < 0)
                        return -errno;
                (void)snprintf(dev, devn, "/dev/loop%d", n);
                _cleanup_close_ int lfd = open(dev, O_RDWR | O_CLOEXEC);
                if (lfd < 0)
                        return -errno;
                struct loop_config cfg = { .fd = (uint32_t)ffd };
                /* The kernel shows this name only; a long path is cut. */
                (void)hf_copy_str((char *)cfg.info.lo_file_name, LO_NAME_SIZE, img);
                if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0)
                        return 0;
                if (errno != EBUSY)
                        return -errno;
        }
        return -EBUSY;
}

int hf_sim_prepare(const char *dir, const HfSimPrepareOptions *o)
{
        _cleanup_buf_ HfBuf tok = HF_BUF_INIT(TOKEN_MAX);
        _cleanup_close_ int dfd = -1;
        Collect col = { &tok };
        uint8_t nonce[16];
        char hex[33], disk[64] = "";
        struct stat st;
        int r;

        if (mkdir(dir, 0755) < 0)
                return log_error_errno(errno,
                                       "%s: cannot create the sandbox (it must not exist "
                                       "yet): %m",
                                       dir);
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (dfd < 0 || fstat(dfd, &st) < 0)
                return log_error_errno(errno, "%s: %m", dir);
        r = hf_random_bytes(nonce, sizeof(nonce));
        if (r < 0)
                return r;
        hf_hex_encode(nonce, sizeof(nonce), hex);
        hex[32] = 0;
        (void)hf_buf_printf(&tok, TOKEN_MAGIC "\nnonce %s\ndev %llu\nino %llu\n", hex,
                            (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
        r = o && o->files ? hf_sample_flat(dfd, o->files, o->file_size ? o->file_size : 16384,
                                           collect, &col)
                          : hf_sample_tree(dfd, o ? o->scale : 1, collect, &col);
        if (r < 0)
                return r;
        if (o && o->disk) {
                /* A small disk image with random content: a raw write to its loop device
                 * changes it visibly. */
                _cleanup_free_ uint8_t *buf = malloc(1 << 20);
                _cleanup_close_ int fd = openat(dfd, DISK_NAME,
                                                O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
                if (!buf || fd < 0)
                        return log_error_errno(fd < 0 ? errno : ENOMEM, "%s/" DISK_NAME ": %m",
                                               dir);
                for (unsigned i = 0; i < DISK_SIZE >> 20; i++) {
                        (void)hf_random_bytes(buf, 1 << 20);
                        r = hf_write_all(fd, buf, 1 << 20);
                        if (r < 0)
                                return r;
                }
                char img[HF_RECOVER_PATH_MAX];
                (void)snprintf(img, sizeof(img), "%s/" DISK_NAME, dir);
                r = loop_attach(img, disk, sizeof(disk));
                if (r < 0)
                        return log_error_errno(r, "%s: cannot attach a loop device: %m", img);
                (void)hf_buf_printf(&tok, "disk %s\n", disk);
        }
        (void)hf_buf_puts(&tok, "end\n");
        r = hf_write_file_atomic_at(dfd, HF_SANDBOX_TOKEN, tok.data, tok.len, 0600, true);
        if (r < 0)
                return log_error_errno(r, "%s/" HF_SANDBOX_TOKEN ": cannot write: %m", dir);
        return 0;
}

/* ---- opening one ---- */

static int open_sandbox(const char *dir, HfSandboxToken *ret)
{
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        _cleanup_close_ int tfd = -1;
        _cleanup_buf_ HfBuf text = HF_BUF_INIT(TOKEN_MAX);
        struct stat ds = { 0 }, ts = { 0 };
        int r;

        if (dfd < 0)
                return log_error_errno(errno, "%s: %m", dir);
        tfd = openat(dfd, HF_SANDBOX_TOKEN, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (tfd < 0)
                return log_error_errno(EPERM,
                                       "%s: refused: no " HF_SANDBOX_TOKEN " here; the "
                                       "simulator only attacks folders it created "
                                       "(holdfast simulate prepare)",
                                       dir);
        if (fstat(dfd, &ds) < 0 || fstat(tfd, &ts) < 0)
                return -errno;
        if (!S_ISREG(ts.st_mode) || ts.st_uid != geteuid() || (ts.st_mode & 077))
                return log_error_errno(EPERM,
                                       "%s: refused: the sandbox token is not a private "
                                       "file of this user",
                                       dir);
        r = hf_read_fd(tfd, TOKEN_MAX, &text);
        if (r < 0)
                return r;
        r = hf_sandbox_token_parse((const char *)text.data, text.len, ret);
        if (r < 0)
                return log_error_errno(EPERM, "%s: refused: the sandbox token is malformed", dir);
        if (ret->dev != (uint64_t)ds.st_dev || ret->ino != (uint64_t)ds.st_ino) {
                hf_sandbox_token_done(ret);
                return log_error_errno(EPERM,
                                       "%s: refused: the sandbox token was written for "
                                       "another folder",
                                       dir);
        }
        return 0;
}

int hf_sim_open(const char *dir, HfSandboxToken *ret)
{
        return open_sandbox(dir, ret);
}

/* The loop device's backing file must be this sandbox's disk.img. */
static int check_disk(const char *dir, const char *disk)
{
        char sys[128], backing[HF_RECOVER_PATH_MAX], img[HF_RECOVER_PATH_MAX];
        struct stat a, b;
        const char *name = strrchr(disk, '/');

        if (!name)
                return -EPERM;
        (void)snprintf(sys, sizeof(sys), "/sys/block/%s/loop/backing_file", name + 1);
        _cleanup_close_ int fd = open(sys, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -ENOENT;
        ssize_t n = read(fd, backing, sizeof(backing) - 1);
        if (n <= 0)
                return -ENOENT;
        backing[n] = 0;
        backing[strcspn(backing, "\n")] = 0;
        (void)snprintf(img, sizeof(img), "%s/" DISK_NAME, dir);
        if (stat(backing, &a) < 0 || stat(img, &b) < 0 || a.st_dev != b.st_dev ||
            a.st_ino != b.st_ino)
                return -EPERM;
        return 0;
}

/* Is the loop device attached to dir/disk.img, the same inode or one replaced since (a
 * recovery puts a new file in its place, the device keeps the old one: "(deleted)")? */
static bool disk_of_sandbox(const char *dir, const char *disk)
{
        char sys[128], backing[HF_RECOVER_PATH_MAX], real[HF_RECOVER_PATH_MAX],
                img[HF_RECOVER_PATH_MAX + 16];
        const char *name = strrchr(disk, '/');

        if (!name || !realpath(dir, real))
                return false;
        (void)snprintf(sys, sizeof(sys), "/sys/block/%s/loop/backing_file", name + 1);
        _cleanup_close_ int fd = open(sys, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd < 0 ? -1 : read(fd, backing, sizeof(backing) - 1);
        if (n <= 0)
                return false;
        backing[n] = 0;
        backing[strcspn(backing, "\n")] = 0;
        size_t l = strlen(backing);
        if (l > 10 && strcmp(backing + l - 10, " (deleted)") == 0)
                backing[l - 10] = 0;
        (void)snprintf(img, sizeof(img), "%s/" DISK_NAME, real);
        return strcmp(backing, img) == 0;
}

int hf_sim_cleanup(const char *dir)
{
        HfSandboxToken t = { 0 };
        int r = open_sandbox(dir, &t);
        if (r < 0)
                return r;
        if (t.disk && disk_of_sandbox(dir, t.disk)) {
                _cleanup_close_ int fd = open(t.disk, O_RDONLY | O_CLOEXEC);
                if (fd < 0 || ioctl(fd, LOOP_CLR_FD, 0) < 0)
                        r = log_error_errno(errno, "%s: cannot detach: %m", t.disk);
        }
        hf_sandbox_token_done(&t);
        return r;
}

/* ---- the attacks ---- */

typedef struct Att {
        const char *dir;
        int root;
        HfSandboxToken t;
        const HfSimAttackOptions *o;
        HfSimResult *res;
        pthread_mutex_t lock;
        size_t next;
        char **noted; /* folders with a ransom note */
        size_t n_noted;
        const char *kind;
} Att;

static int open_beneath(int root, const char *rel, int flags, mode_t mode)
{
        struct open_how how = { .flags = (uint64_t)(flags | O_CLOEXEC | O_NOFOLLOW),
                                .mode = (flags & O_CREAT) ? mode : 0,
                                .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
                                           RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV };
        long fd = syscall(SYS_openat2, root, rel, &how, sizeof(how));
        return fd < 0 ? -errno : (int)fd;
}

/* The parent folder of rel (beneath root) and the last component. */
static int parent_beneath(int root, const char *rel, const char **ret_base)
{
        char dir[1100];
        const char *slash = strrchr(rel, '/');

        if (!slash) {
                *ret_base = rel;
                return fcntl(root, F_DUPFD_CLOEXEC, 3);
        }
        (void)snprintf(dir, sizeof(dir), "%.*s", (int)(slash - rel), rel);
        *ret_base = slash + 1;
        return open_beneath(root, dir, O_RDONLY | O_DIRECTORY, 0);
}

static void count(Att *a, uint64_t bytes, bool whole)
{
        double now = hf_recover_now();
        pthread_mutex_lock(&a->lock);
        a->res->bytes += bytes;
        if (whole)
                a->res->files++;
        if (!a->res->first)
                a->res->first = now;
        a->res->last = now;
        pthread_mutex_unlock(&a->lock);
}

static void denied(Att *a, int err)
{
        pthread_mutex_lock(&a->lock);
        if (err == -EPERM || err == -EACCES || err == -EIO || err == -ENOSPC)
                a->res->denied++;
        pthread_mutex_unlock(&a->lock);
}

/* "Encrypts" n bytes at off: XOR with random bytes (as good as any cipher's output here). */
static int scramble(int fd, uint64_t off, size_t n, uint64_t *done)
{
        _cleanup_free_ uint8_t *buf = malloc(1 << 20), *key = malloc(1 << 20);
        size_t left = n;

        if (!buf || !key)
                return -ENOMEM;
        while (left > 0) {
                size_t k = MIN(left, (size_t)1 << 20);
                ssize_t got = pread(fd, buf, k, (off_t)off);
                if (got < 0)
                        return -errno;
                if (got == 0)
                        break;
                (void)hf_random_bytes(key, (size_t)got);
                for (ssize_t i = 0; i < got; i++)
                        buf[i] ^= key[i] | 1;
                int r = hf_write_all_at(fd, buf, (size_t)got, off);
                if (r < 0)
                        return r;
                *done += (uint64_t)got;
                off += (uint64_t)got;
                left -= (size_t)got;
        }
        return 0;
}

static void note(Att *a, const char *rel)
{
        char dir[1100], path[1200];
        const char *slash = strrchr(rel, '/');

        (void)snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - rel) : 0, rel);
        pthread_mutex_lock(&a->lock);
        for (size_t i = 0; i < a->n_noted; i++)
                if (strcmp(a->noted[i], dir) == 0) {
                        pthread_mutex_unlock(&a->lock);
                        return;
                }
        (void)hf_strv_push(&a->noted, &a->n_noted, dir);
        pthread_mutex_unlock(&a->lock);
        (void)snprintf(path, sizeof(path), "%s%s" NOTE_NAME, dir, dir[0] ? "/" : "");
        int fd = open_beneath(a->root, path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0)
                return;
        static const char text[] =
                "Your files have been encrypted (holdfast attack simulator: this is a drill).\n"
                "To recover them, run: holdfast recover --incident ID\n";
        (void)hf_write_all(fd, text, sizeof(text) - 1);
        close(fd);
        pthread_mutex_lock(&a->lock);
        a->res->created++;
        pthread_mutex_unlock(&a->lock);
}

static int attack_file(Att *a, const char *rel, size_t index)
{
        const char *k = a->kind;
        uint64_t done = 0;
        struct stat st;
        int r = 0;

        if (strcmp(k, "truncate") == 0) {
                int fd = open_beneath(a->root, rel, index % 2 ? O_WRONLY : O_WRONLY | O_TRUNC, 0);
                if (fd < 0)
                        return fd;
                if (fstat(fd, &st) == 0 && index % 2 && ftruncate(fd, 0) < 0)
                        r = -errno;
                close(fd);
                if (r == 0)
                        count(a, (uint64_t)st.st_size, true);
                return r;
        }
        if (strcmp(k, "encrypt-new") == 0) {
                const char *base;
                _cleanup_close_ int dfd = parent_beneath(a->root, rel, &base);
                _cleanup_close_ int in = open_beneath(a->root, rel, O_RDONLY, 0);
                char name[300];
                if (dfd < 0 || in < 0)
                        return dfd < 0 ? dfd : in;
                (void)snprintf(name, sizeof(name), "%s.locked", base);
                _cleanup_close_ int out = openat(
                        dfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
                if (out < 0)
                        return -errno;
                _cleanup_free_ uint8_t *buf = malloc(1 << 20);
                if (!buf)
                        return -ENOMEM;
                uint64_t off = 0;
                for (;;) {
                        ssize_t n = pread(in, buf, 1 << 20, (off_t)off);
                        if (n <= 0)
                                break;
                        uint8_t key[4096];
                        for (ssize_t i = 0; i < n; i++) {
                                if (i % 4096 == 0)
                                        (void)hf_random_bytes(key, sizeof(key));
                                buf[i] ^= key[i % 4096] | 1;
                        }
                        r = hf_write_all_at(out, buf, (size_t)n, off);
                        if (r < 0)
                                return r;
                        off += (uint64_t)n;
                }
                (void)fsync(out);
                if (unlinkat(dfd, base, 0) < 0)
                        return -errno;
                count(a, off, true);
                pthread_mutex_lock(&a->lock);
                a->res->created++;
                pthread_mutex_unlock(&a->lock);
                note(a, rel);
                return 0;
        }
        if (strcmp(k, "shred") == 0) {
                _cleanup_close_ int fd = open_beneath(a->root, rel, O_WRONLY, 0);
                _cleanup_free_ uint8_t *buf = malloc(1 << 20);
                if (fd < 0 || !buf)
                        return fd < 0 ? fd : -ENOMEM;
                if (fstat(fd, &st) < 0)
                        return -errno;
                for (int pass = 0; pass < 3; pass++) {
                        for (uint64_t off = 0; off < (uint64_t)st.st_size; off += 1 << 20) {
                                size_t n = (size_t)MIN((uint64_t)1 << 20,
                                                       (uint64_t)st.st_size - off);
                                if (pass < 2)
                                        (void)hf_random_bytes(buf, n);
                                else
                                        memset(buf, 0, n);
                                r = hf_write_all_at(fd, buf, n, off);
                                if (r < 0)
                                        return r;
                        }
                        (void)fsync(fd);
                }
                const char *base;
                _cleanup_close_ int dfd = parent_beneath(a->root, rel, &base);
                if (dfd < 0)
                        return dfd;
                if (unlinkat(dfd, base, 0) < 0)
                        return -errno;
                count(a, (uint64_t)st.st_size, true);
                return 0;
        }
        if (strcmp(k, "mmap") == 0) {
                _cleanup_close_ int fd = open_beneath(a->root, rel, O_RDWR, 0);
                if (fd < 0)
                        return fd;
                if (fstat(fd, &st) < 0)
                        return -errno;
                if (st.st_size == 0)
                        return 0;
                uint8_t *m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                                  0);
                if (m == MAP_FAILED)
                        return -errno;
                uint8_t key[4096];
                for (off_t i = 0; i < st.st_size; i++) {
                        if (i % 4096 == 0)
                                (void)hf_random_bytes(key, sizeof(key));
                        m[i] ^= key[i % 4096] | 1;
                }
                (void)msync(m, (size_t)st.st_size, MS_SYNC);
                munmap(m, (size_t)st.st_size);
                count(a, (uint64_t)st.st_size, true);
                note(a, rel);
                return 0;
        }
        if (strcmp(k, "base64") == 0) {
                _cleanup_close_ int fd = open_beneath(a->root, rel, O_RDWR, 0);
                _cleanup_buf_ HfBuf in = HF_BUF_INIT(1u << 30), out = HF_BUF_INIT(2u << 30);
                if (fd < 0)
                        return fd;
                r = hf_read_fd(fd, 1u << 30, &in);
                if (r < 0)
                        return r;
                uint8_t key[4096];
                for (size_t i = 0; i < in.len; i++) {
                        if (i % 4096 == 0)
                                (void)hf_random_bytes(key, sizeof(key));
                        in.data[i] ^= key[i % 4096] | 1;
                }
                r = hf_base64_encode(&out, in.data, in.len);
                if (r < 0)
                        return r;
                /* Wrapped like a mail body, so it reads as text. */
                r = hf_write_all_at(fd, out.data, out.len, 0);
                if (r < 0)
                        return r;
                if (ftruncate(fd, (off_t)out.len) < 0)
                        return -errno;
                count(a, in.len, true);
                note(a, rel);
                return 0;
        }

        /* In-place encryption variants. */
        int fd = open_beneath(a->root, rel, O_RDWR, 0);
        if (fd < 0)
                return fd;
        if (fstat(fd, &st) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        uint64_t size = (uint64_t)st.st_size;
        if (strcmp(k, "intermittent") == 0) {
                for (uint64_t off = 0; off < size && r == 0; off += 2u << 20)
                        r = scramble(fd, off, (size_t)MIN((uint64_t)1 << 20, size - off), &done);
        } else if (strcmp(k, "intermittent-4k") == 0) {
                for (uint64_t off = 0; off < size && r == 0; off += 16 * 4096)
                        r = scramble(fd, off, (size_t)MIN((uint64_t)4096, size - off), &done);
        } else if (strcmp(k, "bibi") == 0) {
                /* Junk overwrite, not a cipher: random bytes over the whole file. */
                _cleanup_free_ uint8_t *buf = malloc(1 << 20);
                if (!buf)
                        r = -ENOMEM;
                for (uint64_t off = 0; r == 0 && off < size; off += 1 << 20) {
                        size_t n = (size_t)MIN((uint64_t)1 << 20, size - off);
                        (void)hf_random_bytes(buf, n);
                        r = hf_write_all_at(fd, buf, n, off);
                        done += r == 0 ? n : 0;
                }
        } else
                r = scramble(fd, 0, (size_t)size, &done);
        close(fd);
        if (r < 0)
                return r;
        count(a, done, true);
        if (strcmp(k, "encrypt-rename") == 0 || strcmp(k, "bibi") == 0) {
                const char *base;
                char name[300];
                _cleanup_close_ int dfd = parent_beneath(a->root, rel, &base);
                if (dfd < 0)
                        return dfd;
                if (strcmp(k, "bibi") == 0) {
                        uint8_t rb[6];
                        char hx[13];
                        (void)hf_random_bytes(rb, sizeof(rb));
                        hf_hex_encode(rb, sizeof(rb), hx);
                        hx[12] = 0;
                        (void)snprintf(name, sizeof(name), "%s.BiBi%zu", hx, index % 10 + 1);
                } else
                        (void)snprintf(name, sizeof(name), "%s.crypt", base);
                if (renameat(dfd, base, dfd, name) < 0)
                        return -errno;
        }
        if (strcmp(k, "bibi") != 0)
                note(a, rel);
        return 0;
}

static bool stop_after(Att *a, size_t i)
{
        return a->o && a->o->max_files && i >= a->o->max_files;
}

static void run_range(Att *a, size_t stride, size_t offset)
{
        for (size_t i = offset; i < a->t.n_files && !stop_after(a, i); i += stride) {
                int r = attack_file(a, a->t.files[i], i);
                if (r < 0) {
                        denied(a, r);
                        if (!a->o || !a->o->quiet)
                                log_notice_errno(r, "%s: %m", a->t.files[i]);
                }
                if (strcmp(a->kind, "slow") == 0) {
                        double iv = a->o && a->o->interval > 0 ? a->o->interval : 5;
                        struct timespec ts = { .tv_sec = (time_t)iv,
                                               .tv_nsec = (long)((iv - (double)(time_t)iv) * 1e9) };
                        (void)nanosleep(&ts, NULL);
                }
        }
}

/* A folder renamed by rename-folder: its name before and after (relative to the sandbox). */
typedef struct Ren {
        char from[1100], to[1200];
} Ren;

/* A path of the token as it is now, after the folder renames done so far (in order). */
static void renamed_path(const Ren *ren, size_t n, const char *rel, char *out, size_t size)
{
        (void)snprintf(out, size, "%s", rel);
        for (size_t k = 0; k < n; k++) {
                size_t l = strlen(ren[k].from);
                if (strncmp(out, ren[k].from, l) != 0 || out[l] != '/')
                        continue;
                char rest[1100];
                (void)snprintf(rest, sizeof(rest), "%s", out + l);
                (void)snprintf(out, size, "%s%s", ren[k].to, rest);
        }
}

/*
 * rename-folder: every file encrypted in place; right after the first file of a folder, the
 * folder and then each of its parents below the sandbox are renamed to NAME.locked (so a
 * folder's first file is changed before the rename, the others after it, under the new name).
 * Only folders of listed files, beneath the sandbox, never the sandbox itself.
 */
static void rename_folders(Att *a)
{
        char **done = NULL; /* original names of the folders renamed (or tried) */
        size_t n_done = 0, n_ren = 0;
        Ren *ren = NULL;

        for (size_t i = 0; i < a->t.n_files && !stop_after(a, i); i++) {
                char cur[1100], dir[1100];
                renamed_path(ren, n_ren, a->t.files[i], cur, sizeof(cur));
                int r = attack_file(a, cur, i);
                if (r < 0) {
                        denied(a, r);
                        if (!a->o || !a->o->quiet)
                                log_notice_errno(r, "%s: %m", cur);
                }
                (void)snprintf(dir, sizeof(dir), "%s", a->t.files[i]);
                for (char *slash = strrchr(dir, '/'); slash; slash = strrchr(dir, '/')) {
                        *slash = 0; /* dir: the folder, then each parent in turn */
                        bool seen = false;
                        for (size_t k = 0; k < n_done && !seen; k++)
                                seen = strcmp(done[k], dir) == 0;
                        if (seen)
                                continue;
                        (void)hf_strv_push(&done, &n_done, dir);
                        Ren *nv = realloc(ren, (n_ren + 1) * sizeof(Ren));
                        if (!nv)
                                break;
                        ren = nv;
                        Ren *e = &ren[n_ren];
                        const char *base;
                        renamed_path(ren, n_ren, dir, e->from, sizeof(e->from));
                        _cleanup_close_ int dfd = parent_beneath(a->root, e->from, &base);
                        if (dfd < 0)
                                continue;
                        char locked[300];
                        (void)snprintf(locked, sizeof(locked), "%s.locked", base);
                        if (renameat2(dfd, base, dfd, locked, RENAME_NOREPLACE) < 0) {
                                denied(a, -errno);
                                continue;
                        }
                        (void)snprintf(e->to, sizeof(e->to), "%s.locked", e->from);
                        n_ren++;
                }
        }
        hf_strv_free(done, n_done);
        free(ren);
}

static void *bibi_thread(void *arg)
{
        Att *a = arg;
        for (;;) {
                pthread_mutex_lock(&a->lock);
                size_t i = a->next++;
                pthread_mutex_unlock(&a->lock);
                if (i >= a->t.n_files || stop_after(a, i))
                        break;
                int r = attack_file(a, a->t.files[i], i);
                if (r < 0)
                        denied(a, r);
        }
        return NULL;
}

static int raw_disk(Att *a)
{
        _cleanup_free_ uint8_t *buf = malloc(1 << 20);
        int r;

        if (!a->t.disk)
                return log_error_errno(EINVAL,
                                       "%s: this sandbox has no disk (holdfast simulate "
                                       "prepare --disk)",
                                       a->dir);
        r = check_disk(a->dir, a->t.disk);
        if (r < 0)
                return log_error_errno(EPERM,
                                       "%s: refused: it is not attached to this "
                                       "sandbox's " DISK_NAME,
                                       a->t.disk);
        if (!buf)
                return -ENOMEM;
        a->res->first = hf_recover_now();
        _cleanup_close_ int fd = open(a->t.disk, O_WRONLY | O_CLOEXEC);
        if (fd < 0) {
                a->res->denied++;
                if (!a->o || !a->o->quiet)
                        log_notice_errno(errno, "%s: write-open refused: %m", a->t.disk);
                return 0;
        }
        (void)hf_random_bytes(buf, 1 << 20);
        ssize_t n = pwrite(fd, buf, 1 << 20, 0);
        if (n < 0) {
                a->res->denied++;
                return 0;
        }
        (void)fsync(fd);
        a->res->bytes += (uint64_t)n;
        a->res->last = hf_recover_now();
        return 0;
}

int hf_sim_attack(const char *dir, const char *kind, const HfSimAttackOptions *o, HfSimResult *ret)
{
        Att a = { .dir = dir, .o = o, .res = ret, .kind = kind };
        int r;

        *ret = (HfSimResult){ 0 };
        if (!hf_sim_kind_valid(kind))
                return log_error_errno(EINVAL, "unknown attack \"%s\"", kind);
        r = open_sandbox(dir, &a.t);
        if (r < 0)
                return r;
        a.root = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (a.root < 0) {
                hf_sandbox_token_done(&a.t);
                return -errno;
        }
        pthread_mutex_init(&a.lock, NULL);
        if (strcmp(kind, "raw-disk") == 0)
                r = raw_disk(&a);
        else if (strcmp(kind, "bibi") == 0) {
                pthread_t th[4];
                size_t n = 0;
                for (; n < ELEMENTSOF(th); n++)
                        if (pthread_create(&th[n], NULL, bibi_thread, &a) != 0)
                                break;
                for (size_t i = 0; i < n; i++)
                        pthread_join(th[i], NULL);
        } else if (strcmp(kind, "split") == 0) {
                /* 20 cooperating processes of one session, each with its share. Counts come
                 * back through a shared mapping. */
                HfSimResult *shared = mmap(NULL, sizeof(HfSimResult) * 20, PROT_READ | PROT_WRITE,
                                           MAP_SHARED | MAP_ANONYMOUS, -1, 0);
                pid_t kids[20];
                if (shared == MAP_FAILED)
                        r = -errno;
                for (int k = 0; r == 0 && k < 20; k++) {
                        kids[k] = fork();
                        if (kids[k] == 0) {
                                a.res = &shared[k];
                                run_range(&a, 20, (size_t)k);
                                _exit(0);
                        }
                }
                for (int k = 0; r == 0 && k < 20; k++)
                        if (kids[k] > 0)
                                (void)waitpid(kids[k], NULL, 0);
                for (int k = 0; r == 0 && k < 20; k++) {
                        ret->files += shared[k].files;
                        ret->bytes += shared[k].bytes;
                        ret->created += shared[k].created;
                        ret->denied += shared[k].denied;
                        if (shared[k].first && (!ret->first || shared[k].first < ret->first))
                                ret->first = shared[k].first;
                        if (shared[k].last > ret->last)
                                ret->last = shared[k].last;
                }
                if (shared != MAP_FAILED)
                        munmap(shared, sizeof(HfSimResult) * 20);
        } else if (strcmp(kind, "rename-folder") == 0)
                rename_folders(&a);
        else
                run_range(&a, 1, 0);
        printf("{\"attack\":\"%s\",\"files\":%llu,\"bytes\":%llu,\"created\":%llu,"
               "\"denied\":%llu,\"first\":%.6f,\"last\":%.6f}\n",
               kind, (unsigned long long)ret->files, (unsigned long long)ret->bytes,
               (unsigned long long)ret->created, (unsigned long long)ret->denied, ret->first,
               ret->last);
        fflush(stdout);
        hf_strv_free(a.noted, a.n_noted);
        hf_sandbox_token_done(&a.t);
        close(a.root);
        pthread_mutex_destroy(&a.lock);
        return r;
}
