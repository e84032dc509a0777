# SPDX-License-Identifier: LGPL-2.1-or-later
"""holdfast check (docs/cli.md): clean vaults pass, and each kind of damage is found and named
(file and blob), with exit code 3; exit code 1 when check cannot run.

Damage is made to vaults restic 0.14 wrote, and restic's own check is run on the same vault as
the oracle where it has an opinion. Objects that need the vault's key (trees, packs, index and
snapshot files, locks) are written here with a small implementation of restic's crypto
(AES-256-CTR + Poly1305-AES), uncompressed: raw JSON is legal in v2 vaults and blob types 0/1
need no zstd. Plaintexts of existing objects come from `restic cat`.
"""
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import helpers as h

TIME = "2024-05-01T12:00:00Z"


# --------------------------------------------------------------------------------------------
# Writing objects into a vault with its key (helpers.restic_seal)


class Vault:
    """A restic vault on disk plus its master key and what restic said about it when it was
    made (info), for writing objects (here) and damaging files."""

    def __init__(self, restic, repo, info):
        self.restic = restic
        self.repo = Path(repo)
        self.info = info

    # crypto
    def encrypt(self, plain):
        return h.restic_seal(self.info["masterkey"], plain)

    # files
    def save(self, folder, plain):
        """Encrypts plain (JSON bytes, stored raw) into folder/<sha256>; returns the ID."""
        enc = self.encrypt(plain)
        name = hashlib.sha256(enc).hexdigest()
        (self.repo / folder / name).write_bytes(enc)
        return name

    def save_json(self, folder, doc):
        return self.save(folder, json.dumps(doc, separators=(",", ":")).encode())

    def save_pack(self, blobs):
        """blobs: [(type "data"|"tree", plaintext)] or [(type, plaintext, ID to give it
        instead of its SHA-256)], stored uncompressed. Returns the pack ID and its index
        entries."""
        body, header, entries = b"", b"", []
        for kind, plain, *forced in blobs:
            enc = self.encrypt(plain)
            bid = forced[0] if forced else hashlib.sha256(plain).digest()
            header += bytes([0 if kind == "data" else 1]) + len(enc).to_bytes(4, "little") + bid
            entries.append({"id": bid.hex(), "type": kind, "offset": len(body),
                            "length": len(enc)})
            body += enc
        enc_header = self.encrypt(header)
        pack = body + enc_header + len(enc_header).to_bytes(4, "little")
        pid = hashlib.sha256(pack).hexdigest()
        d = self.repo / "data" / pid[:2]
        d.mkdir(exist_ok=True)
        (d / pid).write_bytes(pack)
        return pid, entries

    def save_index(self, packs):
        """packs: {pack_id: entries}; returns the index file's ID."""
        return self.save_json("index", {"packs": [{"id": p, "blobs": e}
                                                  for p, e in packs.items()]})

    def save_snapshot(self, tree_id, path="/crafted"):
        return self.save_json("snapshots", {"time": TIME, "tree": tree_id, "paths": [path],
                                            "hostname": "crafted", "username": "test"})

    # what the vault held when it was made
    def ids(self, what):
        return self.info[what]

    def index(self, iid):
        return self.info["index_docs"][iid]

    def blobs(self):
        """Every index entry: dicts with pack, index, id, type, offset, length."""
        return self.info["blobs"]

    def pack_path(self, pid):
        return self.repo / "data" / pid[:2] / pid

    def snapshot(self):
        return self.info["snapshot"]


def node(name, kind, **kw):
    n = {"name": name, "type": kind, "mode": 2147484141 if kind == "dir" else 420,
         "mtime": TIME, "atime": TIME, "ctime": TIME, "uid": 0, "gid": 0, "content": None}
    if kind == "file":
        n["content"] = []
        n["size"] = 0
    n.update(kw)
    return n


def tree_bytes(nodes):
    nodes = sorted(nodes, key=lambda n: n["name"].encode())
    return (json.dumps({"nodes": nodes}, separators=(",", ":")) + "\n").encode()


def writable(path):
    os.chmod(path, 0o600)
    return path


