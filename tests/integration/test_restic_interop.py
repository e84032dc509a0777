# SPDX-License-Identifier: LGPL-2.1-or-later
"""Interoperability with restic 0.14 (the oracle), both ways, and clean failures on bad input.
Written against docs/cli.md. restic is always run with --no-cache and the password in its
environment; holdfast with HOLDFAST_PASSWORD.
"""
import os
from pathlib import Path

import pytest

import helpers as h

GOLDEN_READ = ["restic-v2-auto", "restic-v2-off", "restic-v1", "restic-v2-small"]


def restored(target, source):
    """Where a restore of an absolute source path lands under target (restic keeps the path)."""
    p = Path(target) / Path(source).relative_to("/")
    if not p.exists():
        found = sorted(str(q.relative_to(target)) for q in Path(target).rglob("*"))[:20]
        raise AssertionError(f"restore did not create {p}; the target holds: {found}")
    return p


def backup_summary(res):
    """The summary line of `backup --json` (cli.md: exactly one, last)."""
    lines = res.jsonl()
    summaries = [x for x in lines if x.get("message_type") == "summary"]
    assert len(summaries) == 1, "backup --json must print exactly one summary:\n" + res.describe()
    assert lines[-1] is summaries[0], "the summary must be the last line:\n" + res.describe()
    return summaries[0]


def assert_subset(expected, actual, what):
    """Every field restic gives is in holdfast's object with the same value (holdfast may add
    fields: cli.md's schemas only ever grow)."""
    diffs = [f"  {k}: restic {expected[k]!r}, holdfast {actual.get(k, '(absent)')!r}"
             for k in expected if actual.get(k) != expected[k]]
    assert not diffs, f"{what} differs from restic's:\n" + "\n".join(diffs)


def snapshot_ids(restic, repo):
    return sorted(s["id"] for s in restic("snapshots", "--json", repo=repo).ok().json())


# --------------------------------------------------------------------------------------------
# holdfast writes, restic reads


@pytest.mark.root
def test_holdfast_writes_restic_reads(holdfast, restic, rich_tree, vault_dir, target_dir):
    src = rich_tree.root
    holdfast("init", repo=vault_dir).ok()
    summary = backup_summary(holdfast("backup", "--json", src, repo=vault_dir).ok())
    assert summary["files_failed"] == 0

    res = restic("check", "--read-data", repo=vault_dir).ok()
    assert "no errors were found" in res.out, res.describe()
    assert snapshot_ids(restic, vault_dir) == [summary["snapshot_id"]]

    restic("restore", "latest", "--target", target_dir, repo=vault_dir).ok()
    h.assert_trees_equal(src, restored(target_dir, src))


@pytest.mark.root
def test_holdfast_ls_matches_restic(holdfast, restic, rich_tree, vault_dir):
    """On a vault holdfast wrote, holdfast's ls agrees with restic's, line by line."""
    holdfast("init", repo=vault_dir).ok()
    holdfast("backup", rich_tree.root, repo=vault_dir).ok()
    want = restic("ls", "--json", "latest", repo=vault_dir).ok().jsonl()
    got = holdfast("ls", "--json", "latest", repo=vault_dir).ok().jsonl()
    assert len(got) == len(want), \
        f"restic lists {len(want)} lines, holdfast {len(got)}"
    for i, (w, g) in enumerate(zip(want, got)):
        assert_subset(w, g, f"ls line {i + 1} ({w.get('path', 'snapshot')})")


@pytest.mark.root
def test_holdfast_round_trip_non_utf8_link_targets(holdfast, restic, tmp_path, vault_dir,
                                                    target_dir):
    """restic 0.14 cannot restore a symlink whose target is not UTF-8, so holdfast's own round
    trip covers it; restic must still accept the vault."""
    tree = h.make_rich_tree(tmp_path / "src", non_utf8_link_targets=True)
    assert tree.has("non-utf8-link-target")
    holdfast("init", repo=vault_dir).ok()
    holdfast("backup", tree.root, repo=vault_dir).ok()
    holdfast("restore", "latest", "--target", target_dir, repo=vault_dir).ok()
    h.assert_trees_equal(tree.root, restored(target_dir, tree.root))
    restic("check", "--read-data", repo=vault_dir).ok()


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.parametrize("rich_tree", [{"sparse": True, "big": True, "many": True}],
                         indirect=True)
