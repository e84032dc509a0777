# SPDX-License-Identifier: LGPL-2.1-or-later
"""backup and restore end to end (docs/cli.md): backup options, the backup --json summary,
unreadable sources, progress on a terminal, snapshot ID prefixes, password and vault sources,
restore options and damaged data, faults (disk full, SIGKILL, SIGINT) and locks shared with
restic 0.14, the oracle: restic must be able to check every vault these tests leave behind.

Heavy data (a 200 MB tree of random files) is made once per module on tmpfs; every other tree
is a few KiB. Root-only parts (tmpfs mounts, running as nobody) carry the `root` marker, which
the harness skips only when not root; CI runs as root so they run there.
"""
import collections
import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import pty
import random
import re
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

import helpers as h

KDF = ["--kdf-params", "16384,8,1"]
HEX64 = re.compile(r"[0-9a-f]{64}")

# Every field docs/cli.md lists for the backup --json summary, with its JSON type.
SUMMARY_INT_FIELDS = ("files_new", "files_changed", "files_unmodified", "dirs_new",
                      "dirs_changed", "dirs_unmodified", "data_blobs", "tree_blobs",
                      "data_added", "data_added_packed", "total_files_processed",
                      "total_bytes_processed", "files_failed")


# --------------------------------------------------------------------------------------------
# Small helpers


def init(holdfast, vault, *extra, password=None, env=None):
    holdfast("init", *KDF, *extra, repo=vault, password=password, env=env).ok()


def write(path, data, mode=None, mtime=None):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    if mode is not None:
        os.chmod(path, mode)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def backup_json(res):
    """(summary, error lines) of a `backup --json` run; asserts the documented line shapes:
    every stdout line is JSON, error lines first, exactly one summary and it comes last."""
    lines = res.jsonl()
    summaries = [d for d in lines if d.get("message_type") == "summary"]
    assert len(summaries) == 1, "want exactly one summary line:\n" + res.describe()
    assert lines[-1] is summaries[0], "the summary must be the last line:\n" + res.describe()
    errors = lines[:-1]
    for e in errors:
        assert e.get("message_type") == "error", f"unexpected line {e}:\n" + res.describe()
        assert isinstance(e["error"]["message"], str) and e["error"]["message"], e
        assert e["during"] == "archival", e
        assert isinstance(e["item"], str) and e["item"], e
    return summaries[0], errors


def backup(holdfast, vault, *args, rc=0, **kw):
    """Runs `backup --json ARGS`, asserts the exit code; returns (summary, errors).
    Path arguments are given relative to the first one's parent (the working folder), so
    that the snapshot's tree starts at their names ("/src/..."), as restic does for relative
    paths; an absolute path would be stored with all its folders."""
    paths = [a for a in args if isinstance(a, Path)]
    if paths and "cwd" not in kw:
        kw["cwd"] = paths[0].parent
        args = [os.path.relpath(a, kw["cwd"]) if isinstance(a, Path) else a for a in args]
    res = holdfast("--json", "backup", *args, repo=vault, **kw).expect(rc)
    return backup_json(res)


def snapshots(holdfast, vault, *args, **kw):
    """snapshots --json, oldest first."""
    return holdfast("--json", "snapshots", *args, repo=vault, **kw).ok().json()


def ls_nodes(holdfast, vault, snap="latest", **kw):
    """{path: node} from `ls --json SNAP`; checks the snapshot line comes first."""
    lines = holdfast("--json", "ls", snap, repo=vault, **kw).ok().jsonl()
    assert lines and lines[0]["struct_type"] == "snapshot", lines[:1]
    assert all(n["struct_type"] == "node" for n in lines[1:])
    return {n["path"]: n for n in lines[1:]}


def real_packs(vault):
    """Names of the finished pack files (64 hex) under vault/data, temporary files left out."""
    return {n for _, _, files in os.walk(Path(vault) / "data") for n in files
            if HEX64.fullmatch(n)}


def lock_names(vault):
    return [n for n in os.listdir(Path(vault) / "locks") if HEX64.fullmatch(n)]