def flip(path, offset):
    writable(path)
    data = bytearray(Path(path).read_bytes())
    data[offset] ^= 0x55
    Path(path).write_bytes(bytes(data))


# --------------------------------------------------------------------------------------------
# Running check


class Check:
    """One `check --json` run, parsed, plus the text run's output."""

    def __init__(self, holdfast, repo, *args, rc):
        self.res = holdfast("check", "--json", *args, repo=repo).expect(rc)
        lines = self.res.jsonl()
        assert lines and lines[-1].get("message_type") == "summary", \
            "check --json must end with one summary line:\n" + self.res.describe()
        self.summary = lines[-1]
        self.errors = lines[:-1]
        for e in self.errors:
            assert set(e) == {"message_type", "file", "blob", "message"} and \
                e["message_type"] == "error", "not an error line of cli.md's schema: " + repr(e)
        assert set(self.summary) == {"message_type", "snapshots", "trees", "packs", "blobs",
                                     "data_read", "errors", "read_data"}, repr(self.summary)
        assert self.summary["errors"] == len(self.errors), self.res.describe()
        assert self.summary["read_data"] == ("--read-data" in args)
        self.text = holdfast("check", *args, repo=repo).expect(rc)
        if rc == 0:
            assert "no errors were found" in self.text.out, self.text.describe()
        else:
            n = len(self.errors)
            assert f"{n} error{'s' if n != 1 else ''} found" in self.text.out, \
                self.text.describe()
            # Every JSON error is also one line on stderr naming the same file and blob.
            for e in self.errors:
                assert any(e["file"] in line and e["blob"] in line
                           for line in self.text.err_lines()), \
                    f"no stderr line names {e['file']} {e['blob']}:\n" + self.text.describe()

    def find(self, file=None, blob=None, text=()):
        """The error lines matching file, blob and containing every string of text."""
        if isinstance(text, str):
            text = (text,)
        return [e for e in self.errors
                if (file is None or e["file"] == file) and (blob is None or e["blob"] == blob)
                and all(t in e["message"] for t in text)]

    def expect(self, file=None, blob=None, text=()):
        found = self.find(file, blob, text)
        assert found, f"no error with file={file} blob={blob} text={text}:\n" + \
            self.res.describe(20000)
        return found[0]


def check(holdfast, repo, *args, rc):
    return Check(holdfast, repo, *args, rc=rc)


# --------------------------------------------------------------------------------------------
# Fixtures: small vaults restic wrote


def make_source(root):
    root.mkdir(parents=True, exist_ok=True)
    (root / "a.txt").write_bytes(b"hello, vault\n" * 50)
    (root / "empty").write_bytes(b"")
    sub = root / "sub" / "deeper"
    sub.mkdir(parents=True)
    (root / "sub" / "random.bin").write_bytes(os.urandom(3 << 20))  # several chunks
    (sub / "c.txt").write_bytes(b"deep file\n")
    (root / "other").mkdir()
    (root / "other" / "d.txt").write_bytes(b"another folder\n" * 10)
    return root


def _survey(restic, repo):
    """What restic says about a fresh vault, gathered once (each restic run costs a KDF)."""
    def r(*args):
        return restic(*args, repo=repo).ok()

    def tree(tid):
        return json.loads(r("cat", "blob", tid).out)

    info = {"masterkey": r("cat", "masterkey").json()}
    (info["snapshot"],) = r("snapshots", "--json").json()
    for what in ("index", "packs"):
        info[what] = sorted(r("list", what).out.split())
    info["index_docs"] = {i: r("cat", "index", i).json() for i in info["index"]}
    info["blobs"] = [dict(b, pack=p["id"], index=i) for i, doc in info["index_docs"].items()
                     for p in doc["packs"] for b in p["blobs"]]
    root = tree(info["snapshot"]["tree"])
    src = tree(next(n for n in root["nodes"] if n["name"] == "src")["subtree"])
    a_txt = next(n for n in src["nodes"] if n["name"] == "a.txt")
    info["a_txt"] = next(b for b in info["blobs"] if b["id"] == a_txt["content"][0])
    info["a_txt_plain"] = r("cat", "blob", a_txt["content"][0]).out_bytes
    info["sub_tree"] = next(n for n in src["nodes"] if n["name"] == "sub")["subtree"]
    return info


