/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Raw-disk guard: a BPF_PROG_TYPE_CGROUP_DEVICE program attached (BPF_F_ALLOW_MULTI) at the
 * cgroup v2 root refuses every write-open (and mknod) of a block device, except to processes
 * in the allow-disk cgroup. fanotify never sees device nodes (fanotify-notes F33) and BPF-LSM
 * is refused on the machines we measured, so this is the one synchronous hook left. The
 * program is assembled here by hand and loaded with raw bpf() calls (no libbpf, no clang):
 * it is 40 instructions and changes rarely.
 *
 * Each denial is pushed into a BPF queue map ({pid_tgid, cgroup id, major, minor, access})
 * that the main loop drains to write an incident.
 */
#include <fcntl.h>
#include <linux/bpf.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../base/log.h"
#include "sentinel-internal.h"

#define ALLOW_CGROUP_NAME "holdfast-allow-disk"

struct HfRawDisk {
        int prog_fd;
        int allow_map_fd;
        int queue_map_fd;
        int cgroup_fd; /* the v2 root the program is attached to */
        int link_fd;   /* the BPF link: closing it (or dying) detaches the program */
        char cg_root[256];
        char allow_path[320];
        uint64_t allow_id;
        bool with_pid;
        bool with_cgroup;
        bool legacy; /* attached with BPF_PROG_ATTACH (kernels before 5.7): detached on exit */
};

static int sys_bpf(int cmd, union bpf_attr *attr)
{
        return (int)syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

static int map_create(enum bpf_map_type type, uint32_t key_size, uint32_t value_size, uint32_t max,
                      const char *name)
{
        union bpf_attr a;

        memset(&a, 0, sizeof(a));
        a.map_type = type;
        a.key_size = key_size;
        a.value_size = value_size;
        a.max_entries = max;
        (void)snprintf(a.map_name, sizeof(a.map_name), "%s", name);
        int fd = sys_bpf(BPF_MAP_CREATE, &a);
        return fd < 0 ? -errno : fd;
}

/* Instruction builders (the kernel's filter.h macros, which uapi does not ship). */
#define I(c, d, s, o, i)                                                                           \
        ((struct bpf_insn){ .code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i) })
#define MOV64_REG(d, s) I(BPF_ALU64 | BPF_MOV | BPF_X, d, s, 0, 0)
#define MOV64_IMM(d, v) I(BPF_ALU64 | BPF_MOV | BPF_K, d, 0, 0, v)
#define ALU64_IMM(op, d, v) I(BPF_ALU64 | (op) | BPF_K, d, 0, 0, v)
#define LDX_MEM(sz, d, s, o) I(BPF_LDX | (sz) | BPF_MEM, d, s, o, 0)
#define STX_MEM(sz, d, s, o) I(BPF_STX | (sz) | BPF_MEM, d, s, o, 0)
#define ST_MEM(sz, d, o, v) I(BPF_ST | (sz) | BPF_MEM, d, 0, o, v)
#define JMP_IMM(op, d, v, o) I(BPF_JMP | (op) | BPF_K, d, 0, o, v)
#define CALL(f) I(BPF_JMP | BPF_CALL, 0, 0, 0, f)
#define EXIT() I(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
/* ld_imm64 takes two slots: the map fd, then a zero upper half. */
#define LD_MAP_FD(d, fd) I(BPF_LD | BPF_DW | BPF_IMM, d, BPF_PSEUDO_MAP_FD, 0, fd)
#define LD_IMM64_HI() I(0, 0, 0, 0, 0)

