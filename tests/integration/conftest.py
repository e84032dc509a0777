# SPDX-License-Identifier: LGPL-2.1-or-later
"""pytest fixtures for holdfast's integration tests (run by `meson test` with Debian's
/usr/bin/python3 -m pytest; HOLDFAST names the binary under test, HF_SOURCE_ROOT the tree).
Each module is its own meson test (`meson test -C build integration-s3`), two run at a time, so
no fixture may be shared across modules; tests/meson.build lists the modules.

Fixtures:
  holdfast_bin, restic_bin   paths of the two programs (session)
  holdfast, restic           callables: holdfast("backup", src, repo=vault) -> Result, which
                             unpacks as (rc, stdout, stderr); the password is in the environment
  vault_dir, source_dir, target_dir   fresh paths under tmp_path (vault and target not created)
  scratch                    a folder for heavy data (tmpfs when it has room), removed after
  rich_tree                  a source tree with every kind of entry (helpers.make_rich_tree);
                             parametrize indirectly with a dict of its options for heavy parts
  golden                     golden("restic-v2-auto") unpacks a vault of tests/golden into tmp
"""
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import helpers as h  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: heavy data (1 GiB sparse file, 200 MiB file, 20k files); still part "
                   "of `make check`, deselect with -m 'not slow' while iterating")
    config.addinivalue_line("markers", "root: needs root (chown, mknod); skipped otherwise")


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (chown to other users, mknod); CI runs as root")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def holdfast_bin():
    path = Path(os.environ.get("HOLDFAST") or h.ROOT / "build" / "src" / "cli" / "holdfast")
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"holdfast binary not found at {path}: run `make` or set HOLDFAST")
    return path


@pytest.fixture(scope="session")
def restic_bin():
    path = shutil.which("restic") or "/usr/bin/restic"
    if not os.access(path, os.X_OK):
        pytest.fail("restic not found: scripts/bootstrap installs Debian's restic")
    version = h.run([path, "version"]).out
    if not version.startswith("restic 0.14"):
        pytest.fail(f"want restic 0.14 (Debian 12) as the oracle, found: {version.strip()}")
    return Path(path)


@pytest.fixture
def holdfast(holdfast_bin):
    return h.Holdfast(holdfast_bin)


@pytest.fixture
def restic(restic_bin):
    return h.Restic(restic_bin)


@pytest.fixture
def vault_dir(tmp_path):
    return tmp_path / "vault"


@pytest.fixture
def source_dir(tmp_path):
    p = tmp_path / "source"
    p.mkdir()
    return p


@pytest.fixture
def target_dir(tmp_path):
    return tmp_path / "target"


@pytest.fixture
def rich_tree(request, tmp_path):
    """helpers.TreeInfo of a rich tree at tmp_path/rich; options via indirect parametrize:
        @pytest.mark.parametrize("rich_tree", [{"sparse": True}], indirect=True)
    A tree with heavy parts (sparse, big, many) is built in the scratch folder instead."""
    opts = dict(getattr(request, "param", None) or {})
    heavy = opts.get("sparse") or opts.get("big") or opts.get("many")
    base = request.getfixturevalue("scratch") if heavy else tmp_path
    return h.make_rich_tree(base / "rich", **opts)


def _tmpfs_room(path):
    """Free bytes of path when it is a tmpfs mount, else 0."""
    try:
        with open("/proc/self/mounts") as f:
            if not any(line.split()[1] == path and line.split()[2] == "tmpfs" for line in f):
                return 0
        st = os.statvfs(path)
        return st.f_bavail * st.f_frsize
    except OSError:
        return 0


@pytest.fixture
def scratch(tmp_path):
    """A fresh folder for heavy trees, removed after the test. On this kind of VM the disk is
    mounted with discard and every unlink of a file already written back costs ~3 ms, so
    deleting 20k files takes a minute: heavy trees go to tmpfs (/dev/shm) when it has room
    (restic restores a sparse 1 GiB file as 1 GiB of zeros), else under tmp_path."""
    if _tmpfs_room("/dev/shm") >= 6 * h.GIB:
        path = Path(tempfile.mkdtemp(prefix="holdfast-test-", dir="/dev/shm"))
    else:
        path = tmp_path / "scratch"
        path.mkdir()
    yield path
    h.rmtree(path)


class GoldenVault:
    """A vault of tests/golden unpacked into a temp folder, with what restic said about it."""

    def __init__(self, name, dest):
        self.name = name
        self.tarball = h.GOLDEN / f"{name}.tar.xz"
        self.expected = h.GOLDEN / name
        if not self.tarball.exists():
            pytest.fail(f"golden vault {self.tarball} is missing (tests/golden/make-golden.sh)")
        self.repo = h.unpack_vault(self.tarball, dest)
        self.password = h.GOLDEN_PASSWORD
        info = self.expected / "info.json"
        self.info = json.loads(info.read_text()) if info.exists() else {}

    def json(self, name):
        return json.loads((self.expected / name).read_text())

    def jsonl(self, name):
        return [json.loads(line) for line in (self.expected / name).read_text().splitlines()
                if line.strip()]

    def manifest(self, name="restore-latest.manifest.jsonl"):
        return h.load_manifest(self.expected / name)


@pytest.fixture
def golden(tmp_path):
    n = [0]

    def unpack(name):
        n[0] += 1
        return GoldenVault(name, tmp_path / f"golden-{n[0]}-{name}")

    return unpack