def test_heavy_tree_both_ways(holdfast, restic, rich_tree, scratch, vault_dir):
    """All the heavy data in one test: a sparse 1 GiB file, a 200 MiB file, 20k small files.
    holdfast writes; restic checks every byte and restores; holdfast restores too."""
    src = rich_tree.root
    assert {"sparse", "big", "many"} <= set(rich_tree.made)
    holdfast("init", repo=vault_dir).ok()
    summary = backup_summary(holdfast("backup", "--json", src, repo=vault_dir,
                                      timeout=1200).ok())
    assert summary["files_failed"] == 0
    restic("check", "--read-data", repo=vault_dir, timeout=1200).ok()

    by_restic = scratch / "by-restic"
    restic("restore", "latest", "--target", by_restic, repo=vault_dir, timeout=1200).ok()
    h.assert_trees_equal(src, restored(by_restic, src))
    h.rmtree(by_restic)

    by_holdfast = scratch / "by-holdfast"
    holdfast("restore", "latest", "--target", by_holdfast, repo=vault_dir, timeout=1200).ok()
    h.assert_trees_equal(src, restored(by_holdfast, src))


# --------------------------------------------------------------------------------------------
# restic writes, holdfast reads: the golden vaults


@pytest.mark.parametrize("name", GOLDEN_READ)
def test_golden_snapshots(holdfast, golden, name):
    g = golden(name)
    want = g.json("snapshots.json")
    got = holdfast("snapshots", "--json", repo=g.repo, password=g.password).ok().json()
    assert isinstance(got, list), "snapshots --json must print one JSON array"
    assert sorted(s["id"] for s in got) == sorted(s["id"] for s in want)
    by_id = {s["id"]: s for s in got}
    for s in want:
        assert_subset(s, by_id[s["id"]], f"snapshot {s['short_id']}")


@pytest.mark.parametrize("name", GOLDEN_READ)
def test_golden_ls(holdfast, golden, name):
    g = golden(name)
    cases = [("latest", "ls-latest.jsonl")]
    if (g.expected / "ls-first.jsonl").exists():
        cases.append((g.info["first_snapshot"], "ls-first.jsonl"))
    for snap, fn in cases:
        want = g.jsonl(fn)
        got = holdfast("ls", "--json", snap, repo=g.repo, password=g.password).ok().jsonl()
        assert [x.get("path") for x in got] == [x.get("path") for x in want], \
            f"ls {snap}: holdfast lists other nodes, or in another order, than restic"
        for i, (w, x) in enumerate(zip(want, got)):
            assert_subset(w, x, f"ls {snap} line {i + 1} ({w.get('path', 'snapshot')})")


@pytest.mark.parametrize("name", GOLDEN_READ)
def test_golden_restore(holdfast, golden, name, target_dir):
    g = golden(name)
    holdfast("restore", "latest", "--target", target_dir, repo=g.repo,
             password=g.password).ok()
    diffs = h.compare_manifests(g.manifest(), h.manifest(target_dir))
    assert not diffs, "restore differs from restic's:\n  " + "\n  ".join(diffs)


@pytest.mark.parametrize("name", GOLDEN_READ)
def test_golden_check(holdfast, golden, name):
    g = golden(name)
    holdfast("check", "--read-data", repo=g.repo, password=g.password).ok()
    res = holdfast("check", "--read-data", "--json", repo=g.repo, password=g.password).ok()
    summary = [x for x in res.jsonl() if x.get("message_type") == "summary"]
    assert len(summary) == 1, res.describe()
    s, stats = summary[0], g.json("stats.json")
    assert s["errors"] == 0 and s["read_data"] is True, res.describe()
    for k in ("snapshots", "packs", "blobs"):
        assert s[k] == stats[k], f"check counts {s[k]} {k}, restic {stats[k]}"


# --------------------------------------------------------------------------------------------
# One vault, both tools