static int load_prog(int allow_fd, int queue_fd, bool with_pid, bool with_cgroup, char *log,
                     size_t logn)
{
        /*
         * Creating a device node (mknod) stays allowed: restores of backups recreate them,
         * and opening the new node for writing is checked by this same program.
         * r6 = ctx; allow unless (type == BLOCK && access has WRITE); allow when the
         * caller's cgroup id is in the allow map; otherwise push a record and return 0 (deny).
         * Stack: -8 cgroup id (map key); -40..-9 the record.
         */
        struct bpf_insn p[64] = { 0 };
        int n = 0;

        p[n++] = MOV64_REG(BPF_REG_6, BPF_REG_1);
        p[n++] = LDX_MEM(BPF_W, BPF_REG_2, BPF_REG_6, 0); /* access_type */
        p[n++] = MOV64_REG(BPF_REG_3, BPF_REG_2);
        p[n++] = ALU64_IMM(BPF_AND, BPF_REG_3, 0xffff);
        int j_type = n;
        p[n++] = JMP_IMM(BPF_JNE, BPF_REG_3, BPF_DEVCG_DEV_BLOCK, 0); /* -> allow */
        p[n++] = ALU64_IMM(BPF_RSH, BPF_REG_2, 16);
        p[n++] = ALU64_IMM(BPF_AND, BPF_REG_2, BPF_DEVCG_ACC_WRITE);
        int j_acc = n;
        p[n++] = JMP_IMM(BPF_JEQ, BPF_REG_2, 0, 0); /* -> allow */
        int j_allowed = -1;
        if (with_cgroup) {
                p[n++] = CALL(BPF_FUNC_get_current_cgroup_id);
                p[n++] = STX_MEM(BPF_DW, BPF_REG_10, BPF_REG_0, -8);
                p[n++] = LD_MAP_FD(BPF_REG_1, allow_fd);
                p[n++] = LD_IMM64_HI();
                p[n++] = MOV64_REG(BPF_REG_2, BPF_REG_10);
                p[n++] = ALU64_IMM(BPF_ADD, BPF_REG_2, -8);
                p[n++] = CALL(BPF_FUNC_map_lookup_elem);
                j_allowed = n;
                p[n++] = JMP_IMM(BPF_JNE, BPF_REG_0, 0, 0); /* -> allow */
        } else {
                p[n++] = ST_MEM(BPF_DW, BPF_REG_10, -8, 0);
        }
        if (with_pid) {
                p[n++] = CALL(BPF_FUNC_get_current_pid_tgid);
                p[n++] = STX_MEM(BPF_DW, BPF_REG_10, BPF_REG_0, -40);
        } else {
                p[n++] = ST_MEM(BPF_DW, BPF_REG_10, -40, 0);
        }
        p[n++] = LDX_MEM(BPF_DW, BPF_REG_0, BPF_REG_10, -8);
        p[n++] = STX_MEM(BPF_DW, BPF_REG_10, BPF_REG_0, -32);
        p[n++] = LDX_MEM(BPF_W, BPF_REG_2, BPF_REG_6, 4);
        p[n++] = STX_MEM(BPF_W, BPF_REG_10, BPF_REG_2, -24);
        p[n++] = LDX_MEM(BPF_W, BPF_REG_2, BPF_REG_6, 8);
        p[n++] = STX_MEM(BPF_W, BPF_REG_10, BPF_REG_2, -20);
        p[n++] = LDX_MEM(BPF_W, BPF_REG_2, BPF_REG_6, 0);
        p[n++] = STX_MEM(BPF_W, BPF_REG_10, BPF_REG_2, -16);
        p[n++] = ST_MEM(BPF_W, BPF_REG_10, -12, 0);
        p[n++] = LD_MAP_FD(BPF_REG_1, queue_fd);
        p[n++] = LD_IMM64_HI();
        p[n++] = MOV64_REG(BPF_REG_2, BPF_REG_10);
        p[n++] = ALU64_IMM(BPF_ADD, BPF_REG_2, -40);
        p[n++] = MOV64_IMM(BPF_REG_3, 0);
        p[n++] = CALL(BPF_FUNC_map_push_elem);
        p[n++] = MOV64_IMM(BPF_REG_0, 0);
        p[n++] = EXIT();
        int allow = n;
        p[n++] = MOV64_IMM(BPF_REG_0, 1);
        p[n++] = EXIT();
        p[j_type].off = (int16_t)(allow - j_type - 1);
        p[j_acc].off = (int16_t)(allow - j_acc - 1);
        if (j_allowed >= 0)
                p[j_allowed].off = (int16_t)(allow - j_allowed - 1);

        union bpf_attr a;
        memset(&a, 0, sizeof(a));
        a.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
        a.insns = (uint64_t)(uintptr_t)p;
        a.insn_cnt = (uint32_t)n;
        a.license = (uint64_t)(uintptr_t) "GPL";
        a.log_buf = (uint64_t)(uintptr_t)log;
        a.log_size = (uint32_t)logn;
        a.log_level = log ? 1 : 0;
        (void)snprintf(a.prog_name, sizeof(a.prog_name), "hf_rawdisk");
        int fd = sys_bpf(BPF_PROG_LOAD, &a);
        return fd < 0 ? -errno : fd;
}

