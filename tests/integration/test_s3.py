# SPDX-License-Identifier: LGPL-2.1-or-later
"""Vaults in S3 buckets (issue 7), against a real single-node Ceph RADOS Gateway that
tests/ceph/start-ceph.sh starts once for this module (about 5 s) and stop-ceph.sh removes after.

What is shown: holdfast and restic 0.14 read each other's vaults through s3:; Object Lock in
compliance mode refuses the owner's DELETE of every pack version until the (deliberately short)
retention ends, backups extend the retention of packs a new snapshot still needs, and a vault
under lock stays restorable; eight clients back up into one bucket at once; two `holdfast serve
--backend s3:` instances serve one vault to restic. Faults: radosgw stopped in the middle of a
backup (retries, one clear line, a consistent vault, the next backup completes); wrong keys, a
missing bucket, a bucket without Object Lock and clock skew each give one sentence and exit 1.
Over HTTPS (the same gateway's TLS endpoint, its certificate signed by a throw-away CA): a round
trip with HOLDFAST_CACERT that restic --cacert checks, signed uploads without payload hashing,
and one sentence, nothing written, when the CA is not given.

boto3 (Debian's python3-boto3) plays the intruder and the auditor: it holds the bucket owner's
keys, so whatever it cannot delete, nobody can.
"""
import datetime
import json
import os
import random
import select
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import helpers as h

KDF = ["--kdf-params", "1024,8,1"]
LOCK_SECONDS = 12  # HOLDFAST_S3_LOCK_SECONDS: the retention the packs get in these tests


class Ceph:
    """The cluster start-ceph.sh printed: endpoint, credentials, folder."""

    def __init__(self, env):
        self.env = env
        self.dir = Path(env["CEPH_DIR"])
        self.endpoint = env["S3_ENDPOINT"]
        self.endpoint_tls = env["S3_ENDPOINT_TLS"]  # https://127.0.0.1:PORT
        self.cacert = env["S3_CACERT"]  # the throw-away CA that signed its certificate
        self.creds = {k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                          "AWS_DEFAULT_REGION")}
        import boto3
        from botocore.config import Config
        self.s3 = boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.creds["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.creds["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))

    def url(self, bucket, prefix=""):
        return f"s3:{self.endpoint}/{bucket}" + (f"/{prefix}" if prefix else "")

    def url_tls(self, bucket, prefix=""):
        return f"s3:{self.endpoint_tls}/{bucket}" + (f"/{prefix}" if prefix else "")

    def versions(self, bucket, prefix=""):
        out = []
        for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=bucket,
                                                                           Prefix=prefix):
            out += page.get("Versions", [])
        return out

    def keys(self, bucket, prefix=""):
        out = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                      Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return out

    def stop_rgw(self):
        """radosgw dies at once (SIGKILL): connections drop in the middle of transfers."""
        h.run([h.ROOT / "tests/ceph/stop-ceph.sh", self.dir, "--rgw-only"], timeout=60,
              env=h.clean_env({"CEPH_STOP_SIGNAL": "KILL"})).ok()

    def start_rgw(self):
        h.run([self.dir / "rgw-start"], timeout=60).ok()


@pytest.fixture(scope="module")
def ceph(tmp_path_factory):
    start = h.ROOT / "tests/ceph/start-ceph.sh"
    t0 = time.monotonic()
    res = h.run([start], timeout=180)
    if res.rc != 0:
        pytest.fail("could not start Ceph (scripts/bootstrap installs ceph-mon ceph-mgr ceph-osd "
                    "radosgw ceph-common):\n" + res.describe())
    env = dict(line.split("=", 1) for line in res.out.splitlines() if "=" in line)
    print(f"Ceph RGW at {env['S3_ENDPOINT']} after {time.monotonic() - t0:.1f} s")
    try:
        yield Ceph(env)
    finally:
        h.run([h.ROOT / "tests/ceph/stop-ceph.sh", env["CEPH_DIR"]], timeout=120)


@pytest.fixture
def s3hf(ceph, holdfast):
    """holdfast with the cluster's credentials in the environment."""
    def run(*args, env=None, **kw):
        return holdfast(*args, env={**ceph.creds, **(env or {})}, **kw)
    return run


@pytest.fixture
def s3restic(ceph, restic):
    def run(*args, env=None, **kw):
        return restic(*args, env={**ceph.creds, **(env or {})}, **kw)
    return run