@pytest.mark.root
@pytest.mark.parametrize("created_by", ["holdfast", "restic"])
def test_shared_vault(holdfast, restic, rich_tree, vault_dir, tmp_path, created_by):
    """holdfast and restic snapshots interleaved in one vault. The source is given as a relative
    path (cwd = its parent), so the snapshot holds only it and not the ever-changing /tmp above
    it: unchanged data then means unchanged trees too."""
    src, cwd, rel = rich_tree.root, rich_tree.root.parent, rich_tree.root.name
    if created_by == "holdfast":
        holdfast("init", repo=vault_dir).ok()
    else:
        restic("init", repo=vault_dir).ok()

    holdfast("backup", rel, repo=vault_dir, cwd=cwd).ok()
    data = h.data_packs(restic, vault_dir)
    assert data, "holdfast's first backup wrote no data pack"

    # restic's first backup of data holdfast already stored: every chunk deduplicates.
    restic("backup", rel, repo=vault_dir, cwd=cwd).ok()
    assert h.data_packs(restic, vault_dir) == data, \
        "restic added data packs for data holdfast had already stored (chunker or blob ID mismatch)"
    restic("check", repo=vault_dir).ok()

    # Second backups of unchanged data by either tool add no pack at all.
    packs = h.pack_files(vault_dir)
    holdfast("backup", rel, repo=vault_dir, cwd=cwd).ok()
    assert h.pack_files(vault_dir) == packs, "holdfast's backup of unchanged data added packs"
    restic("backup", rel, repo=vault_dir, cwd=cwd).ok()
    assert h.pack_files(vault_dir) == packs, "restic's backup of unchanged data added packs"

    res = restic("check", "--read-data", repo=vault_dir).ok()
    assert "no errors were found" in res.out, res.describe()
    holdfast("check", "--read-data", repo=vault_dir).ok()

    ids = snapshot_ids(restic, vault_dir)
    assert len(ids) == 4
    got = holdfast("snapshots", "--json", repo=vault_dir).ok().json()
    assert sorted(s["id"] for s in got) == ids

    # Each tool restores the other's latest snapshot.
    by_time = sorted(got, key=lambda s: s["time"])
    hf_snap, restic_snap = by_time[2]["id"], by_time[3]["id"]
    holdfast("restore", restic_snap, "--target", tmp_path / "t1", repo=vault_dir).ok()
    h.assert_trees_equal(src, tmp_path / "t1" / rel)
    restic("restore", hf_snap, "--target", tmp_path / "t2", repo=vault_dir).ok()
    h.assert_trees_equal(src, tmp_path / "t2" / rel)


# --------------------------------------------------------------------------------------------
# Bad input: clear errors, right exit codes, no crash (the Holdfast runner fails a test on any
# signal or sanitizer report)


def test_wrong_password_own_vault(holdfast, vault_dir):
    holdfast("init", repo=vault_dir, password="right password").ok()
    res = holdfast("snapshots", repo=vault_dir, password="wrong password").expect(1)
    lines = res.err_lines()
    assert len(lines) == 1, "want exactly one line on stderr:\n" + res.describe()
    assert "password" in lines[0].lower(), res.describe()


def test_wrong_password_restic_vault(holdfast, golden):
    g = golden("restic-v2-small")
    res = holdfast("snapshots", repo=g.repo, password="not golden").expect(1)
    lines = res.err_lines()
    assert len(lines) == 1, "want exactly one line on stderr:\n" + res.describe()
    assert "password" in lines[0].lower(), res.describe()


def test_not_a_vault(holdfast, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "config").write_bytes(os.urandom(300))
    (junk / "keys").mkdir()
    for path in (empty, junk, tmp_path / "does-not-exist"):
        res = holdfast("snapshots", repo=path).expect(1)
        assert res.err_lines(), "a failure must say why on stderr:\n" + res.describe()
    assert not (tmp_path / "does-not-exist").exists(), "snapshots must not create a vault"


def test_init_refuses_existing_vault(holdfast, vault_dir):
    holdfast("init", repo=vault_dir).ok()
    before = sorted(p.name for p in (vault_dir / "keys").iterdir())
    holdfast("init", repo=vault_dir).expect(1)
    assert sorted(p.name for p in (vault_dir / "keys").iterdir()) == before


def _damage(golden):
    g = golden("damaged-pack-byte")
    return g, g.json("expect.json")


def test_damaged_pack_check(holdfast, golden):
    g, exp = _damage(golden)
    res = holdfast("check", "--read-data", repo=g.repo, password=g.password).expect(3)
    assert exp["pack"][:8] in res.out + res.err, "check must name the damaged pack:\n" + \
        res.describe()
    res = holdfast("check", "--read-data", "--json", repo=g.repo, password=g.password).expect(3)
    lines = res.jsonl()
    errors = [x for x in lines if x.get("message_type") == "error"]
    assert any(x.get("file") == exp["file"] for x in errors), \
        f"no error names {exp['file']}:\n" + res.describe()
    summary = [x for x in lines if x.get("message_type") == "summary"]
    assert len(summary) == 1 and summary[0]["errors"] >= 1, res.describe()


