#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Benign workloads for the sentinel's evaluation harness (harness.py runs them).

    benign.py KIND ROOT

Each works in ROOT (a scratch tree the harness made: it refuses others) on data it makes
itself there, and exits 0 when the work succeeded. Kinds: build, git, dpkg, logrotate,
archive, sqlite, rsync, image, gpg. `prepare KIND ROOT` makes the input data (run before the
sentinel starts, so that the workload meets pre-existing files as on a real server).
"""
import os
import random
import shutil
import sqlite3
import struct
import subprocess
import sys
import zlib

MARKER = ".holdfast-scratch"


def sh(*cmd, cwd=None, env=None):
    r = subprocess.run(list(cmd), cwd=cwd, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    if r.returncode != 0:
        sys.stderr.write(f"{' '.join(cmd)}: exit {r.returncode}\n"
                         f"{r.stderr.decode(errors='replace')[-2000:]}\n")
        raise SystemExit(1)
    return r.stdout


def words(rng, n):
    vocab = ("alpha beta gamma delta server request response client cache index value "
             "record table column update insert select where order group limit offset "
             "error warning notice debug info user session token").split()
    return " ".join(rng.choice(vocab) for _ in range(n))


# ---- C project: generated sources, a Makefile, a tarball -------------------------------

def make_c_project(dest, nfiles=40, seed=1):
    rng = random.Random(seed)
    src = os.path.join(dest, "proj")
    os.makedirs(os.path.join(src, "src"), exist_ok=True)
    os.makedirs(os.path.join(src, "include"), exist_ok=True)
    with open(os.path.join(src, "include", "common.h"), "w") as f:
        f.write("#pragma once\n#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n")
        for i in range(nfiles):
            f.write(f"int work_{i}(int n);\n")
    for i in range(nfiles):
        with open(os.path.join(src, "src", f"mod{i}.c"), "w") as f:
            f.write('#include "common.h"\n')
            for k in range(30):
                f.write(f"static int helper_{i}_{k}(int n) {{\n"
                        f"    int acc = {rng.randrange(1000)};\n"
                        f"    for (int j = 0; j < n; j++) acc = (acc * {rng.randrange(3, 97)} + j)"
                        f" % {rng.randrange(1000, 100000)};\n"
                        f"    return acc;\n}}\n")
            f.write(f"int work_{i}(int n) {{\n    int s = 0;\n")
            for k in range(30):
                f.write(f"    s += helper_{i}_{k}(n);\n")
            f.write("    return s;\n}\n")
    with open(os.path.join(src, "src", "main.c"), "w") as f:
        f.write('#include "common.h"\nint main(void) {\n    long s = 0;\n')
        for i in range(nfiles):
            f.write(f"    s += work_{i}(10);\n")
        f.write('    printf("%ld\\n", s);\n    return 0;\n}\n')
    objs = " ".join(f"build/mod{i}.o" for i in range(nfiles)) + " build/main.o"
    with open(os.path.join(src, "Makefile"), "w") as f:
        f.write(f"CFLAGS=-O2 -Iinclude\nOBJS={objs}\n"
                "all: build/app\n"
                "build/app: $(OBJS)\n\t$(CC) -o $@ $(OBJS)\n"
                "build/%.o: src/%.c include/common.h\n\t@mkdir -p build\n\t$(CC) $(CFLAGS) -c -o $@ $<\n"
                "clean:\n\trm -rf build\n")
    sh("tar", "-czf", os.path.join(dest, "proj.tar.gz"), "-C", dest, "proj")
    shutil.rmtree(src)


def build(root):
    work = os.path.join(root, "build-work")
    os.makedirs(work, exist_ok=True)
    sh("tar", "-xzf", os.path.join(root, "input", "proj.tar.gz"), "-C", work)
    sh("make", "-s", "-j2", cwd=os.path.join(work, "proj"))
    sh("make", "-s", "clean", cwd=os.path.join(work, "proj"))
    sh("make", "-s", "-j2", cwd=os.path.join(work, "proj"))


def prepare_build(root):
    make_c_project(os.path.join(root, "input"))


# ---- git ---------------------------------------------------------------------------------

GIT_ENV = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.org",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.org",
               GIT_CONFIG_NOSYSTEM="1", HOME="/nonexistent")


def prepare_git(root):
    rng = random.Random(2)
    origin = os.path.join(root, "input", "origin")
    os.makedirs(origin)
    sh("git", "init", "-q", "-b", "main", origin, env=GIT_ENV)
    for c in range(12):
        for i in range(15):
            d = os.path.join(origin, f"dir{i % 4}")
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, f"file{i}.txt"), "a") as f:
                f.write(words(rng, 200) + "\n")
        sh("git", "add", "-A", cwd=origin, env=GIT_ENV)
        sh("git", "commit", "-q", "-m", f"commit {c}", cwd=origin, env=GIT_ENV)
        if c == 6:
            sh("git", "branch", "old", cwd=origin, env=GIT_ENV)


def git(root):
    clone = os.path.join(root, "git-work", "clone")
    os.makedirs(os.path.dirname(clone))
    sh("git", "clone", "-q", "--no-local", os.path.join(root, "input", "origin"), clone,
       env=GIT_ENV)
    sh("git", "checkout", "-q", "old", cwd=clone, env=GIT_ENV)
    sh("git", "checkout", "-q", "main", cwd=clone, env=GIT_ENV)
    with open(os.path.join(clone, "dir0", "file0.txt"), "a") as f:
        f.write("local change\n")
    sh("git", "commit", "-q", "-am", "local", cwd=clone, env=GIT_ENV)
    sh("git", "gc", "-q", "--aggressive", "--prune=now", cwd=clone, env=GIT_ENV)


# ---- dpkg ----------------------------------------------------------------------------------

PKG = "holdfast-sentinel-test-pkg"


def prepare_dpkg(root):
    stage = os.path.join(root, "input", "pkgstage")
    dest = os.path.join(root, "dpkg-work")  # absolute install location inside the tree
    os.makedirs(os.path.join(stage, "DEBIAN"))
    inst = os.path.join(stage, dest.lstrip("/"))
    os.makedirs(inst)
    rng = random.Random(3)
    for i in range(40):
        with open(os.path.join(inst, f"data{i}.txt"), "w") as f:
            f.write(words(rng, 300))
    with open(os.path.join(stage, "DEBIAN", "control"), "w") as f:
        f.write(f"Package: {PKG}\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.org>\n"
                "Description: holdfast sentinel benign-suite package\n")
    sh("dpkg-deb", "--build", "--root-owner-group", stage, os.path.join(root, "input", "pkg.deb"))
    shutil.rmtree(stage)


def dpkg(root):
    sh("dpkg", "-i", os.path.join(root, "input", "pkg.deb"))
    sh("dpkg", "-i", os.path.join(root, "input", "pkg.deb"))  # upgrade in place: .dpkg-new
    sh("dpkg", "-r", PKG)


# ---- logrotate -------------------------------------------------------------------------------

def prepare_logrotate(root):
    rng = random.Random(4)
    logs = os.path.join(root, "logs")
    os.makedirs(logs)
    for i in range(12):
        with open(os.path.join(logs, f"app{i}.log"), "w") as f:
            for k in range(800):
                f.write(f"2026-11-27 12:{k % 60:02d}:00 INFO {words(rng, 12)}\n")


def logrotate(root):
    logs = os.path.join(root, "logs")
    conf = os.path.join(root, "input", "logrotate.conf")
    os.makedirs(os.path.dirname(conf), exist_ok=True)
    with open(conf, "w") as f:
        f.write(f"{logs}/*.log {{\n  rotate 3\n  compress\n  missingok\n  create 0644 root root\n}}\n")
    sh("logrotate", "-f", "-s", os.path.join(root, "input", "logrotate.state"), conf)


# ---- archives --------------------------------------------------------------------------------

def prepare_archive(root):
    rng = random.Random(5)
    d = os.path.join(root, "input", "tree")
    for i in range(60):
        p = os.path.join(d, f"d{i % 6}", f"f{i}.txt")
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(words(rng, 400))


def archive(root):
    out = os.path.join(root, "archive-work")
    os.makedirs(out)
    src = os.path.join(root, "input", "tree")
    sh("tar", "-cf", os.path.join(out, "t.tar"), "-C", src, ".")
    sh("zip", "-q", "-r", os.path.join(out, "t.zip"), ".", cwd=src)
    sh("zstd", "-q", "-19", os.path.join(out, "t.tar"), "-o", os.path.join(out, "t.tar.zst"))


# ---- sqlite ------------------------------------------------------------------------------------

def prepare_sqlite(root):
    d = os.path.join(root, "db")
    os.makedirs(d)
    con = sqlite3.connect(os.path.join(d, "app.db"))
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, body TEXT)")
    rng = random.Random(6)
    con.executemany("INSERT INTO t (name, body) VALUES (?, ?)",
                    ((f"n{i}", words(rng, 40)) for i in range(5000)))
    con.commit()
    con.close()


def sqlite(root):
    path = os.path.join(root, "db", "app.db")
    rng = random.Random(7)
    con = sqlite3.connect(path)
    con.executemany("INSERT INTO t (name, body) VALUES (?, ?)",
                    ((f"m{i}", words(rng, 40)) for i in range(20000)))
    con.commit()
    con.execute("DELETE FROM t WHERE id % 3 = 0")
    con.commit()
    con.execute("VACUUM")
    con.close()


# ---- rsync ----------------------------------------------------------------------------------

def prepare_rsync(root):
    rng = random.Random(8)
    src = os.path.join(root, "input", "rsrc")
    for i in range(80):
        p = os.path.join(src, f"d{i % 8}", f"f{i}.txt")
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(words(rng, 300))
    mirror = os.path.join(root, "mirror")
    shutil.copytree(src, mirror)


def rsync(root):
    src = os.path.join(root, "input", "rsrc")
    rng = random.Random(9)
    for i in range(0, 80, 3):  # change a third, delete a tenth
        p = os.path.join(src, f"d{i % 8}", f"f{i}.txt")
        with open(p, "w") as f:
            f.write(words(rng, 320))
    for i in range(1, 80, 10):
        os.unlink(os.path.join(src, f"d{i % 8}", f"f{i}.txt"))
    sh("rsync", "-a", "--delete", src + "/", os.path.join(root, "mirror") + "/")


# ---- images ----------------------------------------------------------------------------------

def png_bytes(w, h, pixels):
    def chunk(t, d):
        c = struct.pack(">I", len(d)) + t + d
        return c + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    raw = b"".join(b"\x00" + pixels[y * w * 3:(y + 1) * w * 3] for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def prepare_image(root):
    d = os.path.join(root, "images")
    os.makedirs(d)
    rng = random.Random(10)
    for i in range(10):
        w, h = 160, 120
        px = bytearray()
        for y in range(h):
            for x in range(w):
                px += bytes(((x * 3 + i) % 256, (y * 2) % 256, rng.randrange(40)))
        with open(os.path.join(d, f"img{i}.ppm"), "wb") as f:
            f.write(b"P6\n%d %d\n255\n" % (w, h) + bytes(px))


def image(root):
    # mogrify -format png style: read PPM, write PNG next to it, remove the PPM; and one
    # in-place conversion (same name, new format).
    d = os.path.join(root, "images")
    for i in range(10):
        p = os.path.join(d, f"img{i}.ppm")
        data = open(p, "rb").read()
        head, rest = data.split(b"\n", 1)
        dims, rest = rest.split(b"\n", 1)
        _, px = rest.split(b"\n", 1)
        w, h = map(int, dims.split())
        png = png_bytes(w, h, px)
        if i == 0:
            with open(p, "wb") as f:  # in place
                f.write(png)
            continue
        with open(os.path.join(d, f"img{i}.png"), "wb") as f:
            f.write(png)
        os.unlink(p)


# ---- gpg ---------------------------------------------------------------------------------

def prepare_gpg(root):
    d = os.path.join(root, "private")
    os.makedirs(d)
    with open(os.path.join(d, "secret.txt"), "w") as f:
        f.write(words(random.Random(11), 3000))


def gpg(root):
    home = os.path.join(root, "input", "gnupg")
    os.makedirs(home, mode=0o700, exist_ok=True)
    try:
        sh("gpg", "--homedir", home, "--batch", "--yes", "--pinentry-mode", "loopback",
           "--passphrase", "correct horse", "--symmetric", "--cipher-algo", "AES256",
           os.path.join(root, "private", "secret.txt"))
    finally:
        # gpg starts an agent that outlives it, inside the tree: it would keep the scratch
        # filesystem busy.
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


KINDS = {
    "build": (prepare_build, build),
    "git": (prepare_git, git),
    "dpkg": (prepare_dpkg, dpkg),
    "logrotate": (prepare_logrotate, logrotate),
    "archive": (prepare_archive, archive),
    "sqlite": (prepare_sqlite, sqlite),
    "rsync": (prepare_rsync, rsync),
    "image": (prepare_image, image),
    "gpg": (prepare_gpg, gpg),
}


def main(argv):
    prep = len(argv) == 4 and argv[1] == "prepare"
    if prep:
        argv = argv[1:]
    if len(argv) != 3 or argv[1] not in KINDS:
        print(__doc__, file=sys.stderr)
        return 2
    root = os.path.realpath(argv[2])
    try:
        with open(os.path.join(root, MARKER)) as f:
            ok = f.read().strip() == root
    except OSError:
        ok = False
    if not ok:
        print(f"benign.py: refusing {root}: not a scratch tree made by the harness",
              file=sys.stderr)
        return 3
    os.makedirs(os.path.join(root, "input"), exist_ok=True)
    KINDS[argv[1]][0 if prep else 1](root)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
