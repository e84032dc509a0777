# SPDX-License-Identifier: LGPL-2.1-or-later
"""holdfast serve (issue 3) and the rest: client, against real peers on loopback: restic 0.14
against holdfast serve, holdfast's client against holdfast serve and against Debian's
`rclone serve restic`, and direct HTTP (curl, raw sockets) for what a hostile client may send.
Every server listens on 127.0.0.1 port 0 and reports the port it got.
"""
import hashlib
import secrets
from http.server import BaseHTTPRequestHandler, HTTPServer
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

import helpers as h

KDF = ["--kdf-params", "1024,8,1"]
ZERO = "0" * 64


# --------------------------------------------------------------------------------------------
# Servers


class Serve:
    """A running `holdfast serve` on 127.0.0.1 (port 0); its stderr goes to self.log."""

    def __init__(self, binary, root, *args, user=None, password=None, env=None):
        self.binary, self.root, self.args = binary, Path(root), list(args)
        self.user, self.password = user, password
        self.env = h.clean_env(env)
        self.log = self.root.parent / f"serve-{self.root.name}.log"
        self.proc = None
        self.start()

    def start(self):
        err = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--root", self.root, "--listen", "127.0.0.1:0", "--json",
             "-v", *self.args], stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
            env=self.env)
        err.close()
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.proc.kill()
            raise AssertionError(f"holdfast serve did not start:\n{self.log_text()}")
        info = json.loads(line)
        assert info["message_type"] == "listening", line
        self.addr = info["address"]
        self.port = int(self.addr.rsplit(":", 1)[1])
        self.scheme = "https" if info["tls"] else "http"

    def url(self, path="", creds=True, user=None, password=None):
        user = user or self.user
        password = password if password is not None else self.password
        auth = f"{user}:{password}@" if creds and user else ""
        return f"{self.scheme}://{auth}127.0.0.1:{self.port}{path}"

    def rest(self, repo):
        return "rest:" + self.url("/" + repo)

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        rc = self.proc.returncode if self.proc else None
        self.proc = None
        for marker in h.SANITIZER_MARKERS:
            assert marker not in self.log_text(), "server crashed:\n" + self.log_text()
        return rc

    def objects(self, repo, kind="data"):
        base = self.root / repo / kind
        return sorted(p.name for p in base.rglob("*") if p.is_file()) if base.exists() else []


@pytest.fixture
def serve(holdfast_bin, tmp_path):
    servers = []
    n = [0]

    def start(*args, root=None, auth=True, **kw):
        n[0] += 1
        root = Path(root) if root else tmp_path / f"root{n[0]}"
        root.mkdir(parents=True, exist_ok=True)
        if auth and "--no-auth" not in args and "--htpasswd" not in args:
            make_htpasswd(root / ".htpasswd", {"alice": "alice-pw", "bob": "bob-pw"})
            kw.setdefault("user", "alice")
            kw.setdefault("password", "alice-pw")
        s = Serve(holdfast_bin, root, *args, **kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


def make_htpasswd(path, users):
    path.unlink(missing_ok=True)
    for i, (u, p) in enumerate(users.items()):
        cmd = ["htpasswd", "-B", "-b"] + (["-c"] if i == 0 else []) + [path, u, p]
        h.run(cmd).ok()


class Rclone:
    def __init__(self, data, log):
        self.log = log
        err = open(log, "wb")
        env = h.clean_env({"RCLONE_CONFIG": str(Path(log).parent / "rclone.conf")})
        self.proc = subprocess.Popen(
            ["rclone", "serve", "restic", "--addr", "127.0.0.1:0", str(data)],
            stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL, env=env)
        err.close()
        deadline = time.time() + 20
        while time.time() < deadline:
            m = re.search(r"http://127\.0\.0\.1:(\d+)/", Path(log).read_text())
            if m:
                self.port = int(m.group(1))
                return
            assert self.proc.poll() is None, "rclone exited:\n" + Path(log).read_text()
            time.sleep(0.05)
        self.proc.kill()
        raise AssertionError("rclone serve restic did not start:\n" + Path(log).read_text())

    def rest(self, repo):
        return f"rest:http://127.0.0.1:{self.port}/{repo}"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def rclone(tmp_path):
    if not shutil.which("rclone"):
        pytest.fail("rclone not found: scripts/bootstrap installs Debian's rclone")
    r = Rclone(tmp_path / "rclone-data", tmp_path / "rclone.log")
    yield r
    r.stop()


# --------------------------------------------------------------------------------------------
# Raw HTTP


def http(s, method, path, body=None, headers=None, creds=True, user=None, password=None,
         timeout=10):
    """One request with urllib; returns (status, headers, body). path is sent as given."""
    url = s.url(path, creds=False)
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    if creds and (user or s.user):
        import base64
        tok = base64.b64encode(f"{user or s.user}:{password or s.password}".encode()).decode()
        req.add_header("Authorization", "Basic " + tok)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def raw(s, data, timeout=10):
    """Sends raw bytes, returns everything the server answered before closing (or timeout)."""
    with socket.create_connection(("127.0.0.1", s.port), timeout=timeout) as c:
        c.sendall(data)
        out = b""
        try:
            while True:
                b = c.recv(65536)
                if not b:
                    break
                out += b
        except socket.timeout:
            pass
        return out


def status_of(resp):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", resp)
    return int(m.group(1)) if m else None


def auth_header(user="alice", password="alice-pw"):
    import base64
    return b"Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()) + b"\r\n"


def sha(b):
    return hashlib.sha256(b).hexdigest()


def create_repo(s, repo):
    st, _, body = http(s, "POST", f"/{repo}/?create=true")
    assert st == 200, body


def small_tree(root, seed=1, files=6, size=40_000):
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (root / f"f{i}.bin").write_bytes(rng.randbytes(size + i))
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / "text.txt").write_text("hello from holdfast serve\n" * 50)
    return root