def test_damaged_pack_restore(holdfast, golden, target_dir):
    g, exp = _damage(golden)
    res = holdfast("restore", "latest", "--target", target_dir, repo=g.repo,
                   password=g.password).expect(3)
    for p in exp["damaged_paths"]:
        assert os.path.basename(p) in res.err, "restore must list the damaged file:\n" + \
            res.describe()
    want = h.load_manifest(h.GOLDEN / "restic-v2-small" / "restore-latest.manifest.jsonl")
    got = h.manifest(target_dir)
    damaged = [p.lstrip("/") for p in exp["damaged_paths"]]

    # The damaged file is either absent or right: never wrong bytes under its real name.
    # Partial data may be kept beside it under another name (damaged path + suffix).
    wanted = {m["path"]: m for m in want}
    for m in got:
        if m["path"] in damaged:
            assert m.get("sha256") == wanted[m["path"]].get("sha256"), \
                f"{m['path']} was restored with wrong content under its real name"

    def other(m):
        return not any(m["path"] == d or m["path"].startswith(d + ".") for d in damaged)

    # Everything else comes back as restic restored it from the intact vault. The folder
    # holding the damaged file may carry another mtime: restore failed inside it.
    diffs = h.compare_manifests([m for m in want if other(m)], [m for m in got if other(m)],
                                dir_mtimes=False)
    assert not diffs, "files outside the damaged blob differ:\n  " + "\n  ".join(diffs)


@pytest.mark.parametrize("kind,folder", [("index-truncated", "index"),
                                         ("snapshot-truncated", "snapshot"),
                                         ("key-json", "key")])
def test_damaged_metadata(holdfast, golden, tmp_path, kind, folder):
    """A truncated index, a truncated snapshot, a key file with malformed JSON: every command
    that reads the file names it (folder and ID). Without the snapshot or the key nothing can
    work: exit 1. A damaged index may be worked around (every pack header names its blobs):
    then the command must say so, naming the file, and give the complete result; otherwise it
    fails with exit 1. check reports the damage: exit 3 (or 1 when it cannot go on)."""
    g = golden("damaged-" + kind)
    exp = g.json("expect.json")
    short = exp["id"][:8]
    intact = h.GOLDEN / "restic-v2-small"

    def names_file(res):
        text = res.err + res.out
        return short in text and folder in text.lower()

    if kind == "key-json":
        # No key opens the vault: every command fails the same way.
        for args in (["snapshots"], ["ls", "latest"], ["check"]):
            res = holdfast(*args, repo=g.repo, password=g.password).expect(1)
            assert names_file(res), f"the error must name {exp['file']}:\n" + res.describe()
        return

    ok_allowed = kind == "index-truncated"
    res = holdfast("ls", "--json", "latest", repo=g.repo, password=g.password)
    assert res.rc == 1 or (ok_allowed and res.rc == 0), \
        "ls must fail (exit 1) or work around the damage (exit 0):\n" + res.describe()
    assert names_file(res), f"ls must name {exp['file']}:\n" + res.describe()
    if res.rc == 0:
        want = [x.get("path") for x in h.load_manifest(intact / "ls-latest.jsonl")]
        assert [x.get("path") for x in res.jsonl()] == want, \
            "ls worked around the damaged index but lists other nodes than restic"

    target = tmp_path / "t"
    res = holdfast("restore", "latest", "--target", target, repo=g.repo, password=g.password)
    assert res.rc == 1 or (ok_allowed and res.rc == 0), \
        "restore must fail (exit 1) or work around the damage (exit 0):\n" + res.describe()
    assert names_file(res), f"restore must name {exp['file']}:\n" + res.describe()
    if res.rc == 0:
        diffs = h.compare_manifests(h.load_manifest(intact / "restore-latest.manifest.jsonl"),
                                    h.manifest(target))
        assert not diffs, "restore worked around the damaged index but differs:\n  " + \
            "\n  ".join(diffs)

    res = holdfast("check", "--read-data", repo=g.repo, password=g.password)
    assert res.rc in (1, 3), "check must report the damage (3) or fail (1):\n" + \
        res.describe()
    assert names_file(res), f"check must name {exp['file']}:\n" + res.describe()