def restored(target, source):
    return Path(target) / Path(source).relative_to("/")


def tree(root, seed, files=8, size=300_000):
    rng = random.Random(seed)
    (root / "sub").mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (root / f"f{i}.bin").write_bytes(rng.randbytes(size + i))
    (root / "sub" / "notes.txt").write_text(f"tree {seed}\n" * 1000)
    return root


def one_error(res, *needles):
    """Exit 1 and exactly one line on stderr, a sentence naming every needle."""
    res.expect(1)
    lines = res.err_lines()
    assert len(lines) == 1, "want one clear line:\n" + res.describe()
    for n in needles:
        assert n in lines[0], f"want {n!r} in the message:\n" + res.describe()
    return lines[0]


def parse_time(s):
    return datetime.datetime.fromisoformat(s[:19]).replace(tzinfo=datetime.timezone.utc)


# --------------------------------------------------------------------------------------------
# Interoperability with restic's s3 backend


def test_holdfast_writes_restic_reads(ceph, s3hf, s3restic, rich_tree, target_dir):
    repo = ceph.url("interop", "by-holdfast")
    s3hf("init", *KDF, repo=repo).ok()
    src = rich_tree.root
    s3hf("backup", src, repo=repo).ok()
    s3hf("backup", src, repo=repo).ok()  # a second snapshot reusing every pack
    # restic's layout: keys/, snapshots/, index/, data/<xx>/<id> under the prefix
    keys = ceph.keys("interop", "by-holdfast/")
    assert "by-holdfast/config" in keys
    packs = [k for k in keys if k.startswith("by-holdfast/data/")]
    assert packs and all(k.split("/")[2] == k.split("/")[3][:2] for k in packs), packs
    s3restic("check", "--read-data", repo=repo).ok()
    assert len(s3restic("snapshots", "--json", repo=repo).ok().json()) == 2
    s3restic("restore", "latest", "--target", target_dir, repo=repo).ok()
    h.assert_trees_equal(src, restored(target_dir, src))


def test_restic_writes_holdfast_reads(ceph, s3hf, s3restic, rich_tree, target_dir, tmp_path):
    repo = ceph.url("interop", "by-restic")
    s3restic("init", repo=repo).ok()
    src = rich_tree.root
    s3restic("backup", src, repo=repo).ok()
    s3hf("check", "--read-data", repo=repo).ok()
    s3hf("restore", "latest", "--target", target_dir, repo=repo).ok()
    h.assert_trees_equal(src, restored(target_dir, src))
    # and holdfast adds to restic's vault, which restic still accepts
    s3hf("backup", tree(tmp_path / "more", 7), repo=repo).ok()
    s3restic("check", "--read-data", repo=repo).ok()


# --------------------------------------------------------------------------------------------
# Object Lock


def delete_version(ceph, bucket, v):
    """The owner's DELETE of one version: None when it went, else the S3 error code."""
    try:
        ceph.s3.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
        return None
    except ceph.s3.exceptions.ClientError as e:
        return e.response["Error"]["Code"]


def retention(ceph, bucket, key, version=None):
    kw = {"VersionId": version} if version else {}
    r = ceph.s3.get_object_retention(Bucket=bucket, Key=key, **kw)["Retention"]
    return r["Mode"], r["RetainUntilDate"]