@pytest.fixture(scope="session")
def templates(restic_bin, tmp_path_factory):
    """Vaults restic wrote (format 2 and 1), each holding one snapshot of a small tree backed
    up as the relative path "src"; tests work on copies."""
    restic = h.Restic(restic_bin)
    base = tmp_path_factory.mktemp("check-templates")
    make_source(base / "src")
    out = {}
    for version in ("2", "1"):
        repo = base / f"v{version}"
        restic("init", "--repository-version", version, repo=repo).ok()
        restic("backup", "src", repo=repo, cwd=base).ok()
        out[version] = (repo, _survey(restic, repo))
    return out


def _copy(restic, templates, version, tmp_path):
    repo, info = templates[version]
    dest = tmp_path / "vault"
    shutil.copytree(repo, dest, symlinks=True)
    return Vault(restic, dest, info)


@pytest.fixture(params=["2", "1"])
def vault(request, restic, templates, tmp_path):
    return _copy(restic, templates, request.param, tmp_path)


@pytest.fixture
def v2(restic, templates, tmp_path):
    return _copy(restic, templates, "2", tmp_path)


A_TXT = "/src/a.txt"


# --------------------------------------------------------------------------------------------
# Clean vaults


def test_clean_restic_vault(holdfast, restic, vault):
    packs = vault.ids("packs")
    c = check(holdfast, vault.repo, rc=0)
    s = c.summary
    assert (s["snapshots"], s["packs"], s["blobs"]) == (1, len(packs), len(vault.blobs()))
    assert s["trees"] == 5 and s["data_read"] == 0  # /, src, sub, deeper, other
    c = check(holdfast, vault.repo, "--read-data", rc=0)
    assert c.summary["data_read"] == sum(vault.pack_path(p).stat().st_size for p in packs)
    # The narrative, as restic's.
    for phase in ("load indexes", "check all packs", "check snapshots, trees and blobs",
                  "read all data"):
        assert phase in c.text.err, c.text.describe()


def test_clean_holdfast_vault(holdfast, restic, tmp_path):
    repo = tmp_path / "vault"
    src = make_source(tmp_path / "src")
    holdfast("init", "--kdf-params", "16384,8,1", repo=repo).ok()
    holdfast("backup", src, repo=repo).ok()
    (src / "new.txt").write_bytes(b"second snapshot\n")
    holdfast("backup", src, repo=repo).ok()
    c = check(holdfast, repo, "--read-data", rc=0)
    assert c.summary["snapshots"] == 2
    restic("check", "--read-data", repo=repo).ok()  # the oracle agrees