def restored(target, source):
    return Path(target) / Path(source).relative_to("/")


# --------------------------------------------------------------------------------------------
# restic forget --prune against --append-only: restic 0.14 retries a 403 for ~45 s, so it
# starts before the first test of this module and is judged by the last one.


@pytest.fixture(scope="module")
def append_only_forget(holdfast_bin, restic_bin, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("append-only")
    root = tmp / "root"
    root.mkdir()
    make_htpasswd(root / ".htpasswd", {"alice": "alice-pw"})
    s = Serve(holdfast_bin, root, "--append-only", user="alice", password="alice-pw")
    restic = h.Restic(restic_bin)
    src = small_tree(tmp / "src")
    repo = s.rest("alice/laptop")
    restic("init", repo=repo).ok()
    restic("backup", src, repo=repo).ok()
    (src / "f0.bin").write_bytes(b"changed")
    restic("backup", src, repo=repo).ok()
    before = {k: s.objects("alice/laptop", k) for k in ("data", "index", "snapshots", "keys")}
    env = h.clean_env({"RESTIC_PASSWORD": restic.password})
    proc = subprocess.Popen([restic_bin, "--no-cache", "-r", repo, "forget", "--keep-last", "1",
                             "--prune"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    yield {"server": s, "proc": proc, "before": before, "repo": repo, "restic": restic}
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    s.stop()


pytestmark = pytest.mark.usefixtures("append_only_forget")


# --------------------------------------------------------------------------------------------
# Command line


def test_serve_help_and_usage(holdfast, tmp_path):
    res = holdfast("serve", "--help").ok()
    for opt in ("--root", "--listen", "--append-only", "--retention", "--htpasswd",
                "--tls-cert", "--verify", "--heartbeat-timeout", "--private-repos"):
        assert opt in res.out, res.describe()
    holdfast("serve").expect(2)
    holdfast("serve", "--root", tmp_path / "r", "--retention", "soon").expect(2)
    holdfast("serve", "--root", tmp_path / "r", "--tls-cert", "x").expect(2)
    # No htpasswd and no --no-auth: refuses to serve an open door.
    res = holdfast("serve", "--root", tmp_path / "r", "--listen", "127.0.0.1:0").expect(1)
    assert ".htpasswd" in res.err and "--no-auth" in res.err, res.describe()
    assert "serve" in holdfast("--help").out


# --------------------------------------------------------------------------------------------
# restic 0.14 against holdfast serve


def test_restic_against_holdfast_serve(serve, restic, holdfast, tmp_path, rich_tree):
    s = serve()
    repo = s.rest("alice/laptop")
    restic("init", repo=repo).ok()
    restic("backup", rich_tree.root, repo=repo).ok()
    res = restic("check", "--read-data", repo=repo).ok()
    assert "no errors were found" in res.out, res.describe()
    target = tmp_path / "restore"
    restic("restore", "latest", "--target", target, repo=repo).ok()
    h.assert_trees_equal(rich_tree.root, restored(target, rich_tree.root))
    # The vault on disk is in the local layout: holdfast and restic open it directly.
    on_disk = s.root / "alice" / "laptop"
    assert len(holdfast("snapshots", "--json", repo=on_disk,
                        password=restic.password).ok().json()) == 1
    restic("check", repo=on_disk).ok()
    # Every object was recorded; the log and the files agree.
    res = holdfast("serve", "--verify", "--root", s.root, password=False).ok()
    assert "0 problems" in res.out, res.describe()


# --------------------------------------------------------------------------------------------
# holdfast's client against holdfast serve and rclone serve restic


def client_round_trip(holdfast, restic, repo, src, target):
    holdfast("init", *KDF, repo=repo).ok()
    first = holdfast("backup", "--json", src, repo=repo).ok().jsonl()[-1]
    (src / "new.txt").write_text("a second snapshot\n")
    holdfast("backup", src, repo=repo).ok()
    snaps = holdfast("snapshots", "--json", repo=repo).ok().json()
    assert len(snaps) == 2 and first["snapshot_id"] in {x["id"] for x in snaps}
    res = holdfast("check", "--read-data", repo=repo).ok()
    res = holdfast("-vv", "restore", "latest", "--target", target, "--verify", repo=repo).ok()
    # A listing through a server may lag behind a save: the lock protocol keeps its pause.
    assert "lock: second look after the protocol's pause" in res.err, res.describe()
    assert "second look at once" not in res.err, res.describe()
    h.assert_trees_equal(src, restored(target, src))
    holdfast("ls", "latest", repo=repo).ok()
    holdfast("diff", first["snapshot_id"], "latest", repo=repo).ok()
    # restic reads what holdfast wrote through the server.
    res = restic("check", "--read-data", repo=repo, password=holdfast.password).ok()
    assert "no errors were found" in res.out, res.describe()
    return snaps


def test_holdfast_client_against_holdfast_serve(serve, holdfast, restic, tmp_path):
    s = serve()
    src = small_tree(tmp_path / "src")
    client_round_trip(holdfast, restic, s.rest("alice/web1"), src, tmp_path / "t")
    assert s.objects("alice/web1", "snapshots")
    assert "0 problems" in holdfast("serve", "--verify", "--root", s.root,
                                    password=False).ok().out


def test_stored_packs_leave_the_page_cache(serve, holdfast, tmp_path):
    """The server drops what it stored from the page cache once it is durable (root on the
    root disk: on tmpfs the page cache is the storage)."""
    root = Path(tempfile.mkdtemp(prefix="holdfast-pc-", dir="/var/tmp"))
    try:
        s = serve(root=root / "root")
        src = tmp_path / "src"
        src.mkdir()
        for i in range(2):
            (src / f"f{i}").write_bytes(secrets.token_bytes(6 * h.MIB))
        repo = s.rest("alice/web1")
        holdfast("init", *KDF, repo=repo).ok()
        holdfast("backup", src, repo=repo).ok()
        packs = h.pack_paths(s.root / "alice/web1")
        assert sum(p.stat().st_size for p in packs) > 12 * h.MIB
        assert h.resident_bytes(packs) == 0
        s.stop()
    finally:
        h.rmtree(root)


def test_holdfast_client_against_rclone(rclone, holdfast, restic, tmp_path):
    src = small_tree(tmp_path / "src", seed=2)
    client_round_trip(holdfast, restic, rclone.rest("vault1"), src, tmp_path / "t")
    # init twice: the config exists
    res = holdfast("init", *KDF, repo=rclone.rest("vault1")).expect(1)
    assert "already" in res.err, res.describe()


def test_client_messages(serve, holdfast, tmp_path):
    s = serve()
    src = small_tree(tmp_path / "src", files=1)
    holdfast("init", *KDF, repo=s.rest("alice/x")).ok()
    # Wrong password in the URL: 401, said once, and the password is never printed.
    bad = "rest:" + s.url("/alice/x", password="not-the-password")
    res = holdfast("snapshots", repo=bad).expect(1)
    assert "401" in res.err and "not-the-password" not in res.err, res.describe()
    # Nothing listening: a clear connection error after the retries.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    res = holdfast("backup", src, repo=f"rest:http://u:secret@127.0.0.1:{port}/r",
                   env={"HOLDFAST_REST_TRIES": "2"}).expect(1)
    assert "refused" in res.err.lower() and "secret" not in res.err, res.describe()
    # Not a vault.
    create_repo(s, "alice/empty")
    res = holdfast("snapshots", repo=s.rest("alice/empty")).expect(1)
    assert "not a vault" in res.err, res.describe()


class FlakyProxy:
    """Forwards to a server but drops the v2 Accept header (so the server answers v1 listings)
    and answers 503 to every fifth request: the client must fall back to v1 (HEAD per file)
    and retry."""

    def __init__(self, target_port):
        proxy = self
        self.count = 0
        self.failed = 0
        self.v1_listings = 0
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _do(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                with proxy.lock:
                    proxy.count += 1
                    fail = proxy.count % 5 == 0
                if fail:
                    proxy.failed += 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                hdrs = {k: v for k, v in self.headers.items()
                        if k.lower() not in ("accept", "host", "content-length", "connection")}
                req = urllib.request.Request(f"http://127.0.0.1:{target_port}{self.path}",
                                             data=body, method=self.command, headers=hdrs)
                try:
                    with urllib.request.urlopen(req, timeout=30) as r:
                        st, rh, data = r.status, r.headers, r.read()
                except urllib.error.HTTPError as e:
                    st, rh, data = e.code, e.headers, e.read()
                if self.command == "GET" and self.path.endswith("/") and st == 200:
                    with proxy.lock:
                        proxy.v1_listings += 1
                self.send_response(st)
                for k in ("Content-Type", "Content-Range"):
                    if rh.get(k):
                        self.send_header(k, rh[k])
                self.send_header("Content-Length", rh.get("Content-Length") or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_HEAD = _do

        class Server(socketserver.ThreadingMixIn, HTTPServer):
            daemon_threads = True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_client_v1_listing_and_retries(serve, holdfast, tmp_path):
    s = serve("--no-auth", auth=False)
    proxy = FlakyProxy(s.port)
    try:
        repo = f"rest:http://127.0.0.1:{proxy.port}/flaky"
        src = small_tree(tmp_path / "src", files=3)
        holdfast("init", *KDF, repo=repo).ok()
        holdfast("backup", src, repo=repo).ok()
        res = holdfast("check", "--read-data", repo=repo).ok()
        assert "retrying" in res.err or proxy.failed, res.describe()
        assert proxy.failed > 0 and proxy.v1_listings > 0
        holdfast("restore", "latest", "--target", tmp_path / "t", repo=repo).ok()
        h.assert_trees_equal(src, restored(tmp_path / "t", src))
    finally:
        proxy.stop()


def test_tls_with_self_signed_certificate(serve, holdfast, restic, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    h.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out",
           cert, "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
           "subjectAltName=IP:127.0.0.1"]).ok()
    s = serve("--tls-cert", cert, "--tls-key", key)
    assert s.scheme == "https"
    repo = s.rest("alice/tls")
    src = small_tree(tmp_path / "src", files=2)
    holdfast("--cacert", cert, "init", *KDF, repo=repo).ok()
    holdfast("backup", src, repo=repo, env={"HOLDFAST_CACERT": str(cert)}).ok()
    holdfast("check", "--read-data", repo=repo, env={"HOLDFAST_CACERT": str(cert)}).ok()
    res = restic("--cacert", cert, "check", "--read-data", repo=repo,
                 password=holdfast.password).ok()
    assert "no errors were found" in res.out
    # Without the certificate: refused, exit 1, no retry storm.
    res = holdfast("snapshots", repo=repo, env={"HOLDFAST_REST_TRIES": "2"}).expect(1)
    assert "alice-pw" not in res.err, res.describe()


# --------------------------------------------------------------------------------------------
# Direct HTTP: what the server refuses


def test_append_only_refuses_delete_and_overwrite(serve):
    s = serve("--append-only")
    create_repo(s, "alice/r")
    body = b"an object\n"
    for kind in ("data", "keys", "snapshots", "index", "locks"):
        st, _, _ = http(s, "POST", f"/alice/r/{kind}/{sha(body)}", body)
        assert st == 200, kind
    st, _, _ = http(s, "POST", "/alice/r/config", b"config bytes")
    assert st == 200
    for kind in ("data", "keys", "snapshots", "index"):
        st, _, text = http(s, "DELETE", f"/alice/r/{kind}/{sha(body)}")
        assert st == 403 and b"append-only" in text, (kind, st, text)
        st, _, text = http(s, "POST", f"/alice/r/{kind}/{sha(body)}", body)
        assert st == 403 and b"never overwritten" in text, (kind, st, text)
    st, _, _ = http(s, "DELETE", "/alice/r/config")
    assert st == 403
    st, _, _ = http(s, "POST", "/alice/r/config", b"other config")
    assert st == 403
    assert (s.root / "alice/r/config").read_bytes() == b"config bytes"
    # Locks may go: backups must release them.
    st, _, _ = http(s, "DELETE", f"/alice/r/locks/{sha(body)}")
    assert st == 200
    assert not s.objects("alice/r", "locks")
    assert s.objects("alice/r", "data") == [sha(body)]
    # The repository itself is never deleted through the server.
    st, _, _ = http(s, "DELETE", "/alice/r/")
    assert st == 405


def test_overwrite_refused_without_append_only(serve):
    s = serve()
    create_repo(s, "alice/r")
    body = b"x" * 100
    assert http(s, "POST", f"/alice/r/data/{sha(body)}", body)[0] == 200
    assert http(s, "POST", f"/alice/r/data/{sha(body)}", body)[0] == 403
    assert http(s, "POST", "/alice/r/config", b"c1")[0] == 200
    assert http(s, "POST", "/alice/r/config", b"c2")[0] == 403
    # Without append-only, deletes work and are recorded.
    assert http(s, "DELETE", f"/alice/r/data/{sha(body)}")[0] == 200
    log = (s.root / ".holdfast/receipts.log").read_text().splitlines()
    assert json.loads(log[-1])["op"] == "delete"


TRAVERSALS = [
    b"/../../etc/passwd",
    b"/alice/../config",
    b"/alice/r/../../../etc/config",
    b"/alice/r/%2e%2e/config",
    b"/alice/r/%2E%2E/%2e%2e/config",
    b"/%2e%2e%2f%2e%2e%2fetc/config",
    b"/alice%2fr/config",
    b"/alice%2Fr/keys/",
    b"/alice/r/keys/..%2f..%2fconfig",
    b"/alice/r%00/config",
    b"/alice/r/config%00",
    b"/alice\\r/config",
    b"/alice/r%5cconfig",
    b"/%252e%252e/config",
    b"/alice//r/config",
    b"/./alice/r/config",
    b"/.holdfast/receipts.log",
    b"/alice/.holdfast/config",
    b"/alice/r/data/" + b"a" * 63,
    b"/alice/r/data/" + b"A" * 64,
    b"/" + b"a/" * 10 + b"config",
]


def test_path_traversal_refused(serve):
    s = serve("--no-auth", auth=False)
    create_repo(s, "alice/r")
    (s.root / "alice" / "r" / "config").write_bytes(b"the real config")
    secret = s.root.parent / "etc"
    secret.mkdir(exist_ok=True)
    (secret / "config").write_text("outside the root")
    for p in TRAVERSALS:
        for method in (b"GET", b"HEAD", b"DELETE", b"POST"):
            resp = raw(s, method + b" " + p + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                       b"Connection: close\r\n\r\n")
            assert status_of(resp) == 400, (method, p, resp[:200])
            assert b"outside the root" not in resp
    # A raw NUL inside the request line.
    resp = raw(s, b"GET /alice/r/\x00/../config HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status_of(resp) in (400, 405, None), resp[:200]  # MHD stops at the NUL
    assert b"the real config" not in resp
    # The same repository, asked properly, answers.
    st, _, body = http(s, "GET", "/alice/r/config", creds=False)
    assert st == 200 and body == b"the real config"


def test_authentication_and_private_repos(serve):
    s = serve("--private-repos")
    create_repo(s, "alice/r")
    assert http(s, "GET", "/alice/r/keys/", creds=False)[0] == 401
    st, hdrs, _ = http(s, "GET", "/alice/r/keys/", password="wrong")
    assert st == 401 and "Basic" in hdrs.get("WWW-Authenticate", "")
    assert http(s, "GET", "/alice/r/keys/", user="mallory", password="x")[0] == 401
    assert http(s, "GET", "/alice/r/keys/")[0] == 200
    # bob is a valid user, but /alice/ is not his.
    st, _, _ = http(s, "GET", "/alice/r/keys/", user="bob", password="bob-pw")
    assert st == 403
    assert http(s, "POST", "/alice/x/?create=true", user="bob", password="bob-pw")[0] == 403
    assert http(s, "POST", "/bob/x/?create=true", user="bob", password="bob-pw")[0] == 200
    # The htpasswd file is reloaded on SIGHUP.
    make_htpasswd(s.root / ".htpasswd", {"alice": "new-pw"})
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 5
    while time.time() < deadline and http(s, "GET", "/alice/r/keys/")[0] != 401:
        time.sleep(0.1)
    assert http(s, "GET", "/alice/r/keys/")[0] == 401
    assert http(s, "GET", "/alice/r/keys/", password="new-pw")[0] == 200


def test_hash_mismatch_rejected_and_nothing_stored(serve):
    s = serve()
    create_repo(s, "alice/r")
    body = os.urandom(5000)
    wrong = sha(body + b"!")
    st, _, text = http(s, "POST", f"/alice/r/data/{wrong}", body)
    assert st == 400 and b"SHA-256" in text
    st, _, text = http(s, "POST", f"/alice/r/snapshots/{wrong}", body)
    assert st == 400
    assert not s.objects("alice/r", "data") and not s.objects("alice/r", "snapshots")
    assert not list((s.root / "alice/r").rglob(".hf-upload-*"))
    st, _, listing = http(s, "GET", "/alice/r/data/",
                          headers={"Accept": "application/vnd.x.restic.rest.v2"})
    assert st == 200 and json.loads(listing) == []
    log = (s.root / ".holdfast/receipts.log").read_text()
    assert wrong not in log


def test_oversized_body(serve):
    s = serve("--max-object-size", "64K")
    create_repo(s, "alice/r")
    body = os.urandom(100_000)
    st, _, text = http(s, "POST", f"/alice/r/data/{sha(body)}", body)
    assert st == 413, (st, text)
    # Chunked, so the size is only known while reading: the connection is cut, nothing kept.
    chunk = os.urandom(32 * 1024)
    req = (f"POST /alice/r/data/{sha(chunk * 4)} HTTP/1.1\r\nHost: x\r\n"
           "Transfer-Encoding: chunked\r\n").encode() + auth_header() + b"\r\n"
    for _ in range(4):
        req += b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    req += b"0\r\n\r\n"
    resp = raw(s, req)
    assert status_of(resp) in (None, 413), resp[:200]
    assert not s.objects("alice/r", "data")
    # Huge headers: refused by the per-connection memory limit, server still fine.
    resp = raw(s, b"GET /alice/r/keys/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 400_000 +
               b"\r\n\r\n")
    assert status_of(resp) in (None, 400, 413, 414, 431), resp[:200]
    assert http(s, "GET", "/alice/r/keys/")[0] == 200


def test_range_requests(serve):
    s = serve()
    create_repo(s, "alice/r")
    body = bytes(range(256)) * 4
    assert http(s, "POST", f"/alice/r/data/{sha(body)}", body)[0] == 200
    p = f"/alice/r/data/{sha(body)}"
    st, hdrs, got = http(s, "GET", p, headers={"Range": "bytes=10-19"})
    assert st == 206 and got == body[10:20] and hdrs["Content-Range"] == "bytes 10-19/1024"
    st, _, got = http(s, "GET", p, headers={"Range": "bytes=1000-"})
    assert st == 206 and got == body[1000:]
    st, _, got = http(s, "GET", p, headers={"Range": "bytes=-24"})
    assert st == 206 and got == body[-24:]
    st, _, got = http(s, "GET", p, headers={"Range": "bytes=1000-5000"})
    assert st == 206 and got == body[1000:]
    for bad in ("bytes=x-3", "bytes=5-2", "bytes=0-1,4-5", "items=0-1", "bytes=", "bytes=--1",
                "bytes=1024-", "bytes=99999999999999999999-", "bytes=-0"):
        st, hdrs, _ = http(s, "GET", p, headers={"Range": bad})
        assert st == 416 and hdrs["Content-Range"] == "bytes */1024", bad
    st, hdrs, got = http(s, "HEAD", p)
    assert st == 200 and hdrs["Content-Length"] == "1024" and got == b""
    assert "X-Holdfast-Received" in hdrs
    st, _, got = http(s, "GET", p)
    assert st == 200 and got == body


def test_slow_clients_are_cut(serve):
    s = serve("--timeout", "2")
    create_repo(s, "alice/r")
    t0 = time.time()
    # Headers that never end.
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        c.sendall(b"GET /alice/r/keys/ HTTP/1.1\r\nHost: x\r\n")
        assert c.recv(100) == b""
    assert 1.5 < time.time() - t0 < 8
    # A body that stops arriving: the upload is dropped, nothing stored.
    body = os.urandom(10_000)
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        c.sendall(f"POST /alice/r/data/{sha(body)} HTTP/1.1\r\nHost: x\r\n"
                  f"Content-Length: {len(body)}\r\n".encode() + auth_header() + b"\r\n" +
                  body[:1000])
        assert c.recv(100) == b""
    assert not s.objects("alice/r", "data")
    assert http(s, "GET", "/alice/r/keys/")[0] == 200


def test_kill9_during_upload_leaves_no_partial_object(serve, holdfast):
    s = serve()
    create_repo(s, "alice/r")
    body = os.urandom(4 << 20)
    c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    c.sendall(f"POST /alice/r/data/{sha(body)} HTTP/1.1\r\nHost: x\r\n"
              f"Content-Length: {len(body)}\r\n".encode() + auth_header() + b"\r\n" +
              body[:3 << 20])
    time.sleep(0.5)
    s.proc.send_signal(signal.SIGKILL)
    s.proc.wait()
    c.close()
    files = [p for p in (s.root / "alice/r").rglob("*") if p.is_file()]
    assert files == [], files
    s.start()
    assert http(s, "GET", "/alice/r/data/",
                headers={"Accept": "application/vnd.x.restic.rest.v2"})[2] == b"[]"
    # A second try after the restart stores it whole.
    assert http(s, "POST", f"/alice/r/data/{sha(body)}", body, timeout=30)[0] == 200
    assert (s.root / "alice/r/data" / sha(body)[:2] / sha(body)).read_bytes() == body
    res = holdfast("serve", "--verify", "--root", s.root, password=False).ok()
    assert "0 problems" in res.out, res.describe()


def test_retention_lock(serve):
    # 0.00004 days = 3.5 s: deletes are refused until an object is that old, admin or not.
    s = serve("--retention", "0.00004")
    create_repo(s, "alice/r")
    body = b"retained"
    assert http(s, "POST", f"/alice/r/snapshots/{sha(body)}", body)[0] == 200
    assert http(s, "POST", f"/alice/r/locks/{sha(body)}", body)[0] == 200
    st, _, text = http(s, "DELETE", f"/alice/r/snapshots/{sha(body)}")
    assert st == 403 and b"retention" in text, text
    assert http(s, "DELETE", f"/alice/r/snapshots/{sha(body)}", user="bob",
                password="bob-pw")[0] == 403
    # Locks are not data: they go at once.
    assert http(s, "DELETE", f"/alice/r/locks/{sha(body)}")[0] == 200
    # The file's mtime is the client's to fake on some servers; ours is ignored.
    p = s.root / "alice/r/snapshots" / sha(body)
    os.utime(p, (0, 0))
    assert http(s, "DELETE", f"/alice/r/snapshots/{sha(body)}")[0] == 403
    time.sleep(3.7)
    assert http(s, "DELETE", f"/alice/r/snapshots/{sha(body)}")[0] == 200
    assert not p.exists()


# --------------------------------------------------------------------------------------------
# Tamper evidence


def test_verify_detects_tampering(serve, holdfast, restic, tmp_path):
    s = serve()
    repo = s.rest("alice/r")
    src = small_tree(tmp_path / "src", files=3)
    holdfast("init", *KDF, repo=repo).ok()
    holdfast("backup", src, repo=repo).ok()
    s.stop()
    verify = ["serve", "--verify", "--root", s.root, "--json"]

    def problems():
        res = holdfast(*verify, password=False)
        lines = res.jsonl()
        assert lines[-1]["message_type"] == "summary", res.describe()
        return res.rc, [x for x in lines if x["message_type"] == "problem"]

    assert problems() == (0, [])
    # 1. An object rewritten in place.
    idx = next((s.root / "alice/r/index").iterdir())
    idx.chmod(0o600)
    orig = idx.read_bytes()
    idx.write_bytes(orig[:-1] + bytes([orig[-1] ^ 1]))
    rc, pr = problems()
    assert rc == 3 and [p["kind"] for p in pr] == ["content"] and idx.name in pr[0]["object"]
    idx.write_bytes(orig)
    # 2. An object removed behind the server's back.
    pack = next(p for p in (s.root / "alice/r/data").rglob("*") if p.is_file())
    data = pack.read_bytes()
    pack.unlink()
    rc, pr = problems()
    assert rc == 3 and [p["kind"] for p in pr] == ["missing"] and pack.name in pr[0]["object"]
    pack.write_bytes(data)
    # 3. An object added behind its back.
    extra = b"planted"
    (s.root / "alice/r/snapshots" / sha(extra)).write_bytes(extra)
    rc, pr = problems()
    assert rc == 3 and [p["kind"] for p in pr] == ["unrecorded"]
    assert sha(extra) in pr[0]["object"]
    (s.root / "alice/r/snapshots" / sha(extra)).unlink()
    assert problems() == (0, [])
    # 4. A record of the log edited (its own hash is fine, the next record's "prev" is not).
    log = s.root / ".holdfast/receipts.log"
    lines = log.read_text().splitlines(keepends=True)
    rec = json.loads(lines[1])
    rec["user"] = "mallory"
    edited = json.dumps(rec, separators=(",", ":")) + "\n"
    log.write_text("".join(lines[:1] + [edited] + lines[2:]))
    rc, pr = problems()
    assert rc == 3 and any(p["kind"] == "chain" and p["line"] == 3 for p in pr), pr
    # 5. A record removed.
    log.write_text("".join(lines[:2] + lines[3:]))
    rc, pr = problems()
    assert rc == 3 and any(p["kind"] == "chain" for p in pr)
    log.write_text("".join(lines))
    assert problems() == (0, [])
    # Human output names the object too.
    pack.unlink()
    res = holdfast("serve", "--verify", "--root", s.root, password=False).expect(3)
    assert pack.name in res.out and "missing" in res.out


def test_forged_snapshot_time_flagged(serve, holdfast, restic, tmp_path):
    s = serve("--append-only")
    repo = s.rest("alice/r")
    src = small_tree(tmp_path / "src", files=2)
    restic("init", repo=repo).ok()
    restic("backup", src, repo=repo).ok()
    restic("backup", "--time", "2099-01-01 00:00:00", src, repo=repo).ok()
    forged = [x["id"] for x in restic("snapshots", "--json", repo=repo).ok().json()
              if x["time"].startswith("2099")]
    assert len(forged) == 1
    pwfile = tmp_path / "pw"
    pwfile.write_text(restic.password + "\n")
    # Without the password the server cannot read snapshots: chain and files are clean.
    holdfast("serve", "--verify", "--root", s.root, password=False).ok()
    res = holdfast("serve", "--verify", "--root", s.root, "--password-file", pwfile,
                   "--json", password=False).expect(3)
    pr = [x for x in res.jsonl() if x["message_type"] == "problem"]
    assert [p["kind"] for p in pr] == ["forged"], res.describe()
    assert forged[0] in pr[0]["object"] and "2099" in pr[0]["message"]
    # Another password opens nothing: no snapshot is judged, no false alarm.
    pwfile.write_text("another\n")
    holdfast("serve", "--verify", "--root", s.root, "--password-file", pwfile,
             password=False).ok()


# --------------------------------------------------------------------------------------------
# Heartbeats and metrics


def metrics(s, **kw):
    st, _, body = http(s, "GET", "/metrics", **kw)
    assert st == 200
    return body.decode()


def test_heartbeat_and_metrics(serve):
    s = serve("--heartbeat-timeout", "2")
    assert http(s, "POST", "/.holdfast/heartbeat/web1.example")[0] == 200
    assert http(s, "POST", "/.holdfast/heartbeat/db-2")[0] == 200
    assert http(s, "POST", "/.holdfast/heartbeat/web1", creds=False)[0] == 401
    assert http(s, "POST", "/.holdfast/heartbeat/..%2fx")[0] == 400
    assert http(s, "GET", "/metrics", creds=False)[0] == 401
    m = metrics(s)
    assert re.search(r'holdfast_heartbeat_age_seconds\{host="web1.example"\} 0\.', m), m
    assert 'holdfast_heartbeat_silent{host="db-2"} 0' in m
    assert 'holdfast_http_requests_total{method="POST",code="200"} 2' in m
    assert re.search(r'holdfast_receipt_log_records\{head="[0-9a-f]{64}"\} \d+', m)
    # db-2 goes on beating, web1 stops.
    for _ in range(8):
        time.sleep(0.5)
        assert http(s, "POST", "/.holdfast/heartbeat/db-2")[0] == 200
    m = metrics(s)
    assert 'holdfast_heartbeat_silent{host="web1.example"} 1' in m
    assert 'holdfast_heartbeat_silent{host="db-2"} 0' in m
    assert "host db-2 silent" not in s.log_text()
    time.sleep(1.0)  # warned once, not once per check
    log = s.log_text()
    assert log.count("host web1.example silent") == 1, log
    assert http(s, "POST", "/.holdfast/heartbeat/web1.example")[0] == 200
    assert "web1.example is back" in s.log_text()


# --------------------------------------------------------------------------------------------
# Load


def test_sixteen_concurrent_clients(serve, holdfast, restic_bin, tmp_path):
    s = serve()
    n = 16
    procs = []
    for i in range(n):
        src = small_tree(tmp_path / f"src{i}", seed=100 + i, files=4, size=200_000)
        repo = s.rest(f"alice/host{i:02d}")
        if i % 2:
            # half restic, half holdfast, all at once
            cmd = f"{restic_bin} --no-cache -r {repo} init -q && " \
                  f"{restic_bin} --no-cache -r {repo} backup -q {src}"
            env = h.clean_env({"RESTIC_PASSWORD": "pw"})
        else:
            b = holdfast.binary
            cmd = f"{b} -r {repo} init -q --kdf-params 1024,8,1 && {b} -r {repo} backup -q {src}"
            env = h.clean_env({"HOLDFAST_PASSWORD": "pw"})
        procs.append(subprocess.Popen(["bash", "-c", cmd], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT))
    t0 = time.time()
    outs = [p.communicate(timeout=300)[0] for p in procs]
    took = time.time() - t0
    for i, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f"client {i} failed:\n{out.decode(errors='replace')}"
    for i in range(n):
        assert len(s.objects(f"alice/host{i:02d}", "snapshots")) == 1
    m = metrics(s)
    assert not re.search(r'code="5\d\d"', m), m
    res = holdfast("serve", "--verify", "--root", s.root, password=False).ok()
    assert "0 problems" in res.out
    print(f"16 clients: {took:.1f} s")


# --------------------------------------------------------------------------------------------
# Last: the restic forget --prune started before the first test


def test_restic_forget_prune_fails_under_append_only(append_only_forget):
    job = append_only_forget
    proc, s = job["proc"], job["server"]
    out, err = proc.communicate(timeout=150)
    assert proc.returncode != 0, "forget --prune succeeded against an append-only server"
    assert b"403" in err or b"Forbidden" in err, err.decode(errors="replace")[-2000:]
    after = {k: s.objects("alice/laptop", k) for k in ("data", "index", "snapshots", "keys")}
    assert after == job["before"], "objects were removed"
    # Both snapshots are still there and readable.
    snaps = job["restic"]("snapshots", "--json", repo=job["repo"]).ok().json()
    assert len(snaps) == 2
    assert "append-only" in s.log_text()