def test_object_lock_compliance(ceph, s3hf, s3restic, tmp_path, target_dir):
    bucket, repo = "locked", ceph.url("locked", "vault")
    lock_env = {"HOLDFAST_S3_LOCK_SECONDS": str(LOCK_SECONDS)}
    res = s3hf("init", *KDF, "--object-lock", "1", repo=repo).ok()
    assert "Object Lock" in res.out
    cfg = ceph.s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert cfg["Rule"]["DefaultRetention"] == {"Mode": "COMPLIANCE", "Days": 1}

    src = tree(tmp_path / "src", 1)
    s3hf("backup", src, repo=repo, env=lock_env).ok()
    first = time.time()
    packs = ceph.versions(bucket, "vault/data/")
    assert packs
    for v in ceph.versions(bucket, "vault/"):
        # Every object carries its own retain-until date; lock files are gone for good.
        assert "/locks/" not in v["Key"], v["Key"]
        mode, _ = retention(ceph, bucket, v["Key"], v["VersionId"])
        assert mode == "COMPLIANCE", v["Key"]

    # The owner cannot delete any pack version, and the vault stays whole.
    for v in packs:
        assert delete_version(ceph, bucket, v) == "AccessDenied", v["Key"]
    s3restic("check", "--read-data", repo=repo).ok()

    # A second backup 4 s later reuses every pack and extends their retention to its own
    # snapshot time plus the period.
    time.sleep(4)
    s3hf("backup", src, repo=repo, env=lock_env).ok()
    snaps = s3hf("snapshots", "--json", repo=repo).ok().json()
    latest = max(parse_time(s["time"]) for s in snaps)
    until = []
    for v in packs:
        mode, when = retention(ceph, bucket, v["Key"], v["VersionId"])
        assert mode == "COMPLIANCE"
        assert when >= latest + datetime.timedelta(seconds=LOCK_SECONDS), (v["Key"], when)
        until.append(when)
    # Extended in place: no pack was written again.
    keys = [v["Key"] for v in ceph.versions(bucket, "vault/data/")]
    assert all(keys.count(v["Key"]) == 1 for v in packs)

    # Removing a key file (the maintenance holdfast has): refused, with the reason.
    key = s3hf("key", "list", "--json", repo=repo).ok().json()[0]["id"]
    newpw = tmp_path / "newpw"
    newpw.write_text("second password\n")
    s3hf("key", "add", *KDF, "--new-password-file", newpw, repo=repo, env=lock_env).ok()
    other = [k["id"] for k in s3hf("key", "list", "--json", repo=repo).ok().json()
             if k["id"] != key][0]
    res = s3hf("key", "remove", other, repo=repo)
    assert res.rc == 1 and "Object Lock" in res.err, res.describe()

    # A vault under lock stays restorable, end to end.
    s3hf("restore", "latest", "--target", target_dir, repo=repo).ok()
    h.assert_trees_equal(src, restored(target_dir, src))

    # Once the retention has passed, the owner can delete: the lock was what refused.
    wait = max(until).timestamp() - time.time() + 1.5
    assert wait < 60
    time.sleep(max(wait, 0))
    assert delete_version(ceph, bucket, packs[0]) is None
    assert time.time() - first >= LOCK_SECONDS


def test_governance_lock_files_stay_deletable(ceph, s3hf, s3restic, restic_bin, tmp_path):
    bucket, repo = "governed", ceph.url("governed")
    s3hf("init", *KDF, "--object-lock", "1", "--lock-mode", "governance", repo=repo).ok()
    src = tree(tmp_path / "src", 2, files=2)
    s3hf("backup", src, repo=repo).ok()
    mode, _ = retention(ceph, bucket, ceph.keys(bucket, "data/")[0])
    assert mode == "GOVERNANCE"
    # A lock restic leaves behind (killed) is removed by holdfast unlock, every version of it.
    p = subprocess.Popen([restic_bin, "--no-cache", "-r", repo, "backup", "--stdin"],
                         stdin=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=h.clean_env({**ceph.creds, "RESTIC_PASSWORD": "holdfast-test"}))
    deadline = time.monotonic() + 30
    while not ceph.keys(bucket, "locks/") and time.monotonic() < deadline:
        time.sleep(0.2)
    p.kill()
    p.wait()
    assert ceph.keys(bucket, "locks/")
    res = s3hf("unlock", "--remove-all", repo=repo).ok()
    assert not ceph.versions(bucket, "locks/"), res.describe()
    s3restic("check", repo=repo).ok()


