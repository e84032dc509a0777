#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The sentinel's evaluation harness (issue 5): attack emulators and benign workloads against
a running `holdfast sentinel`, on a loop-mounted filesystem the harness creates itself.

    harness.py [--holdfast BIN] [--fs xfs|ext4|btrfs] [--attacks K,K|all|none]
               [--benign K,K|all|none] [--mode auto|open-perm|notify] [--json FILE] [--keep]

Needs root (loop devices, fanotify, BPF). Phases, each with its own sentinel:
  attacks   decoys off (detection must come from the content and behaviour scoring), one
            fresh scratch tree and one session per emulator, action kill
  benign    decoys on, the trust list of dist/holdfast.conf, action kill
  guard     decoys and the raw-disk guard on: a decoy hit and `dd` to a loop device
            (kept short: the guard denies block-device writes to every process on the host)

Prints per case: detected, time from the first destructive write to containment, files
touched before containment; for benign cases alerts and kills; then totals and the targets.
"""
import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MARKER = ".holdfast-scratch"

ATTACKS = ["inplace", "newfile-delete", "rename-ext", "intermittent-mb", "intermittent-16th",
           "shred", "truncate", "bibi", "split20", "slow", "base64", "mmap"]
BENIGN = ["build", "git", "dpkg", "logrotate", "archive", "sqlite", "rsync", "image", "gpg"]

TRUST = """[trust]
program = /usr/sbin/logrotate tree
program = /usr/bin/dpkg tree
"""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def allow_cgroup():
    """The cgroup every running sentinel's raw-disk guard lets write block devices (shared by
    all sentinels on the host), or None."""
    with open("/proc/self/mounts") as f:
        roots = [ln.split()[1] for ln in f if ln.split()[2] == "cgroup2"]
    for r in sorted(roots, key=lambda x: x != "/sys/fs/cgroup"):
        p = os.path.join(r, "holdfast-allow-disk", "cgroup.procs")
        if os.path.exists(p):
            return p
    return None


def admin(cmd):
    """Runs a disk command (losetup, mount -o loop) as an administrator would with
    `holdfast allow-disk`: in the allowed cgroup, so that a sentinel running elsewhere on the
    host (another test suite) does not refuse our own loop devices."""
    procs = allow_cgroup()
    if procs is None:
        return run(cmd)

    def enter():
        try:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        except OSError:
            pass

    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=enter)


class Mount:
    """A loop image with a filesystem, mounted under a temp folder."""

    def __init__(self, base, fs, size_mb=768, reflink=True):
        self.base = base
        self.fs = fs
        self.img = os.path.join(base, f"{fs}.img")
        self.mnt = os.path.join(base, f"mnt-{fs}")
        with open(self.img, "wb") as f:
            f.truncate(size_mb << 20)
        mkfs = {"xfs": ["mkfs.xfs", "-q", "-f", "-m", f"reflink={int(reflink)}"],
                "ext4": ["mkfs.ext4", "-q", "-F"],
                "btrfs": ["mkfs.btrfs", "-q", "-f"]}[fs]
        r = run(mkfs + [self.img])
        if r.returncode:
            raise RuntimeError(f"mkfs {fs}: {r.stderr.decode()}")
        os.makedirs(self.mnt, exist_ok=True)
        r = admin(["mount", "-o", "loop", self.img, self.mnt])
        if r.returncode:
            raise RuntimeError(f"mount {fs}: {r.stderr.decode()}")

    def close(self):
        for _ in range(20):
            if run(["umount", self.mnt]).returncode == 0:
                break
            time.sleep(0.25)
        else:
            log(f"umount {self.mnt} keeps failing: detaching it lazily")
            run(["umount", "-l", self.mnt])
        # mount -o loop clears its loop device on umount, unless someone (udev probing)
        # held it at that moment: detach it explicitly.
        for dev in run(["losetup", "-j", self.img]).stdout.decode().splitlines():
            admin(["losetup", "-d", dev.split(":")[0]])
        try:
            os.unlink(self.img)
        except OSError:
            pass


def scratch(parent, name):
    """A fresh scratch tree with the marker the emulators insist on."""
    d = os.path.join(parent, name)
    os.makedirs(d)
    d = os.path.realpath(d)
    with open(os.path.join(d, MARKER), "w") as f:
        f.write(d + "\n")
    return d


def words(n, seed):
    import random
    rng = random.Random(seed)
    vocab = ("quarterly report customer invoice contract payment account balance order "
             "shipment delivery address phone meeting notes draft final review budget").split()
    return " ".join(rng.choice(vocab) for _ in range(n))


def populate_docs(d, kind, seed=0):
    """User data: 3 folders x 10 documents (text, CSV, PDF-like, JSON); big files for the
    intermittent emulators; 3 x 120 documents for newfile-delete.

    newfile-delete meets no permission event (it writes new files and unlinks originals it
    never opened), so nothing slows it: it got through 30 small files in 10-20 ms, about the
    sentinel's time to its verdict (5.8-17 ms measured), and "contained" (stopped before it
    was done) was a coin toss on a loaded machine. 120 files were not enough either: under
    make check's load the sentinel once contained it after 56 ms, when all 120 were done.
    With 360 it still counts how many it touched before it was stopped."""
    if kind == "intermittent-mb":
        for i in range(8):
            sub = os.path.join(d, f"vm{i % 2}")
            os.makedirs(sub, exist_ok=True)
            with open(os.path.join(sub, f"disk{i}.img"), "w") as f:
                chunk = words(2000, seed + i) + "\n"
                while f.tell() < (3 << 20) + 12345:
                    f.write(chunk)
        return
    big = kind == "intermittent-16th"
    for k in range(3):
        sub = os.path.join(d, f"folder{k}")
        os.makedirs(sub, exist_ok=True)
        for i in range(120 if kind == "newfile-delete" else 10):
            n = 6000 if big else 600 + 97 * (i % 10)
            ext = ["txt", "csv", "pdf", "json", "md"][i % 5]
            body = words(n, seed * 1000 + k * 100 + i)
            if ext == "pdf":
                body = "%PDF-1.4\n" + body
            elif ext == "json":
                body = json.dumps({"id": i, "text": body})
            with open(os.path.join(sub, f"doc{i}.{ext}"), "w") as f:
                f.write(body)


class Sentinel:
    def __init__(self, holdfast, base, paths, *, decoys, raw, mode, trust, name, extra=""):
        self.state = os.path.join(base, f"state-{name}")
        os.makedirs(self.state, exist_ok=True)
        self.conf = os.path.join(base, f"{name}.conf")
        with open(self.conf, "w") as f:
            f.write("[sentinel]\naction = kill\n")
            f.write(f"decoys = {'yes' if decoys else 'no'}\n")
            f.write(f"raw-disk-guard = {'yes' if raw else 'no'}\n")
            f.write(f"mode = {mode}\n")
            f.write("[protect]\n")
            for p in paths:
                f.write(f"path = {p}\n")
            f.write("[alerts]\nsyslog = no\nfile = alerts.jsonl\n")
            if trust:
                f.write(TRUST)
            f.write(extra)
        # The sentinel writes through its own appending descriptor and the log is read
        # through another: a shared file offset moved by our reads would let its next write
        # land over what it wrote before.
        self.log = os.path.join(base, f"sentinel-{name}.log")
        out = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        try:
            self.proc = subprocess.Popen(
                [holdfast, "sentinel", "--config", self.conf, "--state", self.state]
                + (["-vv"] if os.environ.get("HF_SENTINEL_DEBUG") else ["-v"]),
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            os.close(out)
        deadline = time.time() + 20
        while time.time() < deadline:
            text = self.read_log()
            if "holdfast sentinel: ready" in text:
                self.mode_line = next((ln for ln in text.splitlines()
                                      if ln.startswith("holdfast sentinel: mode")), "")
                return
            if self.proc.poll() is not None:
                raise RuntimeError("sentinel exited:\n" + text)
            time.sleep(0.05)
        raise RuntimeError("sentinel did not get ready")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.read_log()

    def read_log(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def incidents(self):
        db = os.path.join(self.state, "sentinel.db")
        if not os.path.exists(db):
            return []
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        con.row_factory = sqlite3.Row
        rows = [dict(r) for r in con.execute("SELECT * FROM incidents ORDER BY id")]
        for r in rows:
            r["pids"] = [p[0] for p in con.execute(
                "SELECT pid FROM processes WHERE incident_id = ?", (r["id"],))]
        con.close()
        return rows

    def alerts(self):
        p = os.path.join(self.state, "alerts.jsonl")
        if not os.path.exists(p):
            return []
        with open(p) as f:
            return [json.loads(ln) for ln in f if ln.strip()]


def read_attack_log(path):
    t0, files, done = None, [], None
    if os.path.exists(path):
        with open(path) as f:
            for ln in f:
                parts = ln.split(" ", 2)
                if parts[0] == "T0":
                    t0 = float(parts[1])
                elif parts[0] == "F":
                    files.append((float(parts[1]), parts[2].strip()))
                elif parts[0] == "DONE":
                    done = float(parts[1])
    return t0, files, done


def run_attack(kind, tree, logdir, device=None, timeout=90):
    logp = os.path.join(logdir, f"attack-{kind}-{os.path.basename(tree)}-{time.time():.6f}.log")
    cmd = [sys.executable, os.path.join(HERE, "attacks.py"), kind, tree, logp]
    if device:
        cmd.append(device)
    t = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
    return {"kind": kind, "sid": p.pid, "rc": p.returncode, "start": t, "log": logp,
            "stderr": err.decode(errors="replace")[-500:]}


def attack_result(a, incidents):
    t0, files, done = read_attack_log(a["log"])
    inc = next((i for i in incidents if i["group_key"] == str(a["sid"])
                and i["kind"] not in ("allow-disk",)), None)
    res = {"case": a["kind"], "detected": inc is not None, "killed": a["rc"] == -9,
           "finished": done is not None, "incident": inc["id"] if inc else None,
           "files_touched": None, "time_to_contain": None,
           "sentinel_files_touched": inc["files_touched"] if inc else None}
    if inc and inc["contained"] is not None:
        start = t0 if t0 else inc["first_event"]
        res["time_to_contain"] = max(0.0, inc["contained"] - start)
        res["time_to_detect"] = max(0.0, inc["detected"] - start) if inc.get("detected") else None
        res["files_touched"] = sum(1 for (t, _) in files if t <= inc["contained"])
    res["contained"] = bool(inc and inc["contained"] is not None and not res["finished"])
    return res


def phase_attacks(args, base, mnt_root, kinds):
    parent = os.path.join(mnt_root, "attacks")
    os.makedirs(parent, exist_ok=True)
    trees = {}
    for i, k in enumerate(kinds):
        trees[k] = scratch(parent, k)
        populate_docs(trees[k], k, seed=i)
    subprocess.run(["sync"])
    s = Sentinel(args.holdfast, base, [parent], decoys=False, raw=False, mode=args.mode,
                 trust=True, name="attacks")
    runs = []
    try:
        for k in kinds:
            log(f"attack {k} ...")
            runs.append(run_attack(k, trees[k], base))
            time.sleep(0.3)
        time.sleep(0.5)
    finally:
        text = s.stop()
    incidents = s.incidents()
    return [attack_result(a, incidents) for a in runs], s.mode_line, text


def phase_benign(args, base, mnt_root, kinds):
    parent = os.path.join(mnt_root, "benign")
    os.makedirs(parent, exist_ok=True)
    trees = {}
    for k in kinds:
        trees[k] = scratch(parent, k)
        r = run([sys.executable, os.path.join(HERE, "benign.py"), "prepare", k, trees[k]])
        if r.returncode:
            raise RuntimeError(f"prepare {k}: {r.stderr.decode()}")
    subprocess.run(["sync"])
    s = Sentinel(args.holdfast, base, [parent], decoys=True, raw=False, mode=args.mode,
                 trust=True, name="benign")
    runs = []
    try:
        for k in kinds:
            log(f"benign {k} ...")
            t = time.time()
            p = subprocess.Popen([sys.executable, os.path.join(HERE, "benign.py"), k, trees[k]],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 start_new_session=True)
            out, err = p.communicate(timeout=300)
            runs.append({"kind": k, "sid": p.pid, "rc": p.returncode, "secs": time.time() - t,
                         "stderr": err.decode(errors="replace")[-800:]})
        time.sleep(0.5)
    finally:
        text = s.stop()
    incidents, alerts = s.incidents(), s.alerts()
    res = []
    for r in runs:
        incs = [i for i in incidents if i["group_key"] == str(r["sid"])]
        als = [a for a in alerts if a.get("group", {}).get("key") == r["sid"]]
        res.append({"case": r["kind"], "ok": r["rc"] == 0, "rc": r["rc"],
                    "alerts": len(als) + len([i for i in incs if i["action"] == "alert"]),
                    "kills": len([i for i in incs if i["action"] in ("kill", "stop")]),
                    "alert_reasons": [a["reason"] for a in als] + [i["reason"] for i in incs],
                    "secs": round(r["secs"], 2), "stderr": r["stderr"] if r["rc"] else ""})
    return res, text


def phase_guard(args, base, mnt_root):
    """A decoy hit and dd to a loop device, with decoys and the raw-disk guard on."""
    parent = os.path.join(mnt_root, "guard")
    os.makedirs(parent, exist_ok=True)
    tree = scratch(parent, "decoy")
    populate_docs(tree, "inplace", seed=99)
    img = os.path.join(base, "raw.img")
    with open(img, "wb") as f:
        f.write(os.urandom(4 << 20))
    dev = admin(["losetup", "-f", "--show", img]).stdout.decode().strip()
    if not dev:
        raise RuntimeError("losetup failed")
    before = run(["sha256sum", dev]).stdout.split()[0]
    s = Sentinel(args.holdfast, base, [parent], decoys=True, raw=True, mode=args.mode,
                 trust=True, name="guard")
    try:
        a = run_attack("inplace", tree, base)
        a["kind"] = "decoy-hit"
        d = run_attack("dd-raw", tree, base, device=dev)
        time.sleep(0.4)
    finally:
        text = s.stop()
    after = run(["sha256sum", dev]).stdout.split()[0]
    admin(["losetup", "-d", dev])
    incidents = s.incidents()
    res = [attack_result(a, incidents)]
    raw = [i for i in incidents if i["kind"] == "raw-disk"]
    res.append({"case": "dd-raw", "detected": bool(raw), "killed": False, "finished": True,
                "contained": bool(raw) and before == after and d["rc"] != 0,
                "incident": raw[0]["id"] if raw else None, "time_to_contain": 0.0 if raw else None,
                "files_touched": 0, "bytes_written": 0 if before == after else None,
                "dd_rc": d["rc"], "sentinel_files_touched": 0})
    return res, text


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def report(attacks, benign, mode_line):
    lines = [f"sentinel harness ({mode_line.strip()})", "",
             f"{'attack':<20} {'detected':<9} {'contained':<10} {'time':>8} {'files':>6}"]
    for r in attacks:
        lines.append(f"{r['case']:<20} {'yes' if r['detected'] else 'NO':<9} "
                     f"{'yes' if r['contained'] else 'NO':<10} "
                     f"{fmt(r['time_to_contain'], '.3f'):>7}s {fmt(r['files_touched'], 'd'):>6}")
    times = [r["time_to_contain"] for r in attacks if r["time_to_contain"] is not None]
    files = [r["files_touched"] for r in attacks if r["files_touched"] is not None]
    tot = {"attacks": len(attacks), "detected": sum(r["detected"] for r in attacks),
           "contained": sum(r["contained"] for r in attacks),
           "median_time": statistics.median(times) if times else None,
           "median_files": statistics.median(files) if files else None,
           "benign": len(benign), "benign_ok": sum(r["ok"] for r in benign),
           "benign_alerts": sum(r["alerts"] for r in benign),
           "benign_kills": sum(r["kills"] for r in benign)}
    lines.append(f"{'total':<20} {tot['detected']}/{tot['attacks']:<7} "
                 f"{tot['contained']}/{tot['attacks']:<8} "
                 f"{fmt(tot['median_time'], '.3f'):>7}s {fmt(tot['median_files'], 'g'):>6}"
                 "   (median time / files)")
    if benign:
        lines += ["", f"{'benign':<12} {'ok':<4} {'alerts':>6} {'kills':>6} {'secs':>7}  reasons"]
        for r in benign:
            lines.append(f"{r['case']:<12} {'yes' if r['ok'] else 'NO':<4} {r['alerts']:>6} "
                         f"{r['kills']:>6} {r['secs']:>7}  {'; '.join(r['alert_reasons'])[:150]}")
        lines.append(f"{'total':<12} {tot['benign_ok']}/{tot['benign']:<2} "
                     f"{tot['benign_alerts']:>6} {tot['benign_kills']:>6}")
    lines += ["", "targets: every attack detected and contained; raw-device writes 0 bytes; 0 benign "
              "kills; median time <= 0.5 s; median files <= 20"]
    return "\n".join(lines), tot


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--holdfast", default=os.environ.get("HOLDFAST") or
                    os.path.join(ROOT, "build", "src", "cli", "holdfast"))
    ap.add_argument("--fs", default="xfs")
    ap.add_argument("--attacks", default="all")
    ap.add_argument("--benign", default="all")
    ap.add_argument("--guard", default="yes")
    ap.add_argument("--mode", default="auto")
    ap.add_argument("--json")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv[1:])
    if os.geteuid() != 0:
        print("harness.py: needs root (loop devices, fanotify, BPF)", file=sys.stderr)
        return 2
    pick = lambda v, all_: all_ if v == "all" else ([] if v == "none" else v.split(","))
    attacks, benign = pick(args.attacks, ATTACKS), pick(args.benign, BENIGN)
    base = tempfile.mkdtemp(prefix="holdfast-sentinel-harness-")
    mount = Mount(base, args.fs)
    res_a, res_b, mode_line, logs = [], [], "", {}
    try:
        if attacks:
            res_a, mode_line, logs["attacks"] = phase_attacks(args, base, mount.mnt, attacks)
        if args.guard == "yes":
            r, logs["guard"] = phase_guard(args, base, mount.mnt)
            res_a += r
        if benign:
            res_b, logs["benign"] = phase_benign(args, base, mount.mnt, benign)
    finally:
        mount.close()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            log(f"kept {base}")
    text, tot = report(res_a, res_b, mode_line or "")
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"attacks": res_a, "benign": res_b, "totals": tot, "mode": mode_line,
                       "fs": args.fs, "sentinel_logs": logs}, f, indent=1)
    ok = (tot["detected"] == tot["attacks"] and tot["contained"] == tot["attacks"]
          and tot["benign_kills"] == 0 and tot["benign_ok"] == tot["benign"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