def test_packs_added_between_the_two_listings(holdfast, tmp_path):
    """check --read-data lists the packs before it loads the index (one thread reads them
    meanwhile) and again after, as restic lists them after the index: a backup beside a
    check --no-lock (its exclusive lock would keep the backup out) that adds packs and their
    index in between leaves a clean vault, every pack of which is read once. Made to happen
    through the test pause, a FIFO the check waits on right after its first listing."""
    repo, src, fifo = tmp_path / "vault", make_source(tmp_path / "src"), tmp_path / "pause"
    holdfast("init", "--kdf-params", "16384,8,1", repo=repo).ok()
    holdfast("backup", src, repo=repo).ok()
    os.mkfifo(fifo)
    env = h.clean_env({"HOLDFAST_PASSWORD": holdfast.password,
                       "HOLDFAST_CHECK_TEST_PAUSE": os.fspath(fifo)})
    p = subprocess.Popen([os.fspath(holdfast.binary), "-r", os.fspath(repo), "check", "--json",
                          "--read-data", "--no-lock"], env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # A FIFO opens to write without waiting only once its reader is there: the check
        # has listed the packs and waits.
        deadline = time.monotonic() + 60
        while True:
            try:
                w = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:
                assert p.poll() is None and time.monotonic() < deadline, p.communicate()
                time.sleep(0.02)
        before = {f.name for f in (repo / "data").glob("*/*")}
        (src / "new.bin").write_bytes(secrets.token_bytes(3 << 20))
        holdfast("backup", src, repo=repo).ok()
        os.close(w)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    packs = list((repo / "data").glob("*/*"))
    assert {f.name for f in packs} - before, "the second backup added no pack"
    assert p.returncode == 0, (out, err)
    summary = json.loads(out.decode().splitlines()[-1])
    assert (summary["snapshots"], summary["packs"], summary["errors"]) == (2, len(packs), 0)
    assert summary["data_read"] == sum(f.stat().st_size for f in packs), summary


def test_quiet_clean_check_prints_nothing(holdfast, v2):
    res = holdfast("check", "-q", repo=v2.repo).ok()
    assert res.out == "" and res.err == "", res.describe()


# --------------------------------------------------------------------------------------------
# Packs


def test_byte_flipped_in_data_blob(holdfast, restic, vault):
    entry, path = vault.info["a_txt"], A_TXT
    pfile = f"data/{entry['pack'][:2]}/{entry['pack']}"
    flip(vault.pack_path(entry["pack"]), entry["offset"] + entry["length"] // 2)

    # The header is intact: the structure check cannot see this.
    check(holdfast, vault.repo, rc=0)

    c = check(holdfast, vault.repo, "--read-data", rc=3)
    c.expect(file=pfile, blob="", text="not to its name")
    c.expect(file=pfile, blob=entry["id"], text=("data blob", "MAC mismatch"))
    snap = vault.snapshot()["id"]
    c.expect(file=f"snapshots/{snap}", blob=entry["id"],
             text=(f'"{path}"', "is damaged", pfile))
    assert len(c.errors) == 3, c.res.describe()
    assert restic("check", "--read-data", repo=vault.repo).rc != 0


def test_truncated_pack(holdfast, restic, vault):
    entry = vault.info["a_txt"]
    p = writable(vault.pack_path(entry["pack"]))
    size = p.stat().st_size
    os.truncate(p, size - 100)
    pfile = f"data/{entry['pack'][:2]}/{entry['pack']}"

    c = check(holdfast, vault.repo, rc=3)
    c.expect(file=pfile, blob="", text=("truncated", str(size - 100), str(size)))
    assert len(c.errors) == 1, c.res.describe()
    # Reading it finds the hash mismatch too; the blobs themselves are still whole.
    c = check(holdfast, vault.repo, "--read-data", rc=3)
    c.expect(file=pfile, text="not to its name")
    assert restic("check", repo=vault.repo).rc != 0


def test_missing_pack(holdfast, restic, vault):
    entry, path = vault.info["a_txt"], A_TXT
    pfile = f"data/{entry['pack'][:2]}/{entry['pack']}"
    in_pack = [b for b in vault.blobs() if b["pack"] == entry["pack"]]
    os.unlink(vault.pack_path(entry["pack"]))

    c = check(holdfast, vault.repo, rc=3)
    c.expect(file=pfile, blob="",
             text=("pack listed in the index is missing", f"places {len(in_pack)} blobs"))
    snap = vault.snapshot()["id"]
    c.expect(file=f"snapshots/{snap}", blob=entry["id"], text=(f'"{path}"', "which is missing"))
    assert restic("check", repo=vault.repo).rc != 0


def test_index_disagrees_with_header(holdfast, restic, v2):
    """An index file that puts a blob at the wrong offset (restic would read garbage there)."""
    entry, path = v2.info["a_txt"], A_TXT
    doc = v2.index(entry["index"])
    for p in doc["packs"]:
        for b in p["blobs"]:
            if b["id"] == entry["id"]:
                b["offset"] += 1
    v2.save_json("index", doc)
    os.unlink(v2.repo / "index" / entry["index"])
    pfile = f"data/{entry['pack'][:2]}/{entry['pack']}"

    c = check(holdfast, v2.repo, rc=3)
    c.expect(file=pfile, blob=entry["id"],
             text=(f"the index says offset {entry['offset'] + 1}",
                   f"the pack header says offset {entry['offset']}"))
    # The copy every reader uses is wrong, so the file that needs it is named.
    c.expect(file=f"snapshots/{v2.snapshot()['id']}", blob=entry["id"], text=f'"{path}"')


def test_blob_in_header_but_in_no_index(holdfast, v2):
    extra = b"a blob that only the pack header knows\n"
    used = b"a blob the index lists\n"
    pid, entries = v2.save_pack([("data", used), ("data", extra)])
    v2.save_index({pid: entries[:1]})
    c = check(holdfast, v2.repo, rc=3)
    c.expect(file=f"data/{pid[:2]}/{pid}", blob=hashlib.sha256(extra).hexdigest(),
             text="in the pack header")
    assert len(c.errors) == 1, c.res.describe()


def test_duplicate_blob_in_two_packs_is_fine(holdfast, restic, v2):
    entry = v2.info["a_txt"]
    pid, entries = v2.save_pack([("data", v2.info["a_txt_plain"])])
    assert entries[0]["id"] == entry["id"]
    v2.save_index({pid: entries})
    restic("check", "--read-data", repo=v2.repo).ok()
    check(holdfast, v2.repo, "--read-data", rc=0)


def test_blob_that_hashes_to_another_id(holdfast, restic, v2):
    """Blobs that decrypt (their MAC is right) but whose plaintext is not what their ID says: a
    key holder wrote them, or a bug did. Twenty blobs of different sizes in one pack, so that
    check hashes them together (hf_sha256_many), with wrong ones first, in the middle and
    last."""
    plains = [b"blob %d " % i * (i * 37 + 1) for i in range(20)]
    fake = {i: hashlib.sha256(b"not blob %d" % i).digest() for i in (0, 9, 19)}
    pid, entries = v2.save_pack([("data", p, *([fake[i]] if i in fake else []))
                                 for i, p in enumerate(plains)])
    v2.save_index({pid: entries})
    # Without --read-data the pack's header agrees with the index: nothing to see.
    check(holdfast, v2.repo, rc=0)
    c = check(holdfast, v2.repo, "--read-data", rc=3)
    for i, bid in fake.items():
        c.expect(file=f"data/{pid[:2]}/{pid}", blob=bid.hex(),
                 text=f"decrypts, but its content hashes to "
                      f"{hashlib.sha256(plains[i]).hexdigest()[:16]}, not to its ID")
    assert len(c.errors) == 3, c.res.describe()
    assert restic("check", "--read-data", repo=v2.repo).rc != 0


def test_unreferenced_pack_is_a_note(holdfast, restic, v2):
    pid, _ = v2.save_pack([("data", b"leftover of an interrupted backup\n")])
    c = check(holdfast, v2.repo, "--read-data", rc=0)
    assert f"data/{pid[:2]}/{pid}: pack not referenced in any index" in c.text.err, \
        c.text.describe()
    assert "not referenced in any index" in restic("check", repo=v2.repo).ok().out


# --------------------------------------------------------------------------------------------
# Index and snapshot files


def test_missing_index(holdfast, restic, vault):
    """Every pack becomes unreferenced; the snapshot's blobs are found in their headers, so the
    index is incomplete but nothing is lost: one error per pack, not one per blob."""
    packs = vault.ids("packs")
    for iid in vault.ids("index"):
        os.unlink(vault.repo / "index" / iid)
    c = check(holdfast, vault.repo, rc=3)
    assert len(c.errors) == len(packs), c.res.describe()
    snap = vault.snapshot()["id"]
    for p in packs:
        c.expect(file=f"data/{p[:2]}/{p}", text=("in no index", f"snapshots/{snap}",
                                                 "rebuild-index"))
        assert f"data/{p[:2]}/{p}: pack not referenced in any index" in c.text.err
    assert restic("check", repo=vault.repo).rc != 0


def test_damaged_index_file(holdfast, restic, v2):
    iid = v2.ids("index")[0]
    flip(v2.repo / "index" / iid, 40)
    c = check(holdfast, v2.repo, rc=3)
    c.expect(file=f"index/{iid}", blob="", text="do not hash to its name")
    assert restic("check", repo=v2.repo).rc != 0


def test_malformed_index_file(holdfast, v2):
    bad = v2.save("index", b'{"packs":[{"id":"not-an-id","blobs":[]}]}')
    c = check(holdfast, v2.repo, rc=3)
    c.expect(file=f"index/{bad}", blob="", text="malformed index")
    assert len(c.errors) == 1, c.res.describe()


def test_many_index_files_some_bad(holdfast, v2):
    """Fifteen index files, three bad in different ways: each bad one is reported once, in
    file order, and every good one's blobs are counted."""
    pid, entries = v2.save_pack([("data", b"listed twice")])
    good = [v2.save_index({pid: entries})]
    for k in range(10):
        p, e = v2.save_pack([("data", b"extra blob %d" % k)])
        good.append(v2.save_index({p: e}))
    flipped = v2.save_index({pid: entries})
    flip(v2.repo / "index" / flipped, 30)
    malformed = v2.save("index", b'{"packs":[{"id":"not-an-id","blobs":[]}]}')
    garbage = os.urandom(200)
    undecryptable = hashlib.sha256(garbage).hexdigest()
    (v2.repo / "index" / undecryptable).write_bytes(garbage)
    c = check(holdfast, v2.repo, rc=3)
    bad = {flipped: "do not hash to its name", malformed: "malformed index",
           undecryptable: "does not decrypt"}
    assert [e["file"] for e in c.errors] == [f"index/{i}" for i in sorted(bad)], \
        c.res.describe()
    for iid, why in bad.items():
        c.expect(file=f"index/{iid}", blob="", text=why)
    assert c.summary["blobs"] == len(v2.blobs()) + 11, c.res.describe()


def test_damaged_snapshot_file(holdfast, restic, vault):
    sid = vault.snapshot()["id"]
    flip(vault.repo / "snapshots" / sid, 20)
    c = check(holdfast, vault.repo, rc=3)
    c.expect(file=f"snapshots/{sid}", blob="", text="do not hash to its name")
    assert c.summary["snapshots"] == 0
    assert restic("check", repo=vault.repo).rc != 0


def test_snapshot_with_bad_key(holdfast, v2):
    """A file named correctly by its hash but encrypted with another key (a forgery)."""
    enc = secrets.token_bytes(200)
    sid = hashlib.sha256(enc).hexdigest()
    (v2.repo / "snapshots" / sid).write_bytes(enc)
    c = check(holdfast, v2.repo, rc=3)
    c.expect(file=f"snapshots/{sid}", blob="", text="MAC mismatch")


# --------------------------------------------------------------------------------------------
# Trees


def test_damaged_tree(holdfast, restic, vault):
    snap, sub = vault.snapshot(), vault.info["sub_tree"]
    entry = next(b for b in vault.blobs() if b["id"] == sub)
    flip(vault.pack_path(entry["pack"]), entry["offset"] + entry["length"] // 2)

    c = check(holdfast, vault.repo, rc=3)
    c.expect(file=f"snapshots/{snap['id']}", blob=sub, text=('tree of "/src/sub"', "MAC mismatch"))
    assert len(c.errors) == 1, c.res.describe()
    assert c.summary["trees"] == 4  # /src/sub/deeper is not reachable any more
    res = restic("check", repo=vault.repo)
    assert res.rc != 0 and "ciphertext verification failed" in res.err, res.describe()


@pytest.mark.parametrize("args", [[], ["--read-data"]], ids=["walk-alone", "read-data"])
def test_tree_rules(holdfast, restic, v2, args):
    """restic's checker rules for nodes (restic-format.md §6.3), in a crafted snapshot. With
    --read-data the trees are walked while the packs are read, and what the walk finds is held
    until they are: the same errors, each once."""
    entry = v2.info["a_txt"]
    lost = secrets.token_hex(32)
    nodes = [
        node("nosub", "dir"),
        node("zerosub", "dir", subtree="0" * 64),
        node("nullcontent", "file", content=None),
        node("lost", "file", content=[entry["id"], lost], size=10),
        node("fine", "file", content=[entry["id"]], size=10),
        node("link", "symlink", linktarget="fine"),
    ]
    tree = tree_bytes(nodes)
    pid, entries = v2.save_pack([("tree", tree)])
    v2.save_index({pid: entries})
    sid = v2.save_snapshot(entries[0]["id"])
    tid, sfile = entries[0]["id"], f"snapshots/{sid}"

    c = check(holdfast, v2.repo, *args, rc=3)
    c.expect(file=sfile, blob=tid, text='folder "/nosub" has no subtree')
    c.expect(file=sfile, blob=tid, text='folder "/zerosub" has a null subtree ID')
    c.expect(file=sfile, blob=tid, text=('file "/nullcontent"', "null content"))
    c.expect(file=sfile, blob=lost, text=('file "/lost"', "blob 2 of 2", "in no index",
                                          "lost"))
    assert len(c.errors) == 4, c.res.describe()
    res = restic("check", repo=v2.repo)
    assert "has no subtree" in res.err and "not found in index" in res.err, res.describe()


@pytest.mark.parametrize("bad,why", [
    (node("x", "weird"), "unknown type"),
    (node("", "file"), "name is empty"),
    (node("a/b", "file"), "contains '/'"),
])
def test_malformed_tree(holdfast, restic, v2, bad, why):
    pid, entries = v2.save_pack([("tree", tree_bytes([bad]))])
    v2.save_index({pid: entries})
    sid = v2.save_snapshot(entries[0]["id"])
    c = check(holdfast, v2.repo, rc=3)
    c.expect(file=f"snapshots/{sid}", blob=entries[0]["id"],
             text=('tree of "/" is malformed', why))


def test_tree_missing_everywhere(holdfast, v2):
    tid = secrets.token_hex(32)
    sid = v2.save_snapshot(tid)
    c = check(holdfast, v2.repo, rc=3)
    c.expect(file=f"snapshots/{sid}", blob=tid, text=('tree of "/" is missing',
                                                      "no index and in no pack"))


def test_crafted_valid_snapshot_passes(holdfast, restic, v2):
    """The crafting helpers write what restic accepts (so the failures above are the damage's)."""
    entry = v2.info["a_txt"]
    tree = tree_bytes([node("copy.txt", "file", content=[entry["id"]], size=650),
                       node("empty", "file")])
    pid, entries = v2.save_pack([("tree", tree)])
    v2.save_index({pid: entries})
    v2.save_snapshot(entries[0]["id"])
    restic("check", "--read-data", repo=v2.repo).ok()
    c = check(holdfast, v2.repo, "--read-data", rc=0)
    assert c.summary["snapshots"] == 2


# --------------------------------------------------------------------------------------------
# Locking, usage and failures to run


def test_check_takes_an_exclusive_lock(holdfast, v2):
    v2.save_json("locks", {"time": "2999-01-01T00:00:00Z", "exclusive": False,
                           "hostname": "elsewhere.example", "username": "someone", "pid": 1})
    res = holdfast("check", repo=v2.repo).expect(1)
    assert "lock" in res.err, res.describe()
    holdfast("check", "--no-lock", repo=v2.repo).ok()


def test_check_leaves_no_lock(holdfast, v2):
    holdfast("check", repo=v2.repo).ok()
    assert list((v2.repo / "locks").iterdir()) == []


def test_usage_error(holdfast, v2):
    holdfast("check", "extra", repo=v2.repo).expect(2)
    holdfast("check", "--read-data-subset", "1/5", repo=v2.repo).expect(2)
    res = holdfast("check", "--help").ok()
    assert "--read-data" in res.out


def test_cannot_list_is_exit_1(holdfast, v2):
    d = v2.repo / "data" / "00"
    d.rmdir()
    d.write_bytes(b"not a folder")
    res = holdfast("check", "--json", repo=v2.repo).expect(1)
    assert "data" in res.err and not any(x.get("message_type") == "summary"
                                         for x in res.jsonl()), res.describe()
