# SPDX-License-Identifier: LGPL-2.1-or-later
"""Helpers for holdfast's integration tests: running holdfast and restic, building source
trees with every kind of file, and comparing trees.

Also a small command line, used by tests/golden/make-golden.sh:
    python3 helpers.py manifest DIR > FILE    one JSON line per entry under DIR
"""
from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import random
import secrets
import shutil
import stat
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(os.environ.get("HF_SOURCE_ROOT") or Path(__file__).resolve().parents[2])

# meson's MALLOC_PERTURB_, which run-harness kept from this process (glibc reads it once, at
# start), goes back into the environment every program the tests start inherits.
if os.environ.get("HF_CHILD_MALLOC_PERTURB"):
    os.environ["MALLOC_PERTURB_"] = os.environ["HF_CHILD_MALLOC_PERTURB"]
GOLDEN = ROOT / "tests" / "golden"
GOLDEN_PASSWORD = "golden"

# Output that means a memory or UB error in holdfast, whatever its exit code says.
SANITIZER_MARKERS = ("Sanitizer", "runtime error:", "Segmentation fault", "core dumped")


# --------------------------------------------------------------------------------------------
# Running programs


class Result:
    """What a finished command gave. Unpacks as (rc, stdout, stderr) with text outputs."""

    def __init__(self, cmd, rc, out_bytes, err_bytes):
        self.cmd = [os.fsdecode(c) if isinstance(c, bytes) else str(c) for c in cmd]
        self.rc = rc
        self.out_bytes = out_bytes
        self.err_bytes = err_bytes
        self.out = out_bytes.decode("utf-8", "replace")
        self.err = err_bytes.decode("utf-8", "replace")

    def __iter__(self):
        return iter((self.rc, self.out, self.err))

    def __repr__(self):
        return f"Result(rc={self.rc}, cmd={' '.join(self.cmd)!r})"

    def describe(self, limit=4000):
        def cut(s):
            return s if len(s) <= limit else s[:limit] + f"\n... ({len(s) - limit} more chars)"

        return (f"$ {' '.join(self.cmd)}\nexit code {self.rc}\n"
                f"--- stdout ---\n{cut(self.out)}\n--- stderr ---\n{cut(self.err)}")

    def ok(self):
        """Asserts exit code 0; returns self."""
        assert self.rc == 0, "command failed:\n" + self.describe()
        return self

    def expect(self, rc):
        assert self.rc == rc, f"expected exit code {rc}:\n" + self.describe()
        return self

    def err_lines(self):
        return [line for line in self.err.splitlines() if line.strip()]

    def json(self):
        """stdout as one JSON document."""
        try:
            return json.loads(self.out)
        except ValueError as e:
            raise AssertionError(f"stdout is not JSON ({e}):\n" + self.describe()) from None

    def jsonl(self):
        """stdout as JSON lines (blank lines skipped)."""
        out = []
        for i, line in enumerate(self.out.splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError as e:
                raise AssertionError(f"stdout line {i} is not JSON ({e}): {line!r}\n"
                                     + self.describe()) from None
        return out


def clean_env(extra=None):
    """The environment without any RESTIC_* or HOLDFAST_* variable, plus extra."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RESTIC_", "HOLDFAST_"))}
    env.setdefault("LC_ALL", "C.UTF-8")
    env.update(extra or {})
    return env


def run(cmd, *, env=None, input=None, timeout=600, cwd=None):
    """Runs cmd (a list), never through a shell, with no stdin unless input is given."""
    try:
        p = subprocess.run([os.fspath(c) for c in cmd], env=env, cwd=cwd, timeout=timeout,
                           input=input.encode() if isinstance(input, str) else input,
                           stdin=None if input is not None else subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"timed out after {timeout}s: {' '.join(map(str, cmd))}\n"
                             f"--- stdout ---\n{(e.stdout or b'').decode('utf-8', 'replace')}\n"
                             f"--- stderr ---\n{(e.stderr or b'').decode('utf-8', 'replace')}"
                             ) from None
    return Result(cmd, p.returncode, p.stdout, p.stderr)


class Holdfast:
    """Runs the holdfast binary with a password in the environment (HOLDFAST_PASSWORD)."""

    def __init__(self, binary, password="holdfast-test"):
        self.binary = Path(binary)
        self.password = password

    def __call__(self, *args, repo=None, password=None, env=None, timeout=900, input=None,
                 cwd=None, allow_sanitizer=False):
        extra = {}
        pw = self.password if password is None else password
        if pw is not False:
            extra["HOLDFAST_PASSWORD"] = pw
        extra.update(env or {})
        cmd = [self.binary]
        if repo is not None:
            cmd += ["-r", repo]
        cmd += list(args)
        res = run(cmd, env=clean_env(extra), timeout=timeout, input=input, cwd=cwd)
        if not allow_sanitizer:
            for marker in SANITIZER_MARKERS:
                assert marker not in res.err, \
                    "holdfast crashed or a sanitizer reported an error:\n" + res.describe(20000)
            # A signal (negative rc from subprocess) is a crash whatever the output says.
            assert res.rc >= 0, f"holdfast died from signal {-res.rc}:\n" + res.describe()
        return res


class Restic:
    """Runs restic 0.14 (the oracle) with a password in the environment, without a cache."""

    def __init__(self, binary, password="holdfast-test"):
        self.binary = Path(binary)
        self.password = password

    def __call__(self, *args, repo=None, password=None, env=None, timeout=900, input=None,
                 cwd=None):
        extra = {"RESTIC_PASSWORD": self.password if password is None else password}
        extra.update(env or {})
        cmd = [self.binary, "--no-cache"]
        if repo is not None:
            cmd += ["-r", repo]
        cmd += list(args)
        return run(cmd, env=clean_env(extra), timeout=timeout, input=input, cwd=cwd)


def count_packs(repo):
    """Number of pack files under repo/data/."""
    return sum(len(files) for _, _, files in os.walk(Path(repo) / "data"))


def pack_files(repo):
    return {name for _, _, files in os.walk(Path(repo) / "data") for name in files}


def _poly1305(r_bytes, s_bytes, msg):
    r = int.from_bytes(r_bytes, "little") & 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
    s = int.from_bytes(s_bytes, "little")
    p = (1 << 130) - 5
    acc = 0
    for i in range(0, len(msg), 16):
        acc = (acc + int.from_bytes(msg[i:i + 16] + b"\x01", "little")) * r % p
    return ((acc + s) % (1 << 128)).to_bytes(16, "little")


def restic_seal(masterkey, plain):
    """plain encrypted as restic encrypts every object (restic-format.md §2.1: AES-256-CTR,
    then Poly1305-AES over the ciphertext), with the key as `restic cat masterkey` prints it.
    Returns IV + ciphertext + MAC."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    enc_key = base64.b64decode(masterkey["encrypt"])
    mac_k = base64.b64decode(masterkey["mac"]["k"])
    mac_r = base64.b64decode(masterkey["mac"]["r"])
    iv = secrets.token_bytes(16)
    ctr = Cipher(algorithms.AES(enc_key), modes.CTR(iv)).encryptor()
    ct = ctr.update(plain) + ctr.finalize()
    aes = Cipher(algorithms.AES(mac_k), modes.ECB()).encryptor()
    return iv + ct + _poly1305(mac_r, aes.update(iv) + aes.finalize(), ct)


def pin_chunker(restic, repo, password, polynomial="3da3358b4dc173"):
    """Rewrites repo's config with a fixed chunker polynomial (one restic's own tests use), so a
    file is cut into the same blobs on every run: init picks the polynomial at random, and a
    test that needs several blobs of one kind may otherwise meet a layout without them."""
    config = restic("cat", "config", repo=repo, password=password).ok().json()
    masterkey = restic("cat", "masterkey", repo=repo, password=password).ok().json()
    config["chunker_polynomial"] = polynomial
    path = Path(repo) / "config"
    os.chmod(path, 0o600)
    path.write_bytes(restic_seal(masterkey, json.dumps(config).encode()))
    os.chmod(path, 0o400)
    got = restic("cat", "config", repo=repo, password=password).ok().json()
    assert got["chunker_polynomial"] == polynomial, got


def pack_paths(repo):
    """Paths of the pack files under repo/data/."""
    return [Path(d) / n for d, _, files in os.walk(Path(repo) / "data") for n in files]


def resident_bytes(paths):
    """Bytes of the given files in the page cache, as fincore(1) counts them."""
    res = run(["fincore", "--bytes", "--noheadings", "--raw", "--output", "RES",
               *[str(p) for p in paths]])
    assert res.rc == 0, res.describe()
    return sum(int(x) for x in res.out.split())


def data_packs(restic, repo):
    """IDs of the packs that hold at least one data blob, from restic's view of the index."""
    packs = set()
    for idx in restic("list", "index", repo=repo).ok().out.split():
        doc = restic("cat", "index", idx, repo=repo).ok().json()
        for p in doc.get("packs") or []:
            if any(b.get("type") == "data" for b in p.get("blobs") or []):
                packs.add(p["id"])
    return packs


def unpack_vault(tarball, dest):
    """Unpacks a golden tarball (holding repo/) into dest; returns the vault path."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as tf:
        if hasattr(tarfile, "data_filter"):
            tf.extractall(dest, filter="tar")
        else:
            tf.extractall(dest)
    return dest / "repo"


# --------------------------------------------------------------------------------------------
# Source trees

MIB = 1 << 20
GIB = 1 << 30
BASE_NS = 1_600_000_000 * 10**9  # 2020-09-13


def _pseudo_random(rng, n):
    return rng.randbytes(n)


@dataclass
class TreeInfo:
    root: Path
    made: list = field(default_factory=list)     # features that exist in the tree
    skipped: dict = field(default_factory=dict)  # feature -> why it could not be made
    files: int = 0
    bytes: int = 0

    def has(self, feature):
        return feature in self.made


def make_rich_tree(root, *, seed=1234, owners=None, specials=None, xattrs=True,
                   non_utf8_names=True, non_utf8_link_targets=False, sparse=False, big=False,
                   many=False, many_count=20000, big_size=200 * MIB, sparse_size=GIB):
    """Builds a source tree with every kind of entry a backup must keep under root (created).

    owners/specials default to True as root (chown to 1234:5678, mknod) and False otherwise.
    non_utf8_link_targets adds a symlink whose target is not UTF-8 (restic 0.14 cannot restore
    it). The heavy parts are off unless asked for: a sparse 1 GiB file (sparse), a 200 MiB file
    (big) and 20k small files (many).
    """
    root = Path(root)
    rng = random.Random(seed)
    is_root = os.geteuid() == 0
    owners = is_root if owners is None else owners
    specials = is_root if specials is None else specials
    info = TreeInfo(root=root)
    times = {}  # path -> mtime ns, applied at the end (dirs after their content)
    tick = [0]

    def when(path, ns=None):
        tick[0] += 1
        times[path] = ns if ns is not None else BASE_NS + tick[0] * 1_000_000_007 + 123_456_789

    def mkdir(rel, mode=0o755):
        p = root / rel if rel else root
        p.mkdir(parents=True, exist_ok=True)
        os.chmod(p, mode)
        when(p)
        return p

    def write(rel, data, mode=0o644, ns=None):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
        os.chmod(p, mode)
        info.files += 1
        info.bytes += len(data)
        when(p, ns)
        return p

    def symlink(rel, target, ns=None):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, p)
        when(p, ns)
        return p

    mkdir("", 0o755)

    # Content: sizes around block and chunk boundaries, duplicates, a multi-chunk file.
    write("files/text.txt", b"".join(b"line %d of a small text file\n" % i for i in range(200)))
    write("files/empty", b"")
    write("files/one-byte", b"x")
    write("files/block-4096.bin", _pseudo_random(rng, 4096))
    write("files/block-4097.bin", _pseudo_random(rng, 4097))
    random_64k = _pseudo_random(rng, 65536)
    write("files/random-64k.bin", random_64k)
    write("files/dup-of-random-64k.bin", random_64k)
    write("files/zeros-1m.bin", bytes(MIB))
    write("files/multi-chunk-4m.bin", _pseudo_random(rng, 4 * MIB))
    write("files/old-mtime", b"epoch plus one nanosecond\n", ns=1)
    write("files/future-mtime", b"after 2038\n", ns=2_200_000_000 * 10**9 + 5)
    info.made += ["content", "empty-file", "multi-chunk"]

    # Modes, including setuid/setgid/sticky.
    write("modes/0600", b"private\n", 0o600)
    write("modes/0755.sh", b"#!/bin/sh\necho hi\n", 0o755)
    write("modes/0444", b"read-only\n", 0o444)
    write("modes/0000", b"no permissions at all\n", 0o000)
    write("modes/setuid", b"setuid\n", 0o4755)
    write("modes/setgid", b"setgid\n", 0o2750)
    write("modes/all-special", b"setuid setgid sticky\n", 0o7777)
    mkdir("modes/sticky-dir", 0o1777)
    write("modes/sticky-dir/inside", b"in a sticky dir\n")
    mkdir("modes/setgid-dir", 0o2775)
    mkdir("modes/private-dir", 0o700)
    write("modes/private-dir/inside", b"in a private dir\n")
    info.made += ["modes", "setuid", "sticky"]

    # Symlinks (targets are UTF-8 unless asked otherwise).
    symlink("links/relative", "../files/text.txt")
    symlink("links/absolute", "/etc/hostname")
    symlink("links/dangling", "does/not/exist")
    symlink("links/to-dir", "../files")
    symlink("links/long-target", "t" * 240)
    symlink("links/unicode-target", "tärget ü/€")
    info.made += ["symlink", "dangling-symlink"]
    if non_utf8_link_targets:
        symlink("links/non-utf8-target", os.fsdecode(b"target-\xfe\xff"))
        info.made.append("non-utf8-link-target")

    # Hard links: one group across two folders, one pair.
    a = write("hardlinks/a", b"hard-linked content\n")
    os.link(a, root / "hardlinks/b")
    mkdir("hardlinks/sub")
    os.link(a, root / "hardlinks/sub/c")
    x = write("hardlinks/x", _pseudo_random(rng, 10000), 0o600)
    os.link(x, root / "hardlinks/y")
    info.made.append("hardlinks")

    # Empty folders.
    mkdir("empty")
    mkdir("empty/nested")
    mkdir("empty/nested/deeper", 0o700)
    info.made.append("empty-dirs")

    # Names.
    if non_utf8_names:
        write(os.fsdecode(b"names/inv\xfe.txt"), b"name is not UTF-8\n")
        mkdir(os.fsdecode(b"names/dir-\xff\xfe"))
        write(os.fsdecode(b"names/dir-\xff\xfe/inside-\xc3\x28"), b"bad UTF-8 in a folder\n")
        info.made.append("non-utf8-names")
    write("names/new\nline", b"newline in the name\n")
    write("names/tab\there", b"tab in the name\n")
    write("names/<>&\"'\\.txt", b"markup and quotes\n")
    write("names/ünïcödé €.txt", b"UTF-8 name\n")
    write("names/ leading space", b"\n")
    write("names/-dash", b"\n")
    write("names/" + "n" * 255, b"longest name\n")
    write("names/\x01control", b"control character\n")
    info.made.append("odd-names")

    # Ownership (root only): chown before chmod, since chown clears setuid/setgid.
    if owners:
        p = write("owned/by-1234-5678", b"owned by 1234:5678\n")
        os.chown(p, 1234, 5678)
        os.chmod(p, 0o640)
        d = mkdir("owned/dir-1234-5678", 0o750)
        os.chown(d, 1234, 5678)
        os.chmod(d, 0o750)
        p = write("owned/dir-1234-5678/setgid-by-1234", b"setgid, owned\n")
        os.chown(p, 1234, 5678)
        os.chmod(p, 0o2755)
        s = symlink("owned/link-1234-5678", "by-1234-5678")
        os.lchown(s, 1234, 5678)
        p = write("owned/by-4321-0", b"owned by 4321:0\n")
        os.chown(p, 4321, 0)
        info.made.append("owners")
    else:
        info.skipped["owners"] = "chown needs root"

    # xattrs (user namespace, on a file and a folder).
    if xattrs:
        try:
            p = write("xattrs/file", b"has extended attributes\n")
            os.setxattr(p, "user.holdfast", b"value")
            os.setxattr(p, "user.empty", b"")
            os.setxattr(p, "user.binary", bytes(range(256)))
            d = mkdir("xattrs/dir")
            os.setxattr(d, "user.dir", b"on a folder")
            info.made.append("xattrs")
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
                raise
            info.skipped["xattrs"] = f"file system refuses user xattrs: {e.strerror}"

    # Special files: fifo always; devices need root.
    mkdir("special")
    os.mkfifo(root / "special/fifo", 0o644)
    when(root / "special/fifo")
    info.made.append("fifo")
    if specials:
        os.mknod(root / "special/chardev-1-3", stat.S_IFCHR | 0o644, os.makedev(1, 3))
        when(root / "special/chardev-1-3")
        os.mknod(root / "special/blockdev-7-200", stat.S_IFBLK | 0o600, os.makedev(7, 200))
        when(root / "special/blockdev-7-200")
        info.made += ["chardev", "blockdev"]
    else:
        info.skipped["devices"] = "mknod needs root"

    # Heavy parts.
    if sparse:
        p = root / "heavy/sparse-1g"
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "wb") as f:
            f.write(b"head of a sparse file\n")
            f.seek(sparse_size // 2)
            f.write(b"middle\n")
            f.truncate(sparse_size)
            f.seek(sparse_size - 5)
            f.write(b"tail\n")
        info.files += 1
        info.bytes += sparse_size
        when(p)
        info.made.append("sparse")
    if big:
        p = root / "heavy/big-200m"
        p.parent.mkdir(parents=True, exist_ok=True)
        brng = random.Random(seed + 1)
        with open(p, "wb") as f:
            left = big_size
            while left:
                n = min(left, 8 * MIB)
                f.write(brng.randbytes(n))
                left -= n
        info.files += 1
        info.bytes += big_size
        when(p)
        info.made.append("big")
    if many:
        per_dir = 200
        for i in range(many_count):
            d = root / "heavy/many" / f"d{i // per_dir:03d}"
            if i % per_dir == 0:
                d.mkdir(parents=True, exist_ok=True)
                when(d)
            p = d / f"f{i:05d}"
            data = b"small file %d\n" % i
            with open(p, "wb") as f:
                f.write(data)
            info.files += 1
            info.bytes += len(data)
            when(p)
        when(root / "heavy/many")
        info.made.append("many")
    if sparse or big or many:
        when(root / "heavy")

    # Every folder gets a fixed time too, including those made on the way.
    for d, _, _ in os.walk(root):
        if Path(d) not in times:
            when(Path(d))

    # Times last, deepest first, so setting a child's time never moves its folder's mtime.
    for p in sorted(times, key=lambda q: len(q.parts), reverse=True):
        ns = times[p]
        os.utime(p, ns=(ns + 17, ns), follow_symlinks=False)
    return info


# --------------------------------------------------------------------------------------------
# Tree comparison


def show(rel):
    """A relative path (bytes) as readable text; bytes that are not UTF-8 shown as \\xNN."""
    return rel.decode("utf-8", "backslashreplace") if rel else "."


def _short(value, n=24):
    if value is None:
        return "(absent)"
    return repr(value[:n]) + (f"...({len(value)} bytes)" if len(value) > n else "")


def _file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(4 * MIB)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def _xattrs(path, prefixes):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}
        raise
    out = {}
    for n in sorted(names):
        if n.startswith(prefixes):
            try:
                out[n] = os.getxattr(path, n, follow_symlinks=False)
            except OSError as e:
                if e.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise
    return out


def _kind(mode):
    for test, name in ((stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"), (stat.S_ISLNK, "symlink"),
                       (stat.S_ISCHR, "chardev"), (stat.S_ISBLK, "blockdev"),
                       (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "unknown"


def scan_tree(root, *, hashes=True, xattr_prefixes=("user.",)):
    """Walks root with lstat; returns {relative path (bytes): entry dict}. "." is the root."""
    root = os.fsencode(os.fspath(root))
    entries = {}
    inodes = {}

    def visit(path, rel):
        st = os.lstat(path)
        kind = _kind(st.st_mode)
        e = {"type": kind, "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
             "mtime_ns": st.st_mtime_ns}
        if kind == "file":
            e["size"] = st.st_size
            if hashes:
                e["sha256"] = _file_sha256(path)
            if st.st_nlink > 1:
                inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
        elif kind == "symlink":
            e["target"] = os.readlink(path)
        elif kind in ("chardev", "blockdev"):
            e["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
        if kind != "symlink" and xattr_prefixes:
            xa = _xattrs(path, xattr_prefixes)
            if xa:
                e["xattrs"] = xa
        entries[rel] = e
        if kind == "dir":
            for name in sorted(os.listdir(path)):
                visit(os.path.join(path, name), os.path.join(rel, name) if rel else name)

    visit(root, b"")
    groups = sorted(sorted(g) for g in inodes.values() if len(g) > 1)
    for g in groups:
        for rel in g:
            entries[rel]["hardlinks"] = g
    return entries


def compare_trees(expected, actual, *, owners=True, mtimes=True, dir_mtimes=True, xattrs=True,
                  hashes=True, ignore=(), xattr_prefixes=("user.",)):
    """Compares two trees (paths, or results of scan_tree). Returns a list of readable
    differences, empty when the trees are identical in everything checked."""
    a = expected if isinstance(expected, dict) else scan_tree(expected, hashes=hashes,
                                                             xattr_prefixes=xattr_prefixes)
    b = actual if isinstance(actual, dict) else scan_tree(actual, hashes=hashes,
                                                         xattr_prefixes=xattr_prefixes)
    ignore = {os.fsencode(i) for i in ignore}

    def ignored(rel):
        return any(rel == i or rel.startswith(i + b"/") for i in ignore)

    diffs = []
    for rel in sorted(set(a) | set(b)):
        if ignored(rel):
            continue
        ea, eb = a.get(rel), b.get(rel)
        if eb is None:
            diffs.append(f"{show(rel)}: missing ({ea['type']} in the source)")
            continue
        if ea is None:
            diffs.append(f"{show(rel)}: unexpected {eb['type']}")
            continue
        if ea["type"] != eb["type"]:
            diffs.append(f"{show(rel)}: type {ea['type']} became {eb['type']}")
            continue
        checks = ["mode", "size", "sha256", "target", "rdev"]
        if owners:
            checks += ["uid", "gid"]
        if mtimes and (dir_mtimes or ea["type"] != "dir"):
            checks.append("mtime_ns")
        if xattrs:
            checks.append("xattrs")
        for k in checks:
            va, vb = ea.get(k), eb.get(k)
            if va == vb:
                continue
            if k == "xattrs":
                va, vb = va or {}, vb or {}
                for name in sorted(set(va) | set(vb)):
                    if va.get(name) != vb.get(name):
                        diffs.append(f"{show(rel)}: xattr {name} {_short(va.get(name))} became "
                                     f"{_short(vb.get(name))}")
                continue
            if k == "mode":
                va, vb = f"{va:04o}", f"{vb:04o}"
            elif k == "target":
                va, vb = show(va), show(vb)
            elif k == "sha256":
                va, vb = va[:16] + "...", (vb or "none")[:16] + "..."
            diffs.append(f"{show(rel)}: {k} {va} became {vb}")
        ga = [r for r in ea.get("hardlinks", []) if not ignored(r)]
        gb = [r for r in eb.get("hardlinks", []) if not ignored(r)]
        if ga != gb:
            diffs.append(f"{show(rel)}: hard links [{', '.join(map(show, ga))}] became "
                         f"[{', '.join(map(show, gb))}]")
    return diffs


def assert_trees_equal(expected, actual, **kw):
    diffs = compare_trees(expected, actual, **kw)
    if diffs:
        shown = "\n  ".join(diffs[:60])
        more = f"\n  ... and {len(diffs) - 60} more" if len(diffs) > 60 else ""
        raise AssertionError(f"{len(diffs)} difference(s) between {expected} and {actual}:\n"
                             f"  {shown}{more}")


# --------------------------------------------------------------------------------------------
# Manifests: a tree as JSON lines, as stored next to the golden vaults


def manifest(root):
    """One dict per entry under root (root itself excluded), sorted by raw path bytes."""
    out = []
    for rel, e in sorted(scan_tree(root, xattr_prefixes=("user.",)).items()):
        if not rel:
            continue
        m = {"path": os.fsdecode(rel), "type": e["type"], "mode": e["mode"], "uid": e["uid"],
             "gid": e["gid"], "mtime_ns": e["mtime_ns"]}
        for k in ("size", "sha256", "rdev"):
            if k in e:
                m[k] = e[k]
        if "target" in e:
            m["target"] = os.fsdecode(e["target"])
        if "xattrs" in e:
            m["xattrs"] = {k: v.hex() for k, v in e["xattrs"].items()}
        if "hardlinks" in e:
            m["hardlinks"] = [os.fsdecode(r) for r in e["hardlinks"]]
        out.append(m)
    return out


def write_manifest(root, fp):
    for m in manifest(root):
        fp.write(json.dumps(m, sort_keys=True) + "\n")


def load_manifest(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def compare_manifests(expected, actual, *, ignore_paths=(), dir_mtimes=True, owners=None):
    """Differences between two manifests (lists of dicts), readable. Owners (uid/gid) are
    compared by default only as root, since only root can restore them."""
    if owners is None:
        owners = os.geteuid() == 0
    ea = {m["path"]: m for m in expected}
    eb = {m["path"]: m for m in actual}
    diffs = []
    for p in sorted(set(ea) | set(eb)):
        if p in ignore_paths:
            continue
        shown = os.fsencode(p).decode("utf-8", "backslashreplace")
        a, b = ea.get(p), eb.get(p)
        if b is None:
            diffs.append(f"{shown}: missing")
        elif a is None:
            diffs.append(f"{shown}: unexpected {b['type']}")
        else:
            for k in sorted(set(a) | set(b)):
                if k == "mtime_ns" and a["type"] == "dir" and not dir_mtimes:
                    continue
                if k in ("uid", "gid") and not owners:
                    continue
                if a.get(k) != b.get(k):
                    diffs.append(f"{shown}: {k} {a.get(k)!r} became {b.get(k)!r}")
    return diffs


def rmtree(path):
    """Removes a tree even where modes (0000 files, 0500 dirs) would stop shutil."""
    def onerror(func, p, exc):
        try:
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
        except OSError:
            pass
        func(p)

    if os.path.lexists(path):
        shutil.rmtree(path, onerror=onerror)


def main(argv):
    if len(argv) == 3 and argv[1] == "manifest":
        write_manifest(argv[2], sys.stdout)
        return 0
    if len(argv) == 3 and argv[1] == "rich-tree":
        info = make_rich_tree(argv[2])
        print(json.dumps({"made": info.made, "skipped": info.skipped}))
        return 0
    print("usage: helpers.py manifest DIR | rich-tree DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