int hf_cgroup2_root(char *buf, size_t n)
{
        _cleanup_fclose_ FILE *f = fopen("/proc/self/mounts", "re");
        char line[1024];
        int r = -ENOENT;

        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f)) {
                char dev[256], mnt[512], type[64];
                if (sscanf(line, "%255s %511s %63s", dev, mnt, type) != 3)
                        continue;
                if (strcmp(type, "cgroup2") != 0)
                        continue;
                /* Prefer /sys/fs/cgroup (unified layout) over .../unified (hybrid). */
                if (r < 0 || strcmp(mnt, "/sys/fs/cgroup") == 0) {
                        (void)snprintf(buf, n, "%s", mnt);
                        r = 0;
                }
        }
        return r;
}

int hf_cgroup_id(const char *path, uint64_t *ret)
{
        struct {
                struct file_handle fh;
                uint64_t id;
        } h;
        int mnt;

        h.fh.handle_bytes = sizeof(uint64_t);
        if (name_to_handle_at(AT_FDCWD, path, &h.fh, &mnt, 0) < 0)
                return -errno;
        if (h.fh.handle_bytes != sizeof(uint64_t))
                return -EPROTO;
        memcpy(ret, h.fh.f_handle, sizeof(uint64_t));
        return 0;
}

HfRawDisk *hf_rawdisk_free(HfRawDisk *d)
{
        if (!d)
                return NULL;
        closep(&d->link_fd);
        if (d->prog_fd >= 0 && d->cgroup_fd >= 0 && d->legacy) {
                union bpf_attr a;
                memset(&a, 0, sizeof(a));
                a.target_fd = (uint32_t)d->cgroup_fd;
                a.attach_bpf_fd = (uint32_t)d->prog_fd;
                a.attach_type = BPF_CGROUP_DEVICE;
                if (sys_bpf(BPF_PROG_DETACH, &a) < 0)
                        log_warning_errno(errno, "raw-disk guard: cannot detach: %m");
        }
        closep(&d->prog_fd);
        closep(&d->allow_map_fd);
        closep(&d->queue_map_fd);
        closep(&d->cgroup_fd);
        free(d);
        return NULL;
}

/*
 * Detaches device programs named like ours that were attached without a link (by a build
 * before links, or on an old kernel) and whose sentinel is gone: they would refuse every raw
 * disk write for good. Programs held by a link cannot be detached this way and stay.
 */