def test_large_packs_go_up_in_parts(ceph, s3hf, s3restic, scratch, target_dir):
    """Packs past 48 MiB are multipart uploads (parts in parallel), with the retention set at
    initiation."""
    bucket, repo = "bigpacks", ceph.url("bigpacks")
    s3hf("init", *KDF, "--object-lock", "1", "--lock-mode", "governance", repo=repo).ok()
    src = scratch / "big"
    src.mkdir()
    rng = random.Random(9)
    for i in range(5):
        (src / f"b{i}.bin").write_bytes(rng.randbytes(20 << 20))
    s3hf("backup", "--pack-size", "64", src, repo=repo).ok()
    big = [k for k in ceph.keys(bucket, "data/")
           if ceph.s3.head_object(Bucket=bucket, Key=k)["ContentLength"] >= 48 << 20]
    assert big, "no pack went up in parts"
    for k in big:
        head = ceph.s3.head_object(Bucket=bucket, Key=k)
        parts = -(-head["ContentLength"] // (16 << 20))  # 16 MiB parts
        assert head["ETag"].strip('"').endswith(f"-{parts}"), head["ETag"]
        assert head["ObjectLockMode"] == "GOVERNANCE"
    assert not ceph.s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    s3restic("check", "--read-data", repo=repo).ok()
    s3hf("restore", "latest", "--target", target_dir, repo=repo).ok()
    h.assert_trees_equal(src, restored(target_dir, src))


# --------------------------------------------------------------------------------------------
# Scale-out: many clients, several servers


def test_eight_clients_at_once(ceph, s3hf, s3restic, holdfast_bin, tmp_path):
    repo = ceph.url("fleet", "shared")
    s3hf("init", *KDF, repo=repo).ok()
    env = h.clean_env({**ceph.creds, "HOLDFAST_PASSWORD": "holdfast-test"})
    procs = []
    for i in range(8):
        src = tree(tmp_path / f"host{i}", 100 + i, files=4)
        (src / "common.txt").write_text("shared by every host\n" * 5000)
        procs.append((src, subprocess.Popen(
            [holdfast_bin, "-r", repo, "backup", "--host", f"host{i}", src],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)))
    for src, p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, f"{src}: exit {p.returncode}\n{err.decode()}"
        assert b"error" not in err, err.decode()
    snaps = s3restic("snapshots", "--json", repo=repo).ok().json()
    assert sorted(s["hostname"] for s in snaps) == [f"host{i}" for i in range(8)]
    s3restic("check", "--read-data", repo=repo).ok()


class Serve:
    """holdfast serve --backend s3:... on 127.0.0.1 port 0."""

    def __init__(self, binary, root, backend, creds, env=None):
        root.mkdir(parents=True, exist_ok=True)
        self.log = root.parent / f"{root.name}.log"
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                [binary, "serve", "--root", root, "--backend", backend, "--no-auth",
                 "--listen", "127.0.0.1:0", "--json"], stdout=subprocess.PIPE, stderr=err,
                stdin=subprocess.DEVNULL, env=h.clean_env({**creds, **(env or {})}))
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.proc.kill()
            raise AssertionError("holdfast serve did not start:\n" + self.log.read_text())
        self.addr = json.loads(line)["address"]

    def rest(self, repo):
        return f"rest:http://{self.addr}/{repo}"

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        text = self.log.read_text(errors="replace")
        for marker in h.SANITIZER_MARKERS:
            assert marker not in text, "server crashed:\n" + text
        return self.proc.returncode


def test_two_servers_one_bucket(ceph, holdfast_bin, restic, holdfast, tmp_path, target_dir):
    ceph.s3.create_bucket(Bucket="served")
    servers = [Serve(holdfast_bin, tmp_path / f"state{i}", ceph.url("served", "vaults"),
                     ceph.creds) for i in range(2)]
    try:
        a, b = servers
        restic("init", repo=a.rest("alice")).ok()
        one, two = tree(tmp_path / "one", 11), tree(tmp_path / "two", 12)
        restic("backup", one, repo=a.rest("alice")).ok()
        restic("backup", two, repo=b.rest("alice")).ok()
        holdfast("backup", one, repo=b.rest("alice")).ok()
        assert len(restic("snapshots", "--json", repo=b.rest("alice")).ok().json()) == 3
        restic("restore", "latest", "--path", str(two), "--target", target_dir,
               repo=a.rest("alice")).ok()
        h.assert_trees_equal(two, restored(target_dir, two))
        restic("check", "--read-data", repo=b.rest("alice")).ok()
        # The objects are in the bucket, in restic's layout, not on either server.
        assert "vaults/alice/config" in ceph.keys("served", "vaults/alice/")
        assert not list((tmp_path / "state0").rglob("config"))
    finally:
        for s in servers:
            assert s.stop() == 0