def files_under(root):
    """Relative paths (str) of every regular file under root."""
    root = Path(root)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def all_under(root):
    """Relative paths (str) of everything under root, folders included."""
    root = Path(root)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def damage_blob(vault, pack, offset, length):
    """Flips one bit in the middle of a blob stored in pack (its MAC no longer matches)."""
    path = vault / "data" / pack[:2] / pack
    os.chmod(path, 0o600)
    with open(path, "r+b") as f:
        f.seek(offset + length // 2)
        b = f.read(1)
        f.seek(offset + length // 2)
        f.write(bytes([b[0] ^ 0x40]))


def sha256(path):
    hsh = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            hsh.update(block)
    return hsh.hexdigest()


def restic_check(restic, vault):
    res = restic("check", repo=vault)
    assert res.rc == 0 and "no errors were found" in res.out, res.describe()
    return res


def hf_env(holdfast, extra=None):
    return h.clean_env({"HOLDFAST_PASSWORD": holdfast.password, **(extra or {})})


def on_one_cpu():
    """preexec_fn: pins the child to one CPU, so that a backup of big_tree lasts long enough
    (more than half a second even on a fast core) to be watched, interrupted or raced
    whatever the number of CPUs (holdfast starts one worker per CPU)."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def popen_holdfast(holdfast, *args, stderr=subprocess.PIPE):
    return subprocess.Popen([os.fspath(holdfast.binary), *map(os.fspath, args)],
                            env=hf_env(holdfast), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=stderr, preexec_fn=on_one_cpu)


def wait_until(cond, proc, what, timeout=60):
    """Polls cond() until true; fails when proc ended first or after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the process ended (exit {proc.returncode}) before {what}:\n"
                                 f"{out.decode(errors='replace')}\n{err.decode(errors='replace')}")
        assert time.monotonic() < deadline, f"not {what} within {timeout} s"
        time.sleep(0.005)


@contextlib.contextmanager
def mounted_tmpfs(path, size):
    """A tmpfs of size (e.g. "30m") mounted at path (created) for the block."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    h.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", path]).ok()
    try:
        yield path
    finally:
        if h.run(["umount", path]).rc != 0:
            h.run(["umount", "-l", path])


@contextlib.contextmanager
def restic_holding_lock(restic, vault):
    """A restic backup that holds a non-exclusive lock until the block ends (it reads its data
    from a pipe kept open); the same idea as in test_commands.py."""
    env = h.clean_env({"RESTIC_PASSWORD": restic.password})
    proc = subprocess.Popen([restic.binary, "--no-cache", "-r", vault, "backup", "--stdin",
                             "--stdin-filename", "held"], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not lock_names(vault):
            assert proc.poll() is None, "restic exited before locking"
            assert time.monotonic() < deadline, "restic did not lock within 30 s"
            time.sleep(0.02)
        yield proc
    finally:
        if proc.poll() is None:
            proc.stdin.close()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _fast_dir():
    """/dev/shm when it is a tmpfs with room for the heavy tree, else the temp folder."""
    try:
        st = os.statvfs("/dev/shm")
        if st.f_bavail * st.f_frsize > 2 * h.GIB:
            return "/dev/shm"
    except OSError:
        pass
    return None


@pytest.fixture
def holdfast(holdfast_bin):
    """The harness's runner, with the binary as an absolute path: some tests run holdfast in
    another working folder, and HOLDFAST may be relative."""
    return h.Holdfast(Path(holdfast_bin).resolve())


@pytest.fixture
def tmp_path(tmp_path):
    """This module's per-test folder lives on tmpfs when there is room: every vault has 256
    data folders, and unlinking on the root disk of these VMs is slow (see conftest's
    scratch). Removed after the test."""
    fast = _fast_dir()
    if not fast:
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="holdfast-br-", dir=fast))
    yield path
    h.rmtree(path)


@pytest.fixture
def shm():
    """A fresh folder everybody may enter (0755, in a folder they may enter too), on tmpfs
    when possible, removed after."""
    path = Path(tempfile.mkdtemp(prefix="holdfast-br-",
                                 dir="/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"))
    os.chmod(path, 0o755)
    yield path
    h.rmtree(path)


BIG_FILES = 8
BIG_FILE_SIZE = 25_000_000


@pytest.fixture(scope="module")
def big_tree():
    """200 MB of random data in 8 files (read-only for the tests), made once per module."""
    root = Path(tempfile.mkdtemp(prefix="holdfast-big-", dir=_fast_dir()))
    rng = random.Random(20240501)
    for i in range(BIG_FILES):
        write(root / f"f{i}.bin", rng.randbytes(BIG_FILE_SIZE))
    yield root
    h.rmtree(root)


def small_tree(src):
    """A small tree of 6 files in 4 folders (the top included); returns the file count."""
    write(src / "top.txt", "top\n")
    write(src / "docs/a.txt", "alpha\n")
    write(src / "docs/sub/b.txt", "bravo\n")
    write(src / "docs/sub/c.log", "charlie log\n")
    write(src / "logs/x.log", "x-ray log\n")
    write(src / "data.bin", os.urandom(50_000))
    return 6


# --------------------------------------------------------------------------------------------
# 1. backup options


def test_packs_leave_the_page_cache(holdfast, restic, tmp_path):
    """Packs are written once and read rarely: once durable they are dropped from the page
    cache, so a backup does not push the service's own data out of memory. The vault is on the
    root disk (on tmpfs the page cache is the storage)."""
    src = tmp_path / "src"
    for i in range(3):
        write(src / f"f{i}", secrets.token_bytes(6 * h.MIB))
    write(src / "text", b"the same line again\n" * 300_000)
    vault = Path(tempfile.mkdtemp(prefix="holdfast-pc-", dir="/var/tmp")) / "v"
    try:
        init(holdfast, vault)
        backup(holdfast, vault, src)
        packs = h.pack_paths(vault)
        assert sum(p.stat().st_size for p in packs) > 18 * h.MIB
        assert h.resident_bytes(packs) == 0
        # The control: a file just written and not dropped stays in the page cache.
        plain = write(vault.parent / "plain", secrets.token_bytes(2 * h.MIB))
        assert h.resident_bytes([plain]) == 2 * h.MIB
        restic_check(restic, vault)
    finally:
        h.rmtree(vault.parent)


def test_exclude_basename_and_path_patterns(holdfast, tmp_path):
    src, vault = tmp_path / "src", tmp_path / "vault"
    write(src / "keep.txt", "keep\n")
    write(src / "a.tmp", "temporary\n")
    write(src / "sub/b.tmp", "temporary deeper\n")
    write(src / "sub/keep2.txt", "keep too\n")
    write(src / "cache/c1", "cache content\n")
    write(src / "sub/cache/c2", "nested cache content\n")
    write(src / "docs/private/p.txt", "private\n")
    write(src / "docs/public/q.txt", "public\n")
    write(src / "lib/build/out.o", "object\n")
    write(src / "lib/top.o", "object at lib level\n")
    write(src / "other/x.o", "object elsewhere\n")
    init(holdfast, vault)
    patterns = ["*.tmp", "cache", f"{src}/docs/private", "*/lib/*.o"]
    args = [a for p in patterns for a in ("--exclude", p)]
    summary, errors = backup(holdfast, vault, src, *args)
    assert errors == []
    assert sorted(ls_nodes(holdfast, vault)) == [
        "/src", "/src/docs", "/src/docs/public", "/src/docs/public/q.txt", "/src/keep.txt",
        "/src/lib", "/src/lib/build", "/src/other", "/src/other/x.o", "/src/sub",
        "/src/sub/keep2.txt"]
    assert summary["files_new"] == 4 and summary["total_files_processed"] == 4, summary
    # The snapshot records the patterns, as restic does.
    assert snapshots(holdfast, vault)[-1]["excludes"] == patterns


def test_exclude_file_ignores_comments_and_blank_lines(holdfast, tmp_path):
    src, vault = tmp_path / "src", tmp_path / "vault"
    write(src / "keep.txt", "keep\n")
    write(src / "#hash.txt", "a name starting with #\n")
    write(src / "a.tmp", "temporary\n")
    write(src / "cache/c1", "cache\n")
    write(src / "d/skip.bak", "backup copy\n")
    write(src / "d/keep.md", "keep\n")
    exclude_file = write(tmp_path / "excludes", "# a comment: *.txt must not apply\n"
                                                 "\n"
                                                 "   \n"
                                                 "*.tmp\n"
                                                 "   cache   \n"
                                                 "\t# an indented comment: *.md\n")
    init(holdfast, vault)
    _, errors = backup(holdfast, vault, src, "--exclude-file", exclude_file,
                       "--exclude", "*.bak")
    assert errors == []
    assert sorted(ls_nodes(holdfast, vault)) == ["/src", "/src/#hash.txt", "/src/d",
                                                 "/src/d/keep.md", "/src/keep.txt"]
    assert sorted(snapshots(holdfast, vault)[-1]["excludes"]) == ["*.bak", "*.tmp", "cache"]
    # A missing exclude file is an error that names it, before anything is saved.
    res = holdfast("backup", src, "--exclude-file", tmp_path / "nope", repo=vault).expect(1)
    assert str(tmp_path / "nope") in res.err
    assert len(snapshots(holdfast, vault)) == 1


@pytest.mark.root
def test_one_file_system(holdfast, tmp_path):
    src, vault = tmp_path / "src", tmp_path / "vault"
    write(src / "before.txt", "on the source file system\n")
    write(src / "zz/after.txt", "also\n")
    init(holdfast, vault)
    with mounted_tmpfs(src / "mnt", "1m") as mnt:
        write(mnt / "inside.txt", "on another file system\n")
        write(mnt / "deep/inside2.txt", "also on the other one\n")
        os.chmod(mnt, 0o750)
        backup(holdfast, vault, src, "--one-file-system")
        nodes = ls_nodes(holdfast, vault)
        assert sorted(nodes) == ["/src", "/src/before.txt", "/src/mnt", "/src/zz",
                                 "/src/zz/after.txt"]
        assert nodes["/src/mnt"]["type"] == "dir"
        assert nodes["/src/mnt"]["mode"] & 0o777 == 0o750, nodes["/src/mnt"]
        # Without -x the mounted content is saved (the test above means something).
        backup(holdfast, vault, src)
        assert "/src/mnt/deep/inside2.txt" in ls_nodes(holdfast, vault)


def test_tags_and_host(holdfast, tmp_path):
    src, vault = tmp_path / "src", tmp_path / "vault"
    small_tree(src)
    init(holdfast, vault)
    s1, _ = backup(holdfast, vault, src, "--tag", "nightly", "--tag", "web", "--host", "alpha")
    s2, _ = backup(holdfast, vault, src, "-H", "beta")
    snaps = {s["id"]: s for s in snapshots(holdfast, vault)}
    assert snaps[s1["snapshot_id"]]["tags"] == ["nightly", "web"]
    assert snaps[s1["snapshot_id"]]["hostname"] == "alpha"
    assert snaps[s2["snapshot_id"]]["hostname"] == "beta"
    assert "tags" not in snaps[s2["snapshot_id"]]  # omitted when empty, as restic does
    assert [s["id"] for s in snapshots(holdfast, vault, "--tag", "web")] == [s1["snapshot_id"]]
    assert [s["id"] for s in snapshots(holdfast, vault, "--host", "beta")] == \
        [s2["snapshot_id"]]


def test_unchanged_changed_and_forced_backups(holdfast, restic, tmp_path, target_dir):
    src, vault = tmp_path / "src", tmp_path / "vault"
    n = small_tree(src)
    write(src / "same-size.txt", "version one\n")
    n += 1
    init(holdfast, vault)
    first, _ = backup(holdfast, vault, src)
    assert first["files_new"] == n and first["data_added"] > 50_000, first
    packs = real_packs(vault)
    data_packs = h.data_packs(restic, vault)
    assert data_packs

    # Unchanged: the parent (same host and paths) is found, nothing is read or added.
    second, _ = backup(holdfast, vault, src)
    assert (second["files_new"], second["files_changed"], second["files_unmodified"]) == \
        (0, 0, n), second
    assert second["dirs_unmodified"] == 4 and second["dirs_new"] == 0, second
    assert second["data_added"] == 0 and second["data_blobs"] == 0, second
    assert second["total_files_processed"] == n
    assert real_packs(vault) == packs, "an unchanged backup wrote a pack"
    snaps = snapshots(holdfast, vault)
    assert snaps[-1]["parent"] == first["snapshot_id"]

    # Same size, mtime put back: the ctime still tells the content changed.
    p = src / "same-size.txt"
    st = os.stat(p)
    p.write_text("version two\n")
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(p).st_size == st.st_size and os.stat(p).st_mtime_ns == st.st_mtime_ns
    third, _ = backup(holdfast, vault, src)
    assert (third["files_new"], third["files_changed"], third["files_unmodified"]) == \
        (0, 1, n - 1), third
    assert third["data_blobs"] == 1 and third["data_added"] > 0, third
    holdfast("restore", third["snapshot_id"][:8], "--target", target_dir, repo=vault).ok()
    assert (target_dir / "src/same-size.txt").read_text() == "version two\n"

    # --force reads every file again (none counts as unmodified) but dedup adds no data.
    data_packs = h.data_packs(restic, vault)
    forced, _ = backup(holdfast, vault, src, "--force")
    assert forced["files_unmodified"] == 0, forced
    assert forced["files_new"] + forced["files_changed"] == n, forced
    assert forced["total_bytes_processed"] == third["total_bytes_processed"]
    assert forced["data_blobs"] == 0 and forced["data_added"] == 0, forced
    assert h.data_packs(restic, vault) == data_packs
    restic_check(restic, vault)


def test_parent_explicit_and_detection_by_host_and_paths(holdfast, tmp_path):
    src, other, vault = tmp_path / "src", tmp_path / "other", tmp_path / "vault"
    n = small_tree(src)
    write(other / "o.txt", "other\n")
    init(holdfast, vault)
    a1, _ = backup(holdfast, vault, src, "--host", "alpha")
    # Another host: no parent, every file is new.
    b1, _ = backup(holdfast, vault, src, "--host", "beta")
    assert b1["files_new"] == n and b1["files_unmodified"] == 0, b1
    # --parent with an 8-char prefix of another host's snapshot: used.
    b2, _ = backup(holdfast, vault, src, "--host", "beta", "--parent", a1["snapshot_id"][:8])
    assert b2["files_unmodified"] == n and b2["files_new"] == 0, b2
    # Other paths: no parent.
    a2, _ = backup(holdfast, vault, src, other, "--host", "alpha")
    assert a2["files_new"] == n + 1 and a2["files_unmodified"] == 0, a2
    # Same host and paths again: the latest such snapshot is the parent.
    a3, _ = backup(holdfast, vault, src, "--host", "alpha")
    assert a3["files_unmodified"] == n, a3
    parents = {s["id"]: s.get("parent") for s in snapshots(holdfast, vault)}
    assert parents == {a1["snapshot_id"]: None, b1["snapshot_id"]: None,
                       b2["snapshot_id"]: a1["snapshot_id"], a2["snapshot_id"]: None,
                       a3["snapshot_id"]: a1["snapshot_id"]}
    # --force with --parent is a usage error.
    res = holdfast("backup", src, "--force", "--parent", a1["snapshot_id"], repo=vault)
    assert res.rc == 2 and "--parent" in res.err, res.describe()
    assert len(snapshots(holdfast, vault)) == 5


def test_unknown_parent_is_an_error(holdfast, tmp_path):
    src, vault = tmp_path / "src", tmp_path / "vault"
    small_tree(src)
    init(holdfast, vault)
    res = holdfast("backup", src, "--parent", "ffffffff", repo=vault)
    assert "ffffffff" in res.err, res.describe()
    assert snapshots(holdfast, vault) == [], "a snapshot was saved without the parent asked for"
    res.expect(1)


def test_backup_dry_run_writes_nothing(holdfast, tmp_path):
    src, vault = tmp_path / "src", tmp_path / "vault"
    n = small_tree(src)
    init(holdfast, vault)
    summary, _ = backup(holdfast, vault, src, "--dry-run")
    assert summary["files_new"] == n, summary
    assert snapshots(holdfast, vault) == [] and real_packs(vault) == set()


# --------------------------------------------------------------------------------------------
# 2. backup --json


def test_backup_json_summary_schema(holdfast, restic, tmp_path):
    src, vault = tmp_path / "src", tmp_path / "vault"
    n = small_tree(src)
    size = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    init(holdfast, vault)
    res = holdfast("--json", "backup", "src", repo=vault, cwd=tmp_path).ok()
    summary, errors = backup_json(res)
    assert errors == []
    missing = [k for k in SUMMARY_INT_FIELDS + ("message_type", "total_duration",
                                                 "snapshot_id") if k not in summary]
    assert not missing, f"summary lacks {missing}: {summary}"
    for k in SUMMARY_INT_FIELDS:
        assert type(summary[k]) is int and summary[k] >= 0, (k, summary[k])
    assert type(summary["total_duration"]) in (int, float) and summary["total_duration"] > 0
    assert HEX64.fullmatch(summary["snapshot_id"]), summary["snapshot_id"]
    assert (summary["files_new"], summary["files_changed"], summary["files_unmodified"],
            summary["files_failed"]) == (n, 0, 0, 0)
    assert summary["dirs_new"] == 4
    assert summary["total_files_processed"] == n and summary["total_bytes_processed"] == size
    assert summary["data_blobs"] == n and summary["tree_blobs"] >= 4, summary
    assert summary["data_added"] >= size and 0 < summary["data_added_packed"]
    snaps = snapshots(holdfast, vault)
    assert [s["id"] for s in snaps] == [summary["snapshot_id"]]
    assert snaps[0]["short_id"] == summary["snapshot_id"][:8]
    # The summary stored in the snapshot agrees with the one printed.
    stored = snaps[0].get("summary") or {}
    for k, v in stored.items():
        if k in summary:
            assert summary[k] == v, (k, summary[k], v)
    r_ids = [s["id"] for s in restic("--json", "snapshots", repo=vault).ok().json()]
    assert r_ids == [summary["snapshot_id"]]
    # With --json, stdout carries JSON only.
    assert all(line.startswith("{") for line in res.out.splitlines() if line.strip())


def test_backup_json_error_line_for_missing_target(holdfast, tmp_path):
    src, vault = tmp_path / "src", tmp_path / "vault"
    n = small_tree(src)
    missing = tmp_path / "does-not-exist"
    init(holdfast, vault)
    summary, errors = backup(holdfast, vault, src, missing, rc=3)
    assert [e["item"] for e in errors] == [str(missing)], errors
    assert summary["files_failed"] >= 1 and summary["files_new"] == n, summary
    snaps = snapshots(holdfast, vault)
    assert [s["id"] for s in snaps] == [summary["snapshot_id"]]
    assert "/src/docs/sub/c.log" in ls_nodes(holdfast, vault)
    # Human output: the same problem named on stderr, exit 3.
    res = holdfast("backup", src, missing, repo=vault).expect(3)
    assert any(str(missing) in line for line in res.err_lines()), res.describe()


def test_backup_of_only_missing_targets_fails(holdfast, tmp_path):
    vault = tmp_path / "vault"
    missing = tmp_path / "does-not-exist"
    init(holdfast, vault)
    res = holdfast("backup", missing, repo=vault)
    assert str(missing) in res.err, res.describe()
    assert snapshots(holdfast, vault) == [], "a snapshot of nothing was saved"
    res.expect(1)


# --------------------------------------------------------------------------------------------
# 3. unreadable source files (as user nobody)


@pytest.mark.root
def test_unreadable_file_as_nobody(holdfast, restic, shm):
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to run holdfast as nobody"
    src, vault = shm / "src", shm / "vault"
    write(src / "readable.txt", "everybody reads this\n", 0o644)
    write(src / "dir/also.txt", "and this\n", 0o644)
    secret = write(src / "dir/secret.txt", "root only\n", 0o600)
    os.chmod(src / "dir", 0o755)
    os.chmod(src, 0o755)
    vault.mkdir()
    shutil.chown(vault, "nobody", "nogroup")

    def as_nobody(*args):
        return h.run([setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                      holdfast.binary, "-r", vault, *args],
                     env=hf_env(holdfast, {"HOME": "/nonexistent"}), cwd=shm)

    as_nobody("init", *KDF).ok()
    res = as_nobody("backup", "src").expect(3)
    assert any(str(secret) in line for line in res.err_lines()), res.describe()
    assert "could not be read" in res.out + res.err
    snaps = snapshots(holdfast, vault)
    assert len(snaps) == 1 and snaps[0]["username"] == "nobody", snaps
    assert sorted(ls_nodes(holdfast, vault)) == ["/src", "/src/dir", "/src/dir/also.txt",
                                                 "/src/readable.txt"]
    # Everything in the vault belongs to nobody, and restic finds it sound.
    for dirpath, dirnames, filenames in os.walk(vault):
        for name in dirnames + filenames:
            assert os.lstat(os.path.join(dirpath, name)).st_uid != 0, \
                f"{os.path.join(dirpath, name)} is owned by root"
    res = as_nobody("--json", "backup", "src").expect(3)
    summary, errors = backup_json(res)
    assert [e["item"] for e in errors] == [str(secret)], errors  # the real, absolute path
    assert summary["files_failed"] == 1, summary
    restic_check(restic, vault)


# --------------------------------------------------------------------------------------------
# 4. progress


PROGRESS = re.compile(r"\[(?P<el>\d+\.\d+s|\d+m\d\ds|\d+h\d\dm\d\ds)\]\s+.*?\b\d+(/\d+)? files\b"
                      r".*?\s\d+(\.\d+)? (B|KiB|MiB|GiB|TiB)/s")
ELAPSED = re.compile(r"^\[(\d+\.\d+)s\]")


def test_progress_on_a_terminal(holdfast, big_tree, tmp_path):
    vault = tmp_path / "vault"
    init(holdfast, vault)
    paths = sorted(big_tree.iterdir())[:6]  # 150 MB on one CPU: a second or two
    master, slave = pty.openpty()
    try:
        proc = popen_holdfast(holdfast, "-r", vault, "backup", *paths, stderr=slave)
    finally:
        os.close(slave)
    tty = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the last writer closed the terminal
            break
        if not chunk:
            break
        tty += chunk
    os.close(master)
    out = proc.stdout.read().decode()
    assert proc.wait(timeout=120) == 0, tty
    assert re.search(r"snapshot [0-9a-f]{8} saved", out), out
    text = tty.decode("utf-8", "replace")
    lines = [seg.replace("\x1b[K", "").strip() for seg in text.split("\r")]
    progress = [line for line in lines if PROGRESS.search(line)]
    assert progress, f"no progress line on the terminal: {text!r}"
    assert any(re.search(r"ETA \d", line) for line in progress), \
        f"no ETA once the total is known: {progress}"
    assert any(re.search(r"\d+/6 files", line) for line in progress), progress
    elapsed = [float(m.group(1)) for m in map(ELAPSED.match, progress) if m]
    assert elapsed == sorted(elapsed) and elapsed[-1] > 0.2, progress
    # The summary is not on the terminal (stdout is the pipe).
    assert "saved" not in text


def test_no_progress_without_a_terminal(holdfast, big_tree, tmp_path):
    vault = tmp_path / "vault"
    init(holdfast, vault)
    paths = sorted(big_tree.iterdir())[:4]  # 100 MB on one CPU: several refresh periods
    proc = popen_holdfast(holdfast, "-r", vault, "backup", *paths)
    out, err = proc.communicate(timeout=300)
    res = h.Result(["holdfast", "backup"], proc.returncode, out, err).ok()
    assert re.search(r"snapshot [0-9a-f]{8} saved", res.out), res.describe()
    for junk in ("\r", "\x1b", "ETA", "/s"):
        assert junk not in res.err, f"progress text {junk!r} without a terminal:\n" + \
            res.describe()
    assert "\r" not in res.out and "\x1b" not in res.out


# --------------------------------------------------------------------------------------------
# 5. snapshot ID prefixes


@pytest.fixture(scope="module")
def prefix_vault(holdfast_bin):
    """(vault, snapshot IDs oldest first, a hex digit two of them start with); snapshot k has
    /src/n.txt saying "version k". Shared by the tests that only read it."""
    holdfast = h.Holdfast(Path(holdfast_bin).resolve())
    base = Path(tempfile.mkdtemp(prefix="holdfast-prefix-", dir=_fast_dir()))
    src, vault = base / "src", base / "vault"
    init(holdfast, vault)
    ids = []
    # Snapshots until two IDs share their first hex digit (at most 17 by pigeonhole).
    while not ids or max(collections.Counter(i[0] for i in ids).values()) < 2:
        write(src / "n.txt", f"version {len(ids)}\n")
        ids.append(backup(holdfast, vault, src)[0]["snapshot_id"])
        assert len(ids) <= 17
    digit = next(d for d, c in collections.Counter(i[0] for i in ids).items() if c >= 2)
    yield vault, ids, digit
    h.rmtree(base)


def test_id_prefixes_latest_ambiguous_unknown(holdfast, prefix_vault, tmp_path):
    vault, ids, digit = prefix_vault
    first, last = ids[0], ids[-1]
    assert sum(i.startswith(first[:8]) for i in ids) == 1
    unknown = next(p for p in (secrets.token_hex(4) for _ in range(100))
                   if not any(i.startswith(p) for i in ids))
    tree = {s["id"]: s["tree"] for s in snapshots(holdfast, vault)}

    # ls
    res = holdfast("ls", first[:8], repo=vault).ok()
    assert res.err.startswith(f"snapshot {first[:8]} of "), res.describe()
    assert res.out.splitlines() == ["/src", "/src/n.txt"]
    res = holdfast("ls", "latest", repo=vault).ok()
    assert res.err.startswith(f"snapshot {last[:8]} of "), res.describe()
    # cat snapshot
    assert holdfast("cat", "snapshot", first[:8], repo=vault).ok().json()["tree"] == tree[first]
    assert holdfast("cat", "snapshot", "latest", repo=vault).ok().json()["tree"] == tree[last]
    # restore
    holdfast("restore", first[:8], "--target", tmp_path / "t1", repo=vault).ok()
    assert (tmp_path / "t1/src/n.txt").read_text() == "version 0\n"
    holdfast("restore", "latest", "--target", tmp_path / "t2", repo=vault).ok()
    assert (tmp_path / "t2/src/n.txt").read_text() == f"version {len(ids) - 1}\n"
    # diff
    res = holdfast("diff", first[:8], "latest", repo=vault).ok()
    assert res.out.startswith(f"comparing snapshot {first[:8]} to {last[:8]}:")
    assert re.search(r"^M +/src/n\.txt$", res.out, re.M), res.out

    commands = [("ls", "{}"), ("cat", "snapshot", "{}"),
                ("restore", "{}", "--target", str(tmp_path / "t3")),
                ("diff", "{}", "latest"), ("diff", first[:8], "{}")]
    for prefix, why in ((digit, r"(ambiguous|\d+ snapshot IDs start with|more than one)"),
                        (unknown, r"(no snapshot|not found|unknown)")):
        for cmd in commands:
            args = [a.format(prefix) for a in cmd]
            res = holdfast(*args, repo=vault).expect(1)
            assert re.search(why, res.err, re.I) and f'"{prefix}"' in res.err, res.describe()
            assert res.out == "", res.describe()
    assert not (tmp_path / "t3").exists() or not any((tmp_path / "t3").iterdir())


def test_ambiguous_prefix_error_names_both(holdfast, prefix_vault):
    vault, ids, digit = prefix_vault
    res = holdfast("ls", digit, repo=vault).expect(1)
    for i in ids:
        if i.startswith(digit):
            assert i[:8] in res.err, res.describe()


# --------------------------------------------------------------------------------------------
# 6. passwords and vault locations


def test_password_sources_and_precedence(holdfast, tmp_path):
    vault, src = tmp_path / "vault", tmp_path / "src"
    write(src / "f", "x\n")
    init(holdfast, vault, password="right")
    sid = backup(holdfast, vault, src, password="right")[0]["snapshot_id"]
    good = write(tmp_path / "good.pw", "right\nsecond line is ignored\n")
    bad = write(tmp_path / "bad.pw", "wrong\n")

    def ids(*args, env=None):
        res = holdfast("--no-lock", "--json", "snapshots", *args, repo=vault, password=False,
                       env=env)
        return res, ([s["id"] for s in res.json()] if res.rc == 0 else None)

    opens = [
        ((), {"HOLDFAST_PASSWORD_FILE": str(good)}),
        (("--password-file", good), {}),
        ((), {"HOLDFAST_PASSWORD": "right"}),
        ((), {"RESTIC_PASSWORD_FILE": str(good)}),
        ((), {"RESTIC_PASSWORD": "right"}),
        # Precedence: --password-file, HOLDFAST_PASSWORD_FILE, HOLDFAST_PASSWORD,
        # RESTIC_PASSWORD_FILE, RESTIC_PASSWORD.
        (("--password-file", good), {"HOLDFAST_PASSWORD_FILE": str(bad),
                                     "HOLDFAST_PASSWORD": "wrong"}),
        ((), {"HOLDFAST_PASSWORD_FILE": str(good), "HOLDFAST_PASSWORD": "wrong"}),
        ((), {"HOLDFAST_PASSWORD": "right", "RESTIC_PASSWORD_FILE": str(bad)}),
        ((), {"RESTIC_PASSWORD_FILE": str(good), "RESTIC_PASSWORD": "wrong"}),
    ]
    for args, env in opens:
        res, got = ids(*args, env=env)
        assert got == [sid], f"{args} {env}:\n" + res.describe()
    refused = [
        (("--password-file", bad), {"HOLDFAST_PASSWORD": "right"}),
        ((), {"HOLDFAST_PASSWORD_FILE": str(bad), "HOLDFAST_PASSWORD": "right"}),
        ((), {"HOLDFAST_PASSWORD": "wrong", "RESTIC_PASSWORD": "right"}),
    ]
    for args, env in refused:
        res, _ = ids(*args, env=env)
        assert res.rc == 1 and re.search(r"password", res.err, re.I), \
            f"{args} {env}:\n" + res.describe()
    res, _ = ids("--password-file", tmp_path / "missing.pw")
    assert res.rc == 1 and str(tmp_path / "missing.pw") in res.err, res.describe()


def test_vault_location_from_environment(holdfast, tmp_path):
    vault, other, src = tmp_path / "vault", tmp_path / "other", tmp_path / "src"
    write(src / "f", "x\n")
    init(holdfast, vault)
    init(holdfast, other)
    # backup with the location from each variable, then see where the snapshots went.
    backup(holdfast, None, src, env={"RESTIC_REPOSITORY": str(vault)})
    backup(holdfast, None, src, env={"HOLDFAST_REPOSITORY": str(vault)})
    backup(holdfast, None, src, env={"HOLDFAST_REPOSITORY": str(other),
                                     "RESTIC_REPOSITORY": str(vault)})
    backup(holdfast, f"local:{other}", src, env={"HOLDFAST_REPOSITORY": str(vault)})
    assert len(snapshots(holdfast, vault)) == 2
    assert len(snapshots(holdfast, other)) == 2


def test_no_password_without_terminal(holdfast, tmp_path):
    vault = tmp_path / "vault"
    init(holdfast, vault)
    for args in (("snapshots",), ("backup", tmp_path), ("init",)):
        res = holdfast(*args, repo=vault if args[0] != "init" else tmp_path / "new",
                       password=False).expect(1)
        assert "HOLDFAST_PASSWORD" in res.err and "password" in res.err.lower(), \
            res.describe()
    assert not (tmp_path / "new").exists()
    assert lock_names(vault) == []


def test_no_vault_given_is_usage_error(holdfast, tmp_path):
    for args in (("snapshots",), ("backup", tmp_path), ("init",)):
        res = holdfast(*args).expect(2)
        assert re.search(r"no vault", res.err, re.I) and "-r" in res.err, res.describe()


def test_init_repository_version_1(holdfast, restic, tmp_path, target_dir):
    vault, src = tmp_path / "vault", tmp_path / "src"
    small_tree(src)
    res = holdfast("init", "--repository-version", "1", *KDF, repo=vault).ok()
    assert "version 1" in res.out + res.err
    assert holdfast("cat", "config", repo=vault).ok().json()["version"] == 1
    assert restic("cat", "config", repo=vault).ok().json()["version"] == 1
    summary, _ = backup(holdfast, vault, src)
    r_snaps = restic("--json", "snapshots", repo=vault).ok().json()
    assert [s["id"] for s in r_snaps] == [summary["snapshot_id"]]
    restic_check(restic, vault)
    restic("restore", "latest", "--target", target_dir, repo=vault).ok()
    h.assert_trees_equal(src, target_dir / "src")
    # Compression needs a v2 vault.
    res = holdfast("backup", src, "--compression", "max", repo=vault).expect(2)
    assert "version" in res.err


# --------------------------------------------------------------------------------------------
# 7. restore


@pytest.fixture
def restore_vault(holdfast, tmp_path):
    """(vault, src, snapshot ID) of small_tree plus a folder with no .log file."""
    src, vault = tmp_path / "src", tmp_path / "vault"
    small_tree(src)
    write(src / "other/o.txt", "no log here\n")
    os.chmod(src / "top.txt", 0o640)
    init(holdfast, vault)
    return vault, src, backup(holdfast, vault, src)[0]["snapshot_id"]


def test_restore_include_selects_matching_files(holdfast, restore_vault, target_dir):
    vault, src, sid = restore_vault
    holdfast("restore", sid[:8], "--target", target_dir, "--include", "*.log",
             repo=vault).ok()
    assert files_under(target_dir) == ["src/docs/sub/c.log", "src/logs/x.log"]
    assert (target_dir / "src/logs/x.log").read_text() == "x-ray log\n"
    # A pattern with '/' selects a folder with all of its content.
    t2 = target_dir.parent / "t2"
    holdfast("restore", "latest", "--target", t2, "--include", "/src/docs/sub",
             repo=vault).ok()
    assert files_under(t2) == ["src/docs/sub/b.txt", "src/docs/sub/c.log"]


def test_restore_include_creates_only_folders_leading_to_matches(holdfast, restore_vault,
                                                                  target_dir):
    vault, src, sid = restore_vault
    holdfast("restore", sid, "--target", target_dir, "--include", "*.log", repo=vault).ok()
    assert all_under(target_dir) == ["src", "src/docs", "src/docs/sub", "src/docs/sub/c.log",
                                     "src/logs", "src/logs/x.log"]


def test_restore_exclude(holdfast, restore_vault, target_dir):
    vault, src, sid = restore_vault
    holdfast("restore", sid, "--target", target_dir, "--exclude", "*.log", "--exclude", "sub",
             "--exclude", "/src/other", repo=vault).ok()
    assert all_under(target_dir) == ["src", "src/data.bin", "src/docs", "src/docs/a.txt",
                                     "src/logs", "src/top.txt"]
    h.assert_trees_equal(src, target_dir / "src",
                         ignore=["docs/sub", "logs/x.log", "other"], dir_mtimes=False)


def test_restore_subfolder(holdfast, restore_vault, target_dir):
    vault, src, sid = restore_vault
    res = holdfast("restore", f"{sid[:8]}:/src/docs", "--target", target_dir,
                   repo=vault).ok()
    assert sid[:8] in res.out + res.err
    assert all_under(target_dir) == ["a.txt", "sub", "sub/b.txt", "sub/c.log"]
    # The target folder itself is the restore's (created 0700), not the snapshot folder.
    h.assert_trees_equal(src / "docs", target_dir, ignore=[""])
    t2 = target_dir.parent / "t2"
    holdfast("restore", "latest:src/docs/sub", "--target", t2, repo=vault).ok()
    assert all_under(t2) == ["b.txt", "c.log"]
    res = holdfast("restore", "latest:/src/nope", "--target", target_dir.parent / "t3",
                   repo=vault)
    assert res.rc == 1 and "/src/nope" in res.err, res.describe()


def test_restore_verify(holdfast, restore_vault, target_dir):
    vault, src, sid = restore_vault
    res = holdfast("restore", "latest", "--target", target_dir, "--verify", repo=vault).ok()
    m = re.search(r"verified (\d+) files?: (\d+) failed", res.out + res.err)
    assert m, res.describe()
    assert (int(m.group(1)), int(m.group(2))) == (7, 0)
    h.assert_trees_equal(src, target_dir / "src")


def test_restore_into_non_empty_target_and_delete(holdfast, restore_vault, target_dir):
    vault, src, sid = restore_vault
    t = target_dir / "src"
    write(t / "top.txt", "an older, longer version of top\n", 0o600)
    write(t / "docs/a.txt", "old a\n", 0o755)
    write(t / "extra.txt", "not in the snapshot\n")
    write(t / "docs/sub/extra2.txt", "not in the snapshot either\n")
    (t / "empty-extra").mkdir()
    write(t / "full-extra/f.txt", "a folder the snapshot does not have\n")
    holdfast("restore", sid, "--target", target_dir, repo=vault).ok()
    # Snapshot files replaced (content and mode), the rest kept.
    assert (t / "top.txt").read_text() == "top\n"
    assert stat.S_IMODE(os.stat(t / "top.txt").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(t / "docs/a.txt").st_mode) == 0o644
    h.assert_trees_equal(src, t, ignore=["extra.txt", "docs/sub/extra2.txt", "empty-extra",
                                         "full-extra"], dir_mtimes=False)
    assert (t / "extra.txt").read_text() == "not in the snapshot\n"
    assert (t / "docs/sub/extra2.txt").exists() and (t / "empty-extra").is_dir()
    assert not [p for p in t.rglob("*.holdfast-partial")]

    res = holdfast("restore", sid, "--target", target_dir, "--delete", repo=vault).ok()
    assert not (t / "extra.txt").exists() and not (t / "docs/sub/extra2.txt").exists()
    assert not (t / "empty-extra").exists()
    # A folder that is not empty is never removed whole; it is named instead.
    assert "full-extra" in res.err, res.describe()
    h.assert_trees_equal(src, t, ignore=["full-extra"])


def test_restore_over_other_kinds(holdfast, tmp_path, target_dir):
    """Names the target already holds with another kind of item: a file or a symlink where
    the snapshot has a folder, a file or another symlink where it has a symlink, a file where
    it has a fifo, are replaced; a folder where it has a symlink is kept and reported."""
    src, vault = tmp_path / "src", tmp_path / "vault"
    write(src / "d/f.txt", "in d\n")
    write(src / "e/g.txt", "in e\n")
    for name in ("l1", "l2", "l3"):
        os.symlink(f"target-of-{name}", src / name)
    os.mkfifo(src / "fifo")
    init(holdfast, vault)
    backup(holdfast, vault, src)
    t = target_dir / "src"
    write(t / "d", "a file where a folder goes\n")
    t.joinpath("elsewhere").mkdir()
    os.symlink("elsewhere", t / "e")
    write(t / "l1", "a file where a symlink goes\n")
    os.symlink("somewhere-else", t / "l2")
    (t / "l3").mkdir()
    write(t / "fifo", "a file where a fifo goes\n")
    res = holdfast("restore", "latest", "--target", target_dir, repo=vault)
    assert res.rc == 3, res.describe()
    assert (t / "d").is_dir() and (t / "d/f.txt").read_text() == "in d\n"
    assert not (t / "e").is_symlink() and (t / "e/g.txt").read_text() == "in e\n"
    assert not (t / "elsewhere/g.txt").exists()
    assert os.readlink(t / "l1") == "target-of-l1"
    assert os.readlink(t / "l2") == "target-of-l2"
    assert stat.S_ISFIFO(os.lstat(t / "fifo").st_mode)
    assert (t / "l3").is_dir() and not (t / "l3").is_symlink()
    assert "/src/l3" in res.err and "cannot create" in res.err, res.describe()


def test_restore_sparse_file(holdfast, tmp_path, target_dir):
    src, vault = tmp_path / "src", tmp_path / "vault"
    size = 64 * h.MIB
    p = src / "sparse.img"
    p.parent.mkdir(parents=True)
    with open(p, "wb") as f:
        f.seek(size // 2)
        f.write(os.urandom(4096))
        f.truncate(size)
    init(holdfast, vault)
    backup(holdfast, vault, src)
    holdfast("restore", "latest", "--target", target_dir, repo=vault).ok()
    r = target_dir / "src/sparse.img"
    st = os.stat(r)
    assert st.st_size == size
    assert st.st_blocks * 512 <= 2 * h.MIB, f"{st.st_blocks * 512} bytes allocated"
    assert sha256(r) == sha256(p)


def test_restore_hard_links(holdfast, tmp_path, target_dir):
    src, vault = tmp_path / "src", tmp_path / "vault"
    a = write(src / "a", "linked\n")
    os.link(a, src / "b")
    (src / "sub").mkdir()
    os.link(a, src / "sub/c")
    write(src / "single", "linked\n")  # same content, not a link
    init(holdfast, vault)
    backup(holdfast, vault, src)
    holdfast("restore", "latest", "--target", target_dir, "--verify", repo=vault).ok()
    t = target_dir / "src"
    inos = {os.stat(t / n).st_ino for n in ("a", "b", "sub/c")}
    assert len(inos) == 1 and os.stat(t / "a").st_nlink == 3
    assert os.stat(t / "single").st_ino not in inos and os.stat(t / "single").st_nlink == 1
    h.assert_trees_equal(src, t)


def test_restore_damaged_blob_keeps_old_file(holdfast, restic, tmp_path, target_dir):
    src, vault = tmp_path / "src", tmp_path / "vault"
    big = write(src / "big.bin", random.Random(5).randbytes(3_000_000))
    write(src / "small.txt", "small and sound\n")
    init(holdfast, vault)
    backup(holdfast, vault, src)
    # The target already has older versions of both files.
    write(target_dir / "src/big.bin", "older big\n")
    write(target_dir / "src/small.txt", "older small\n")
    # Flip a byte inside the biggest data blob (only big.bin has blobs that size).
    blobs = []
    for idx in restic("list", "index", repo=vault).ok().out.split():
        for pk in restic("cat", "index", idx, repo=vault).ok().json()["packs"]:
            blobs += [(b["length"], pk["id"], b["offset"], b.get("uncompressed_length"))
                      for b in pk["blobs"] if b["type"] == "data"]
    length, pack, offset, plain = max(blobs)
    plain = plain or length - 32  # restic's IV and MAC around the (plain) blob
    assert length > 100_000
    damage_blob(vault, pack, offset, length)

    res = holdfast("restore", "latest", "--target", target_dir, repo=vault).expect(3)
    t = target_dir / "src"
    assert (t / "big.bin").read_text() == "older big\n", "the old file was replaced"
    partial = t / "big.bin.holdfast-partial"
    assert partial.exists(), all_under(target_dir)
    assert "big.bin.holdfast-partial" in res.err, res.describe()
    assert any("/src/big.bin" in line for line in res.err_lines())
    assert (t / "small.txt").read_text() == "small and sound\n"
    # What could be read is in the partial file: only the damaged blob's bytes are wrong
    # (big.bin may also be one single blob, when the chunker found no cut in it).
    data, want = partial.read_bytes(), big.read_bytes()
    assert len(data) == len(want) and data != want
    diff = [i for i in range(0, len(want), 4096) if data[i:i + 4096] != want[i:i + 4096]]
    first = next(i for i in range(diff[0], diff[0] + 4096) if data[i] != want[i])
    last = next(i for i in range(min(diff[-1] + 4095, len(want) - 1), diff[-1] - 1, -1)
                if data[i] != want[i])
    assert last - first < plain, \
        f"bytes {first}..{last} differ, more than the damaged blob's {plain} bytes"


def large_file(rng, parts):
    """Bytes made of (kind, MiB) parts: random, text (compressible) or zeros."""
    words = [rng.randbytes(6).hex() for _ in range(512)]
    out = []
    for kind, mib in parts:
        n = mib * h.MIB
        if kind == "random":
            out.append(rng.randbytes(n))
        elif kind == "zeros":
            out.append(bytes(n))
        else:
            text = " ".join(rng.choice(words) for _ in range(n // 12 + 1)).encode()
            out.append(text[:n])
    return b"".join(out)


def file_blobs(restic, vault, path):
    """[(blob id, pack, offset in the pack, encrypted length, plain length)] of a file of the
    latest snapshot, in file order (from restic's view of the trees and the index)."""
    index = {}
    for idx in restic("list", "index", repo=vault).ok().out.split():
        for pk in restic("cat", "index", idx, repo=vault).ok().json()["packs"]:
            for b in pk["blobs"]:
                index[b["id"]] = (pk["id"], b["offset"], b["length"],
                                  b.get("uncompressed_length") or b["length"] - 32)
    tree = restic("snapshots", "--json", "latest", repo=vault).ok().json()[-1]["tree"]
    *folders, name = path.strip("/").split("/")
    for folder in folders:
        nodes = restic("cat", "blob", tree, repo=vault).ok().json()["nodes"]
        tree = next(n["subtree"] for n in nodes if n["name"] == folder)
    nodes = restic("cat", "blob", tree, repo=vault).ok().json()["nodes"]
    content = next(n["content"] for n in nodes if n["name"] == name)
    return [(b, *index[b]) for b in content]


def test_restore_large_files_in_ranges(holdfast, restic, tmp_path, target_dir):
    """Files large enough to be written in ranges by several workers at once: content, holes
    (zeros inside and at the end), a hard link, metadata, --verify."""
    src, vault = tmp_path / "src", tmp_path / "vault"
    rng = random.Random(11)
    big = write(src / "big.img", large_file(rng, [("random", 6), ("text", 5), ("zeros", 20),
                                                  ("random", 3), ("text", 4), ("zeros", 20)]),
                0o640, mtime=1_650_000_000)
    os.link(big, src / "big.link")
    write(src / "second.bin", large_file(rng, [("text", 7), ("random", 12)]), 0o600)
    write(src / "small.txt", "small\n")
    init(holdfast, vault)
    h.pin_chunker(restic, vault, holdfast.password)
    backup(holdfast, vault, src)
    assert len(file_blobs(restic, vault, "/src/big.img")) >= 8

    for i, extra in enumerate(([], ["--verify"])):
        target = target_dir / str(i)
        res = holdfast("restore", "latest", "--target", target, *extra, repo=vault).ok()
        t = target / "src"
        h.assert_trees_equal(src, t)
        assert sha256(t / "big.img") == sha256(big)
        assert sha256(t / "second.bin") == sha256(src / "second.bin")
        assert os.stat(t / "big.img").st_ino == os.stat(t / "big.link").st_ino
        st = os.stat(t / "big.img")
        assert st.st_size == 58 * h.MIB
        # 40 MiB of zeros, cut into blobs of zeros except where they meet data.
        assert st.st_blocks * 512 <= 34 * h.MIB, f"{st.st_blocks * 512} bytes allocated"
        assert not [p for p in target.rglob("*.holdfast*")], all_under(target)
        if extra:
            m = re.search(r"verified (\d+) files?: (\d+) failed", res.out + res.err)
            assert m and (int(m.group(1)), int(m.group(2))) == (3, 0), res.describe()


def test_file_longer_than_its_stat_size(holdfast, restic, tmp_path, target_dir):
    """A file that reads longer than fstat said (one that grows while read; here /proc/version,
    whose size reads 0): the snapshot holds every byte read, and its node's size is what was
    read, as restic records it, so restore writes it whole and finds nothing amiss."""
    want = Path("/proc/version").read_bytes()
    assert want and os.stat("/proc/version").st_size == 0
    vault = tmp_path / "vault"
    init(holdfast, vault)
    summary, errors = backup(holdfast, vault, "/proc/version")
    assert summary["files_new"] == 1 and not errors, summary
    (node,) = [n for n in restic("ls", "--json", "latest", repo=vault,
                                 password=holdfast.password).ok().jsonl()
               if n.get("path") == "/proc/version"]
    assert node["size"] == len(want), node
    res = holdfast("restore", "latest", "--target", target_dir, repo=vault).ok()
    assert (target_dir / "proc" / "version").read_bytes() == want
    assert "snapshot says" not in res.err, res.describe()


def test_file_growing_while_read(holdfast, restic, tmp_path, target_dir):
    """A log appended to, faster than it can be read, once the backup has begun reading it:
    the backup reads up to the size the file had when opened (read to its end, such a file would
    be chased for as long as it grows), reports the change, and the snapshot holds exactly those
    bytes, a prefix of the file, as its node's size says (restic's ls agrees); restore writes it
    whole without a size warning."""
    src, vault = tmp_path / "src", tmp_path / "vault"
    log = src / "grow.log"
    block = 64 * 1024
    start = 32 * 1024 * 1024 // block  # 32 MiB at first: many reads, many chunks

    def piece(i):
        return (f"{i:012d}\n".encode() * (block // 13 + 1))[:block]

    write(log, b"".join(piece(i) for i in range(start)))
    init(holdfast, vault)
    libc = ctypes.CDLL(None, use_errno=True)
    ino = libc.inotify_init1(os.O_CLOEXEC)
    assert ino >= 0 and libc.inotify_add_watch(ino, bytes(log), 0x1) >= 0  # IN_ACCESS
    stop = threading.Event()

    def grow():
        # From the second read of the file on (the first may be the readers' one-byte page
        # cache probe, which comes before the fstat that sets the size to read; inotify merges
        # an unread event with the next identical one, so a later read may be the one), then
        # unthrottled, up to 256 MiB more. An IN_ACCESS event without a name is 16 bytes.
        seen = 0
        while seen < 2 and not stop.is_set():
            seen += len(os.read(ino, 4096)) // 16
        fd = os.open(log, os.O_WRONLY | os.O_APPEND)
        try:
            for i in range(start, start + 4096):
                if stop.is_set():
                    break
                os.write(fd, piece(i))
        finally:
            os.close(fd)
    t = threading.Thread(target=grow)
    t.start()
    try:
        summary, errors = backup(holdfast, vault, src)
    finally:
        stop.set()
        while t.is_alive():  # wakes the writer should fewer reads have come
            with open(log, "rb") as f:
                f.read(1)
            t.join(0.1)
        os.close(ino)
    assert summary["files_new"] == 1, summary
    assert any("changed while being read" in json.dumps(e) for e in errors), errors
    final = log.read_bytes()
    (node,) = [n for n in restic("ls", "--json", "latest", repo=vault,
                                 password=holdfast.password).ok().jsonl()
               if n.get("path") == "/src/grow.log"]
    res = holdfast("restore", "latest", "--target", target_dir, repo=vault).ok()
    got = (target_dir / "src" / "grow.log").read_bytes()
    assert node["size"] == len(got) == start * block < len(final), \
        (node["size"], len(got), len(final))
    assert final[:len(got)] == got, "the snapshot is not a prefix of the file"
    assert "snapshot says" not in res.err, res.describe()


def test_restore_small_files_with_a_blob_of_the_wrong_content(holdfast, restic, tmp_path,
                                                              target_dir):
    """Small files are restored in batches (up to 64 files or 4 MiB) whose blobs are hashed
    together. One blob in the middle of such a batch decrypts (its MAC is right) but holds other
    bytes than its ID says: that file must be reported and not restored under its name; the
    others come back whole."""
    src, vault = tmp_path / "src", tmp_path / "vault"
    rnd = random.Random(11)
    # Random content: stored uncompressed, so a blob's plaintext can be swapped in place.
    files = {f"f{i:02d}": rnd.randbytes(100 + 97 * i) for i in range(40)}
    # One blob each (under the chunker's 512 KiB minimum), more than one batch holds.
    files.update({f"g{i:02d}": rnd.randbytes(520_000) for i in range(24)})
    for name, data in files.items():
        write(src / name, data)
    init(holdfast, vault)
    backup(holdfast, vault, src)
    masterkey = restic("cat", "masterkey", repo=vault, password=holdfast.password).ok().json()
    victim = "f21"
    bid = hashlib.sha256(files[victim]).hexdigest()
    (pack, offset, length), = [(pk["id"], b["offset"], b["length"])
                               for idx in restic("list", "index", repo=vault).ok().out.split()
                               for pk in restic("cat", "index", idx, repo=vault).ok().json()["packs"]
                               for b in pk["blobs"] if b["id"] == bid]
    assert length == len(files[victim]) + 32, "the blob was expected uncompressed"
    other = h.restic_seal(masterkey, rnd.randbytes(len(files[victim])))
    path = vault / "data" / pack[:2] / pack
    os.chmod(path, 0o600)
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(other)

    res = holdfast("restore", "latest", "--target", target_dir, repo=vault).expect(3)
    t = target_dir / "src"
    assert not (t / victim).exists(), all_under(target_dir)
    assert any(f"/src/{victim}" in line and "is damaged (MAC or hash mismatch)" in line
               for line in res.err_lines()), res.describe()
    for name, data in files.items():
        if name != victim:
            assert (t / name).read_bytes() == data, name
    assert sum(1 for line in res.err_lines() if "is damaged" in line) == 1, res.describe()


@pytest.mark.parametrize("damage", ["mac", "content"])
@pytest.mark.parametrize("layout", ["ranges", "whole"])
def test_restore_damaged_blob_in_a_large_file(holdfast, restic, tmp_path, target_dir, damage,
                                              layout):
    """A damaged blob in the middle of a file of many blobs, written in ranges (32 MiB) or by
    one worker (7 MiB, under the 8 MiB from which files are split): the other blobs are
    written, the file is kept as NAME.holdfast-partial (never under its name), an older
    version stays, the run ends incomplete. The damage is a flipped bit (the MAC fails), or
    other content sealed with the vault's key (only the blob's SHA-256, checked along with its
    neighbours', can tell)."""
    src, vault = tmp_path / "src", tmp_path / "vault"
    rng = random.Random(12)
    parts = [("random", 20), ("text", 12)] if layout == "ranges" else [("random", 6), ("text", 1)]
    big = write(src / "big.bin", large_file(rng, parts))
    write(src / "small.txt", "small and sound\n")
    init(holdfast, vault)
    h.pin_chunker(restic, vault, holdfast.password)  # the same blobs on every run
    backup(holdfast, vault, src)
    blobs = file_blobs(restic, vault, "/src/big.bin")
    assert len(blobs) >= (8 if layout == "ranges" else 3), blobs
    # In the random part: stored uncompressed, so other content can take its place.
    stored = [i for i, b in enumerate(blobs) if b[3] == b[4] + 32]
    assert len(stored) >= (4 if layout == "ranges" else 2), blobs
    k = stored[len(stored) // 2]
    _, pack, offset, length, plain = blobs[k]
    at = sum(b[4] for b in blobs[:k])  # where the damaged blob goes in the file
    if damage == "mac":
        damage_blob(vault, pack, offset, length)
    else:
        masterkey = restic("cat", "masterkey", repo=vault,
                           password=holdfast.password).ok().json()
        path = vault / "data" / pack[:2] / pack
        os.chmod(path, 0o600)
        with open(path, "r+b") as f:
            f.seek(offset)
            f.write(h.restic_seal(masterkey, rng.randbytes(plain)))

    old = target_dir / "old"
    write(old / "src/big.bin", "older big\n")
    fresh = target_dir / "fresh"
    want = big.read_bytes()
    for target in (old, fresh):
        res = holdfast("restore", "latest", "--target", target, repo=vault).expect(3)
        t = target / "src"
        assert f"at offset {at} " in res.err, res.describe()
        assert "big.bin.holdfast-partial" in res.err, res.describe()
        assert (t / "small.txt").read_text() == "small and sound\n"
        if target == old:
            assert (t / "big.bin").read_text() == "older big\n", "the old file was replaced"
        else:
            assert not (t / "big.bin").exists(), all_under(target)
        assert not [p for p in t.iterdir() if ".holdfast-" in p.name and
                    not p.name.endswith(".holdfast-partial")], all_under(target)
        data = (t / "big.bin.holdfast-partial").read_bytes()
        assert len(data) == len(want)
        # Everything but the damaged blob's bytes (a hole) is what was backed up.
        assert data[:at] == want[:at] and data[at + plain:] == want[at + plain:]
        assert data[at:at + plain] == bytes(plain)


@pytest.mark.root
def test_restore_large_file_disk_full(holdfast, tmp_path, shm):
    """A write of a file being written in ranges fails (no space): the file is reported and
    removed, nothing is left under its name or a temporary one, an older version stays."""
    src, vault = tmp_path / "src", tmp_path / "vault"
    rng = random.Random(13)
    write(src / "big.bin", large_file(rng, [("random", 24), ("text", 8)]))
    write(src / "small.txt", "small\n")
    init(holdfast, vault)
    backup(holdfast, vault, src)
    with mounted_tmpfs(shm / "small", "20m") as mnt:
        write(mnt / "old/src/big.bin", "older big\n")
        for target in (mnt / "fresh", mnt / "old"):
            res = holdfast("restore", "latest", "--target", target, repo=vault).expect(3)
            assert re.search(r"/src/big.bin.*no space", res.err, re.I), res.describe()
            t = target / "src"
            assert (t / "small.txt").read_text() == "small\n"
            assert sorted(p.name for p in t.iterdir()) == (
                ["small.txt"] if target.name == "fresh" else ["big.bin", "small.txt"])
        assert (mnt / "old/src/big.bin").read_text() == "older big\n"


# --------------------------------------------------------------------------------------------
# 8. faults


@pytest.mark.root
def test_disk_full_then_next_backup_reuses_packs(holdfast, restic, shm):
    src = shm / "src"
    rng = random.Random(7)
    for i in range(6):
        write(src / f"f{i}", rng.randbytes(10_000_000))
    with mounted_tmpfs(shm / "small", "30m") as mnt:
        vault = mnt / "vault"
        init(holdfast, vault)
        res = holdfast("backup", src, repo=vault).expect(1)
        assert re.search(r"no space", res.err, re.I), res.describe()
        assert re.search(r"no snapshot was saved", res.err), res.describe()
        assert lock_names(vault) == [], os.listdir(vault / "locks")
        assert not os.listdir(vault / "snapshots")
        stored = real_packs(vault)
        assert stored, "not even one pack fit"
        restic_check(restic, vault)
        # Which files are (partly) stored already? restic's dry run on a copy of the vault with
        # every pack indexed says what each would add. (A copy: holdfast may not have managed
        # to write its index at the failure, see the report, and must then find the stored
        # packs by their headers itself.)
        probe = shm / "probe"
        shutil.copytree(vault, probe)
        restic("rebuild-index", repo=probe).ok()
        dry = restic("--json", "-vv", "backup", "--dry-run", "src", repo=probe, cwd=shm).ok()
        new = {os.path.basename(d["item"]): d["data_size"] for d in dry.jsonl()
               if d.get("message_type") == "verbose_status" and d["item"].startswith("/src/f")}
        assert len(new) == 6 and sum(new.values()) < 60_000_000, new
        # Keep the two files most of which is stored: what was stored is found again and not
        # written twice.
        keep = sorted(new, key=new.get)[:2]
        for name in set(new) - set(keep):
            os.unlink(src / name)
        summary, errors = backup(holdfast, vault, src)
        assert errors == [] and summary["files_new"] == 2, summary
        assert summary["data_added"] < 20_000_000 - 1_000_000, summary
        # As much as restic predicted, plus the trees.
        assert summary["data_added"] <= sum(new[k] for k in keep) + 4096, (summary, new)
        assert stored <= real_packs(vault)
        assert lock_names(vault) == []
        # Every pack is indexed now, and sound.
        res = restic_check(restic, vault)
        assert "not referenced in any index" not in res.out, res.describe()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "sigint"])
def test_backup_killed_midway(holdfast, restic, big_tree, tmp_path, scratch, sig):
    vault = tmp_path / "vault"
    init(holdfast, vault)
    proc = popen_holdfast(holdfast, "-r", vault, "backup", "--pack-size", "4", big_tree)
    try:
        wait_until(lambda: real_packs(vault), proc, "a pack was stored")
        assert proc.poll() is None, "the backup ended before it could be interrupted"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = err.decode(errors="replace")
    assert not os.listdir(vault / "snapshots"), "an interrupted backup saved a snapshot"
    packs = real_packs(vault)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        assert lock_names(vault), "the killed backup left no lock (did it lock at all?)"
        res = restic("unlock", repo=vault).ok()
        assert lock_names(vault) == [], res.describe()
    else:
        assert proc.returncode not in (0, -signal.SIGINT), (proc.returncode, err)
        assert proc.returncode == 1, (proc.returncode, err)
        assert re.search(r"interrupted", err, re.I), err
        assert lock_names(vault) == []
        # The packs stored before the interruption are in the index.
        indexed = set()
        for idx in restic("list", "index", repo=vault).ok().out.split():
            indexed |= {p["id"] for p in restic("cat", "index", idx, repo=vault).ok()
                        .json()["packs"]}
        assert packs <= indexed, packs - indexed
        holdfast("check", repo=vault).ok()
    restic_check(restic, vault)

    summary, errors = backup(holdfast, vault, big_tree)
    assert errors == [] and summary["files_new"] == BIG_FILES, summary
    if sig == signal.SIGINT:
        assert summary["data_added"] < BIG_FILES * BIG_FILE_SIZE - 3 * h.MIB, summary
    assert lock_names(vault) == []
    restic_check(restic, vault)
    holdfast("restore", "latest", "--target", scratch / "r", repo=vault).ok()
    h.assert_trees_equal(big_tree, scratch / "r" / big_tree.name)


# --------------------------------------------------------------------------------------------
# 9. locks shared with restic


def test_restic_prune_refused_while_holdfast_backs_up(holdfast, restic, big_tree, tmp_path):
    vault = tmp_path / "vault"
    init(holdfast, vault)
    proc = popen_holdfast(holdfast, "--json", "-r", vault, "backup", big_tree)
    try:
        wait_until(lambda: lock_names(vault), proc, "holdfast locked the vault")
        res = restic("prune", repo=vault)
        still_running = proc.poll() is None
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert res.rc != 0 and "locked" in res.out + res.err, \
        res.describe() + f"\n(holdfast still running when prune returned: {still_running})"
    assert proc.returncode == 0, err.decode(errors="replace")
    summary = backup_json(h.Result(["holdfast"], proc.returncode, out, err))[0]
    assert [s["id"] for s in snapshots(holdfast, vault)] == [summary["snapshot_id"]]
    assert lock_names(vault) == []
    restic_check(restic, vault)


def test_restic_lock_refuses_check_allows_backup(holdfast, restic, tmp_path):
    src, vault = tmp_path / "src", tmp_path / "vault"
    small_tree(src)
    init(holdfast, vault)
    with restic_holding_lock(restic, vault) as proc:
        res = holdfast("check", repo=vault).expect(1)
        assert "locked" in res.err and f"PID {proc.pid}" in res.err, res.describe()
        summary, _ = backup(holdfast, vault, src)
        assert len(lock_names(vault)) == 1, "restic's lock is gone or holdfast's is left"
    assert summary["snapshot_id"] in {s["id"] for s in snapshots(holdfast, vault)}
    assert lock_names(vault) == []
    holdfast("check", repo=vault).ok()
    restic_check(restic, vault)


def test_lock_second_look_on_a_local_vault(holdfast, tmp_path):
    """The lock protocol looks for competing locks again after saving its own. On a local
    filesystem a listing shows every lock saved before it, so that look needs none of the
    200 ms pause restic makes on every backend (a vault behind a server keeps it:
    test_serve.py, client_round_trip). The debug log says which was done."""
    src, vault = tmp_path / "src", tmp_path / "vault"
    small_tree(src)
    init(holdfast, vault)
    backup(holdfast, vault, src)
    for argv in (["restore", "latest", "--target", tmp_path / "t"], ["check"]):
        res = holdfast("-vv", *argv, repo=vault).ok()
        assert "lock: second look at once (the vault is on a local filesystem)" in res.err, \
            res.describe()
        assert "protocol's pause" not in res.err, res.describe()
    assert lock_names(vault) == []


def test_two_exclusive_lockers_never_both_hold(holdfast, tmp_path):
    """Without the pause (above), two clients that lock at the same moment must still not both
    go on: each looks again after its own lock is saved, so the later one sees the earlier one's.
    Two `key passwd` (exclusive locks) are released together, sixty times, by writing their
    passwords into a FIFO each; each that gets the lock then waits for its new password, read
    from another FIFO, while holding it. Never may both be waiting there at once; one that
    backs off names the other's lock."""
    ROUNDS = 60
    vault = tmp_path / "vault"
    init(holdfast, vault)
    pw = (holdfast.password + "\n").encode()
    env = h.clean_env({})
    env.pop("HOLDFAST_PASSWORD", None)
    held_by_one = 0
    for rnd in range(ROUNDS):
        fifos = []
        for i in range(2):
            pair = (tmp_path / f"pw{rnd}-{i}", tmp_path / f"new{rnd}-{i}")
            for f in pair:
                os.mkfifo(f)
            fifos.append(pair)
        procs = [subprocess.Popen([os.fspath(holdfast.binary), "-r", os.fspath(vault),
                                   "--password-file", os.fspath(p), "key", "passwd",
                                   "--new-password-file", os.fspath(n), *KDF],
                                  env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE) for p, n in fifos]
        holding = {}
        try:
            # Opening a FIFO to write waits for its reader: both are at their password file.
            ends = [open(p, "wb") for p, _ in fifos]
            for e in ends:
                e.write(pw)
            for e in ends:
                e.close()
            deadline = time.monotonic() + 60
            # Until each has either ended or holds its lock (reads its new password: a FIFO
            # opens to write without waiting only when it has a reader).
            while any(pr.poll() is None and i not in holding for i, pr in enumerate(procs)):
                for i, pr in enumerate(procs):
                    if i in holding or pr.poll() is not None:
                        continue
                    try:
                        holding[i] = os.open(fifos[i][1], os.O_WRONLY | os.O_NONBLOCK)
                    except OSError as e:
                        assert e.errno == errno.ENXIO, e
                assert time.monotonic() < deadline, "neither ended nor took its lock in 60 s"
                time.sleep(0.002)
            assert len(holding) < 2, f"round {rnd}: both hold an exclusive lock at once"
            for i, pr in enumerate(procs):
                if i in holding:
                    continue
                err = pr.communicate(timeout=60)[1].decode(errors="replace")
                assert pr.returncode == 1, err
                assert "the vault is locked exclusively by PID" in err, err
            held_by_one += len(holding)
        finally:
            for i, fd in holding.items():
                os.write(fd, pw)
                os.close(fd)
            ends_of = [pr.communicate(timeout=60) for pr in procs]
        for i in holding:
            assert procs[i].returncode == 0, ends_of[i][1].decode(errors="replace")
    # Each round, one of the two changed the password (or both backed off, which is safe).
    assert held_by_one >= ROUNDS // 2, held_by_one
    assert lock_names(vault) == []
    assert len(list((vault / "keys").iterdir())) == 1


F_SETLEASE, F_GETLEASE = 1024, 1025  # <linux/fcntl.h>


@pytest.mark.parametrize("command", ["restore", "check"])
def test_confirms_its_lock_before_working(holdfast, restic, tmp_path, command):
    """restore and check take their lock, then load the index while the lock protocol waits for
    a second look; that look must come before restore writes anything and before check shows
    anything of its pack phases (it may read packs meanwhile, holding what it would say). Here
    the index file is held with a write lease, so the open of it blocks; meanwhile an exclusive
    lock of another host appears. The command must then stop with the locker named: restore
    with an empty target, check without a word of its pack phases."""
    src, vault, target = tmp_path / "src", tmp_path / "vault", tmp_path / "target"
    small_tree(src)
    init(holdfast, vault)
    backup(holdfast, vault, src)
    masterkey = restic("cat", "masterkey", repo=vault, password=holdfast.password).ok().json()
    (index,) = (vault / "index").iterdir()
    argv = {"restore": ["restore", "latest", "--target", target],
            "check": ["check", "--read-data"]}[command]
    old_handler = signal.signal(signal.SIGIO, signal.SIG_IGN)  # the lease-break notice
    fd = os.open(index, os.O_RDONLY)
    proc = None
    try:
        fcntl.fcntl(fd, F_SETLEASE, fcntl.F_WRLCK)
        proc = popen_holdfast(holdfast, "-r", vault, *argv)
        wait_until(lambda: lock_names(vault), proc, f"{command} wrote its lock")
        # A reader opening the file breaks the write lease down to a read lease.
        wait_until(lambda: fcntl.fcntl(fd, F_GETLEASE) == fcntl.F_RDLCK, proc,
                   f"{command} opened the index")
        assert not target.exists() or not any(target.iterdir())
        lock = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
                           "exclusive": True, "hostname": "other-host", "username": "prune",
                           "pid": 4242, "uid": 0, "gid": 0}).encode()
        enc = h.restic_seal(masterkey, lock)
        (vault / "locks" / hashlib.sha256(enc).hexdigest()).write_bytes(enc)
        fcntl.fcntl(fd, F_SETLEASE, fcntl.F_UNLCK)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(fd)
        signal.signal(signal.SIGIO, old_handler)
    err = err.decode(errors="replace")
    assert proc.returncode == 1, err
    assert "locked exclusively by PID 4242 on other-host" in err, err
    assert not target.exists() or not any(target.iterdir()), sorted(target.iterdir())
    if command == "check":
        # Its phases are announced on stderr; only the first may have begun.
        assert "load indexes" in err, err
        assert "check all packs" not in err and "read all data" not in err, err
        assert not out.strip(), out
    assert len(lock_names(vault)) == 1, f"{command} left its own lock behind"