static void detach_stale(int cgroup_fd)
{
        uint32_t ids[64];
        union bpf_attr a;

        memset(&a, 0, sizeof(a));
        a.query.target_fd = (uint32_t)cgroup_fd;
        a.query.attach_type = BPF_CGROUP_DEVICE;
        a.query.prog_ids = (uint64_t)(uintptr_t)ids;
        a.query.prog_cnt = ELEMENTSOF(ids);
        if (sys_bpf(BPF_PROG_QUERY, &a) < 0)
                return;
        uint32_t n = a.query.prog_cnt < ELEMENTSOF(ids) ? a.query.prog_cnt : ELEMENTSOF(ids);
        for (uint32_t i = 0; i < n; i++) {
                struct bpf_prog_info info;
                memset(&a, 0, sizeof(a));
                a.prog_id = ids[i];
                _cleanup_close_ int fd = sys_bpf(BPF_PROG_GET_FD_BY_ID, &a);
                if (fd < 0)
                        continue;
                memset(&info, 0, sizeof(info));
                memset(&a, 0, sizeof(a));
                a.info.bpf_fd = (uint32_t)fd;
                a.info.info_len = sizeof(info);
                a.info.info = (uint64_t)(uintptr_t)&info;
                if (sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &a) < 0 || strcmp(info.name, "hf_rawdisk") != 0)
                        continue;
                memset(&a, 0, sizeof(a));
                a.target_fd = (uint32_t)cgroup_fd;
                a.attach_bpf_fd = (uint32_t)fd;
                a.attach_type = BPF_CGROUP_DEVICE;
                if (sys_bpf(BPF_PROG_DETACH, &a) == 0)
                        log_warning("raw-disk guard: detached a guard program left behind by a "
                                    "sentinel that is gone (id %u)",
                                    ids[i]);
        }
}