def test_serve_keeps_object_lock(ceph, holdfast_bin, holdfast, tmp_path):
    """Through holdfast serve --backend on a locked bucket: what clients write is locked, a
    DELETE the lock refuses is 403, and holdfast clients still extend the retention of the
    packs their new snapshot reuses (POST ?retain=)."""
    bucket = "servedlock"
    env = {**ceph.creds}
    holdfast("init", *KDF, "--object-lock", "1", repo=ceph.url(bucket, "vaults/bob"),
             env=env).ok()
    s = Serve(holdfast_bin, tmp_path / "state", ceph.url(bucket, "vaults"), ceph.creds,
              env={"HOLDFAST_S3_LOCK_SECONDS": str(LOCK_SECONDS)})
    try:
        src = tree(tmp_path / "src", 21, files=3)
        holdfast("backup", src, repo=s.rest("bob")).ok()
        packs = ceph.versions(bucket, "vaults/bob/data/")
        assert packs
        time.sleep(3)
        holdfast("backup", src, repo=s.rest("bob")).ok()
        snaps = holdfast("snapshots", "--json", repo=s.rest("bob")).ok().json()
        latest = max(parse_time(x["time"]) for x in snaps)
        for v in packs:
            mode, when = retention(ceph, bucket, v["Key"], v["VersionId"])
            assert mode == "COMPLIANCE"
            assert when >= latest + datetime.timedelta(seconds=LOCK_SECONDS), (v["Key"], when)
        name = packs[0]["Key"].rsplit("/", 1)[1]
        req = urllib.request.Request(f"http://{s.addr}/bob/data/{name}", method="DELETE")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=30)
        assert e.value.code == 403
        # A retention far beyond the bucket's period is refused.
        req = urllib.request.Request(f"http://{s.addr}/bob/data/{name}?retain=4000000000",
                                     method="POST", data=b"")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=30)
        assert e.value.code == 400
        holdfast("check", "--read-data", repo=s.rest("bob")).ok()
    finally:
        assert s.stop() == 0


# --------------------------------------------------------------------------------------------
# Faults and bad input


def test_rgw_stops_during_backup(ceph, s3hf, s3restic, holdfast_bin, scratch):
    repo = ceph.url("faults", "vault")
    s3hf("init", *KDF, repo=repo).ok()
    src = scratch / "big"
    src.mkdir()
    rng = random.Random(5)
    for i in range(32):
        (src / f"b{i}.bin").write_bytes(rng.randbytes(16 << 20))
    env = h.clean_env({**ceph.creds, "HOLDFAST_PASSWORD": "holdfast-test",
                       "HOLDFAST_S3_TRIES": "4"})
    p = subprocess.Popen([holdfast_bin, "-r", repo, "backup", src], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 60
    while not ceph.keys("faults", "vault/data/") and time.monotonic() < deadline:
        assert p.poll() is None, "the backup ended before radosgw was stopped"
        time.sleep(0.05)
    ceph.stop_rgw()
    try:
        out, err = p.communicate(timeout=120)
    finally:
        ceph.start_rgw()
    err = err.decode()
    assert p.returncode == 1, err
    # The cause comes first, once, in one sentence (what it took down is named after it).
    lines = [line for line in err.splitlines() if line.strip()]
    assert "cannot reach the S3 server" in lines[0] and "after 4 tries" in lines[0], err
    assert len([line for line in lines if "S3 server" in line]) == 1, err
    # Consistent: restic accepts the vault (after the dead process's lock is gone).
    s3hf("unlock", repo=repo).ok()
    s3restic("check", "--read-data", repo=repo).ok()
    # The next backup completes, reusing what the first one stored.
    res = s3hf("backup", "--json", src, repo=repo).ok()
    assert res.jsonl()[-1]["message_type"] == "summary"
    s3restic("check", "--read-data", repo=repo).ok()


def test_clear_errors(ceph, s3hf, holdfast, tmp_path):
    repo = ceph.url("errors", "vault")
    s3hf("init", *KDF, repo=repo).ok()
    # wrong secret, unknown access key
    one_error(s3hf("snapshots", repo=repo, env={"AWS_SECRET_ACCESS_KEY": "wrong"}),
              "refused the credentials", "AWS_SECRET_ACCESS_KEY")
    one_error(s3hf("snapshots", repo=repo, env={"AWS_ACCESS_KEY_ID": "NOSUCHKEY"}),
              "refused the credentials", "InvalidAccessKeyId")
    # no credentials at all
    one_error(holdfast("snapshots", repo=repo,
                       env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}),
              "AWS_ACCESS_KEY_ID")
    # a missing bucket
    one_error(s3hf("snapshots", repo=ceph.url("no-such-bucket", "vault")), "no-such-bucket",
              "does not exist")
    # Object Lock asked for on a bucket made without it
    one_error(s3hf("init", *KDF, "--object-lock", "3", repo=ceph.url("errors", "other")),
              "has no Object Lock")
    # the server refuses a clock 20 minutes off
    res = s3hf("snapshots", repo=repo, env={
        "LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "FAKETIME": "-20m", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        # the sanitizer build: libfaketime is preloaded before the ASan runtime
        "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"})
    one_error(res, "clock", "behind", "RequestTimeTooSkewed")
    # and a malformed location
    one_error(s3hf("snapshots", repo="s3:http://127.0.0.1/"), "not an S3 location")


