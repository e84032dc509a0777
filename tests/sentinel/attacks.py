#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Attack emulators for the sentinel's evaluation harness (harness.py runs them).

    attacks.py KIND ROOT LOG [DEVICE]

Each emulator works only inside ROOT, and only when ROOT holds the marker file that the
harness writes into scratch trees it created itself (.holdfast-scratch with the tree's own
path): it refuses anything else. It writes to LOG, flushed line by line so that the count
survives a SIGKILL:
    T0 <time>            just before its first destructive write
    F <time> <path>      each file it starts to destroy
    DONE <time>          when it finished (it was not stopped)

Kinds: inplace, newfile-delete, rename-ext, intermittent-mb, intermittent-16th, shred,
truncate, bibi, split20, slow, base64, mmap, dd-raw (DEVICE: a loop device the harness made).
"""
import base64
import mmap
import os
import random
import subprocess
import sys
import threading
import time

MARKER = ".holdfast-scratch"


class Log:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1)
        self.t0 = False
        self.lock = threading.Lock()

    def file(self, path):
        with self.lock:
            now = time.time()
            if not self.t0:
                self.f.write(f"T0 {now:.6f}\n")
                self.t0 = True
            self.f.write(f"F {now:.6f} {path}\n")
            self.f.flush()

    def done(self):
        self.f.write(f"DONE {time.time():.6f}\n")
        self.f.flush()


def files_of(root):
    out = []
    for dp, dns, fns in os.walk(root):
        dns.sort()
        for fn in sorted(fns):
            if fn == MARKER:
                continue
            p = os.path.join(dp, fn)
            if os.path.isfile(p) and not os.path.islink(p):
                out.append(p)
    return out


def rnd(n):
    return os.urandom(n)


def overwrite(p, data, offset=0):
    with open(p, "r+b") as f:
        f.seek(offset)
        f.write(data)


def inplace(root, log, _):
    for p in files_of(root):
        n = os.path.getsize(p)
        log.file(p)
        overwrite(p, rnd(n))


def newfile_delete(root, log, _):
    for p in files_of(root):
        n = os.path.getsize(p)
        log.file(p)
        with open(p + ".locked", "wb") as f:
            f.write(rnd(n + 16))
        os.unlink(p)


def rename_ext(root, log, _):
    for p in files_of(root):
        n = os.path.getsize(p)
        log.file(p)
        overwrite(p, rnd(n))
        os.rename(p, p + ".crypt")


def intermittent_mb(root, log, _):
    mib = 1 << 20
    for p in files_of(root):
        n = os.path.getsize(p)
        log.file(p)
        with open(p, "r+b") as f:
            for off in range(0, n, 2 * mib):
                f.seek(off)
                f.write(rnd(min(mib, n - off)))


def intermittent_16th(root, log, _):
    for p in files_of(root):
        n = os.path.getsize(p)
        log.file(p)
        with open(p, "r+b") as f:
            for off in range(0, n, 16 * 4096):
                f.seek(off)
                f.write(rnd(min(4096, n - off)))


def shred(root, log, _):
    # AwfulShred-like: a shell loop running shred -n 3 -u on each file.
    for p in files_of(root):
        log.file(p)
        subprocess.run(["shred", "-n", "3", "-u", p], check=False)


def truncate(root, log, _):
    for p in files_of(root):
        log.file(p)
        with open(p, "wb"):
            pass


def bibi(root, log, _):
    files = files_of(root)
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not files:
                    return
                p = files.pop(0)
            n = os.path.getsize(p)
            log.file(p)
            for _ in range(2):
                pos = random.randrange(0, max(1, n))
                overwrite(p, rnd(max(1, n - pos)), pos)
            overwrite(p, rnd(n))
            name = "".join(random.choice("abcdefghijklmnop") for _ in range(12))
            os.rename(p, os.path.join(os.path.dirname(p), name + ".BiBi1"))

    ts = [threading.Thread(target=worker) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def split20(root, log, _):
    files = files_of(root)
    pids = []
    for k in range(20):
        pid = os.fork()
        if pid == 0:
            try:
                for i, p in enumerate(files):
                    if i % 20 == k:
                        n = os.path.getsize(p)
                        log.file(p)
                        overwrite(p, rnd(n))
            finally:
                os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)


def slow(root, log, _):
    for p in files_of(root):
        n = os.path.getsize(p)
        log.file(p)
        overwrite(p, rnd(n))
        time.sleep(5)


def b64(root, log, _):
    for p in files_of(root):
        n = os.path.getsize(p)
        log.file(p)
        text = base64.encodebytes(rnd(n))[:n]
        overwrite(p, text)


def mmap_writer(root, log, _):
    for p in files_of(root):
        n = os.path.getsize(p)
        if n == 0:
            continue
        log.file(p)
        with open(p, "r+b") as f:
            m = mmap.mmap(f.fileno(), n, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            m[:] = rnd(n)
            m.flush()
            m.close()


def dd_raw(root, log, device):
    log.file(device)
    r = subprocess.run(["dd", "if=/dev/urandom", f"of={device}", "bs=64k", "count=16",
                        "conv=fsync"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sys.stderr.write(r.stderr.decode(errors="replace"))
    return r.returncode


KINDS = {
    "inplace": inplace,
    "newfile-delete": newfile_delete,
    "rename-ext": rename_ext,
    "intermittent-mb": intermittent_mb,
    "intermittent-16th": intermittent_16th,
    "shred": shred,
    "truncate": truncate,
    "bibi": bibi,
    "split20": split20,
    "slow": slow,
    "base64": b64,
    "mmap": mmap_writer,
    "dd-raw": dd_raw,
}


def main(argv):
    if len(argv) < 4 or argv[1] not in KINDS:
        print(__doc__, file=sys.stderr)
        return 2
    kind, root, logpath = argv[1], os.path.realpath(argv[2]), argv[3]
    marker = os.path.join(root, MARKER)
    try:
        with open(marker) as f:
            owner = f.read().strip()
    except OSError:
        owner = None
    if owner != root:
        print(f"attacks.py: refusing {root}: not a scratch tree made by the harness",
              file=sys.stderr)
        return 3
    log = Log(logpath)
    rc = KINDS[kind](root, log, argv[4] if len(argv) > 4 else None)
    log.done()
    return rc or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