int hf_rawdisk_new(HfRawDisk **ret, char *why, size_t whyn)
{
        _cleanup_(hf_rawdisk_freep) HfRawDisk *d = calloc(1, sizeof(*d));
        int r;

        if (!d)
                return -ENOMEM;
        d->prog_fd = d->allow_map_fd = d->queue_map_fd = d->cgroup_fd = d->link_fd = -1;
        r = hf_cgroup2_root(d->cg_root, sizeof(d->cg_root));
        if (r < 0) {
                (void)snprintf(why, whyn, "no cgroup v2 hierarchy mounted");
                return r;
        }
        (void)snprintf(d->allow_path, sizeof(d->allow_path), "%s/" ALLOW_CGROUP_NAME, d->cg_root);
        if (mkdir(d->allow_path, 0755) < 0 && errno != EEXIST) {
                r = -errno;
                (void)snprintf(why, whyn, "cannot create %s: %s", d->allow_path, strerror(-r));
                return r;
        }
        r = hf_cgroup_id(d->allow_path, &d->allow_id);
        if (r < 0) {
                (void)snprintf(why, whyn, "cannot read the id of %s", d->allow_path);
                return r;
        }
        d->allow_map_fd = map_create(BPF_MAP_TYPE_HASH, 8, 1, 64, "hf_allow");
        if (d->allow_map_fd < 0) {
                (void)snprintf(why, whyn, "BPF map: %s", strerror(-d->allow_map_fd));
                return d->allow_map_fd;
        }
        d->queue_map_fd = map_create(BPF_MAP_TYPE_QUEUE, 0, 32, 4096, "hf_denials");
        if (d->queue_map_fd < 0) {
                (void)snprintf(why, whyn, "BPF queue map: %s", strerror(-d->queue_map_fd));
                return d->queue_map_fd;
        }
        uint8_t one = 1;
        union bpf_attr a;
        memset(&a, 0, sizeof(a));
        a.map_fd = (uint32_t)d->allow_map_fd;
        a.key = (uint64_t)(uintptr_t)&d->allow_id;
        a.value = (uint64_t)(uintptr_t)&one;
        if (sys_bpf(BPF_MAP_UPDATE_ELEM, &a) < 0)
                return -errno;

        /* Older kernels offer device programs fewer helpers: without the pid the denial is
         * recorded with the cgroup only; without the cgroup id nothing is let through
         * (allow-disk then needs the sentinel stopped). */
        d->with_pid = d->with_cgroup = true;
        d->prog_fd = load_prog(d->allow_map_fd, d->queue_map_fd, true, true, NULL, 0);
        if (d->prog_fd < 0) {
                d->with_pid = false;
                d->prog_fd = load_prog(d->allow_map_fd, d->queue_map_fd, false, true, NULL, 0);
        }
        if (d->prog_fd < 0) {
                d->with_cgroup = false;
                d->prog_fd = load_prog(d->allow_map_fd, d->queue_map_fd, false, false, NULL, 0);
        }
        if (d->prog_fd < 0) {
                static char vlog[16384];
                (void)load_prog(d->allow_map_fd, d->queue_map_fd, false, false, vlog, sizeof(vlog));
                log_debug("BPF verifier: %s", vlog);
                (void)snprintf(why, whyn, "BPF_PROG_LOAD(cgroup/dev): %s", strerror(-d->prog_fd));
                return d->prog_fd;
        }
        d->cgroup_fd = open(d->cg_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (d->cgroup_fd < 0)
                return -errno;
        detach_stale(d->cgroup_fd);
        /* A link lives as long as this process: a sentinel that dies (even by SIGKILL) leaves
         * no guard behind that nobody can lift. */
        memset(&a, 0, sizeof(a));
        a.link_create.prog_fd = (uint32_t)d->prog_fd;
        a.link_create.target_fd = (uint32_t)d->cgroup_fd;
        a.link_create.attach_type = BPF_CGROUP_DEVICE;
        d->link_fd = sys_bpf(BPF_LINK_CREATE, &a);
        if (d->link_fd >= 0) {
                (void)snprintf(why, whyn, "cgroup device program at %s (BPF link)%s%s", d->cg_root,
                               d->with_pid ? "" : " (no pid attribution on this kernel)",
                               d->with_cgroup ? "" : " (allow-disk unavailable on this kernel)");
                *ret = TAKE_PTR(d);
                return 0;
        }
        d->legacy = true;
        memset(&a, 0, sizeof(a));
        a.target_fd = (uint32_t)d->cgroup_fd;
        a.attach_bpf_fd = (uint32_t)d->prog_fd;
        a.attach_type = BPF_CGROUP_DEVICE;
        a.attach_flags = BPF_F_ALLOW_MULTI;
        if (sys_bpf(BPF_PROG_ATTACH, &a) < 0) {
                r = -errno;
                (void)snprintf(why, whyn, "BPF_PROG_ATTACH(%s): %s", d->cg_root, strerror(-r));
                closep(&d->cgroup_fd);
                d->cgroup_fd = -1;
                return r;
        }
        (void)snprintf(why, whyn, "cgroup device program at %s (attached, no BPF link)%s%s",
                       d->cg_root, d->with_pid ? "" : " (no pid attribution on this kernel)",
                       d->with_cgroup ? "" : " (allow-disk unavailable on this kernel)");
        *ret = TAKE_PTR(d);
        return 0;
}

const char *hf_rawdisk_allow_path(const HfRawDisk *d)
{
        return d->allow_path;
}

int hf_rawdisk_pop(HfRawDisk *d, HfRawDenial *ret)
{
        struct {
                uint64_t pid_tgid, cgid;
                uint32_t major, minor, access, pad;
        } v;
        union bpf_attr a;

        memset(&a, 0, sizeof(a));
        a.map_fd = (uint32_t)d->queue_map_fd;
        a.value = (uint64_t)(uintptr_t)&v;
        if (sys_bpf(BPF_MAP_LOOKUP_AND_DELETE_ELEM, &a) < 0)
                return errno == ENOENT ? 0 : -errno;
        *ret = (HfRawDenial){ .pid = (pid_t)(v.pid_tgid >> 32),
                              .cgroup_id = v.cgid,
                              .major = v.major,
                              .minor = v.minor,
                              .access = v.access >> 16 };
        return 1;
}