# --------------------------------------------------------------------------------------------
# HTTPS: RGW's TLS endpoint, its certificate signed by the cluster's throw-away CA


def test_tls_round_trip(ceph, s3hf, s3restic, rich_tree, target_dir):
    repo = ceph.url_tls("tls", "vault")
    ca = {"HOLDFAST_CACERT": ceph.cacert}
    s3hf("init", *KDF, repo=repo, env=ca).ok()
    src = rich_tree.root
    s3hf("backup", src, repo=repo, env=ca).ok()
    s3hf("restore", "latest", "--target", target_dir, repo=repo, env=ca).ok()
    h.assert_trees_equal(src, restored(target_dir, src))
    # The global --cacert says the same as HOLDFAST_CACERT.
    assert len(s3hf("--cacert", ceph.cacert, "snapshots", "--json", repo=repo).ok().json()) == 1
    s3restic("--cacert", ceph.cacert, "check", "--read-data", repo=repo).ok()


def test_tls_signed_uploads(ceph, s3hf, s3restic, tmp_path, target_dir):
    """Uploads of pack files over TLS (which s3.c signs as UNSIGNED-PAYLOAD, not with each
    body's SHA-256) are accepted by RGW and arrive intact. The test does not see which payload
    hash was signed: a client that went back to signed payloads would pass it too."""
    repo = ceph.url_tls("tlsdata")
    ca = {"HOLDFAST_CACERT": ceph.cacert}
    s3hf("init", *KDF, repo=repo, env=ca).ok()
    src = tmp_path / "random"
    src.mkdir()
    rng = random.Random(31)
    for i in range(3):
        (src / f"r{i}.bin").write_bytes(rng.randbytes((2 << 20) + i))
    res = s3hf("backup", "--json", src, repo=repo, env=ca).ok()
    summary = res.jsonl()[-1]
    assert summary["message_type"] == "summary" and summary["data_added"] >= 6 << 20, summary
    packs = ceph.keys("tlsdata", "data/")
    assert sum(ceph.s3.head_object(Bucket="tlsdata", Key=k)["ContentLength"]
               for k in packs) >= 6 << 20
    s3restic("--cacert", ceph.cacert, "check", "--read-data", repo=repo).ok()
    s3hf("check", "--read-data", repo=repo, env=ca).ok()
    s3hf("restore", "latest", "--target", target_dir, repo=repo, env=ca).ok()
    h.assert_trees_equal(src, restored(target_dir, src))


def test_tls_untrusted_certificate(ceph, s3hf, tmp_path):
    """Without the CA (the system store does not trust it) every command stops at the TLS
    handshake: one sentence naming the server and what to set, exit 1, nothing written."""
    # init of a new bucket: the bucket is not created
    one_error(s3hf("init", *KDF, repo=ceph.url_tls("tlsnoca")), ceph.endpoint_tls,
              "certificate", "not trusted", "HOLDFAST_CACERT")
    with pytest.raises(ceph.s3.exceptions.ClientError):
        ceph.s3.head_bucket(Bucket="tlsnoca")

    # backup into a vault that exists: no object is added
    repo = ceph.url_tls("tlsknown")
    s3hf("init", *KDF, repo=repo, env={"HOLDFAST_CACERT": ceph.cacert}).ok()
    before = sorted(ceph.keys("tlsknown"))
    src = tree(tmp_path / "src", 41, files=2)
    one_error(s3hf("backup", src, repo=repo), ceph.endpoint_tls, "not trusted",
              "HOLDFAST_CACERT")
    # RESTIC_CACERT naming a CA that did not sign it: also refused, and the file is named
    res = s3hf("backup", src, repo=repo,
               env={"RESTIC_CACERT": "/etc/ssl/certs/ca-certificates.crt"})
    one_error(res, "not trusted by the CA certificates in /etc/ssl/certs/ca-certificates.crt")
    # a CA file that cannot be read
    one_error(s3hf("snapshots", repo=repo, env={"HOLDFAST_CACERT": str(tmp_path / "none.pem")}),
              "cannot use the CA certificates in", "none.pem")
    assert sorted(ceph.keys("tlsknown")) == before
