#!/usr/bin/python3
"""Turn bench/vault.sh's raw measurements into the markdown report.

  report.py RESULTS.tsv META.env
  report.py dd-mbps < DD_STDERR      MB/s from dd's closing line (LC_ALL=C)

RESULTS.tsv: one line per measured command: run tool op wall_s user_s sys_s maxrss_kb vault_bytes
(vault_bytes is "-" where it means nothing). META.env: KEY=VALUE lines written by vault.sh.
"""

import re
import statistics
import sys

# op id -> (label, dataset, bound kind or None)
OPS = [
    ("a_first_cold", "backup A, first (cold cache)", "A", "backup"),
    ("a_first_warm", "backup A, first (warm cache)", "A", "backup"),
    ("a_nochange", "backup A, nothing changed", "A", None),
    ("a_1pct", "backup A, 1 % of files changed", "A", None),
    ("a_restore_cold", "restore A (cold cache)", "A", "restore"),
    ("a_restore_warm", "restore A (warm cache)", "A", "restore"),
    ("a_check", "check --read-data A (warm cache)", "A", "check"),
    ("b_first", "backup B, first", "B", "backup"),
    ("b_restore", "restore B", "B", "restore"),
]
TOOLS = ("holdfast", "restic")


def load_meta(path):
    meta = {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if "=" in line:
                k, v = line.split("=", 1)
                meta[k] = v
    return meta


def load_results(path):
    rows = []
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) not in (8, 9) or parts[0] == "run":
                continue
            run, tool, op, wall, user, sys_, rss, vault = parts[:8]
            rows.append({
                "run": int(run), "tool": tool, "op": op, "wall": float(wall),
                "cpu": float(user) + float(sys_), "rss": int(rss) * 1024,
                "vault": None if vault == "-" else int(vault),
                "load": parts[8] if len(parts) == 9 else None,
            })
    return rows


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, spec, unit=""):
    return "—" if v is None else f"{v:{spec}}{unit}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def paired(rows, op, key, invert=False):
    """Per-run ratios holdfast/restic (restic/holdfast when invert) of the two measurements
    taken back to back in the same run; the machine's speed drifts between runs, so these are
    what the table reports (their median, and their range)."""
    by = {(r["run"], r["tool"]): r[key] for r in rows if r["op"] == op}
    out = []
    for run in sorted({r["run"] for r in rows if r["op"] == op}):
        h, s = by.get((run, "holdfast")), by.get((run, "restic"))
        v = ratio(s, h) if invert else ratio(h, s)
        if v is not None:
            out.append(v)
    return out


def fmt_ratio(values, spec, spread=False):
    if not values:
        return "—"
    m = statistics.median(values)
    if spread and len(values) > 1:
        return f"{m:{spec}}× ({min(values):{spec}}–{max(values):{spec}})"
    return f"{m:{spec}}×"


def zlevel(meta):
    """The zstd level the primitives were measured at (runs before it was recorded: 3)."""
    return meta.get("prim_zstd_level", "3")


def zmeta(meta, what, ds):
    """A zstd primitive of dataset ds: c, d (MB/s) or ratio; older runs used prim_zstd3_*."""
    suffix = "" if what == "ratio" else "_MBps"
    v = meta.get(f"prim_zstd_{what}_{ds}{suffix}")
    return v if v is not None else meta.get(f"prim_zstd3_{what}_{ds}{suffix}")


def bounds(meta):
    """Per-dataset bounds in bytes/s for two cores, and their formulas."""
    sha = float(meta["prim_sha256_MBps"]) * 1e6
    aes = float(meta["prim_aes_MBps"]) * 1e6
    # Writing new page-cache pages; runs before it was measured leave it out.
    pcw = float(meta["prim_pcw_MBps"]) * 1e6 if meta.get("prim_pcw_MBps") else None
    cores = int(meta.get("cores", "2"))
    out = {}
    for ds in ("A", "B"):
        zc = zmeta(meta, "c", ds)
        zd = zmeta(meta, "d", ds)
        if zc is None:
            continue
        zc, zd = float(zc) * 1e6, float(zd) * 1e6
        out[(ds, "backup")] = cores / (1 / sha + 1 / zc + 1 / aes)
        # Both tools check every restored blob's SHA-256 (restic through its StreamPack).
        out[(ds, "restore")] = cores / (1 / sha + 1 / aes + 1 / zd + (1 / pcw if pcw else 0))
        out[(ds, "check")] = cores / (1 / sha + 1 / aes + 1 / zd)
    return out


def dd_mbps(text):
    """MB/s from the last line dd prints, "N bytes (...) copied, T s, R GB/s"; None if absent."""
    m = re.search(r"^(\d+) bytes .* copied, ([0-9.]+) s, ", text, re.M)
    if not m or float(m.group(2)) <= 0:
        return None
    return int(m.group(1)) / float(m.group(2)) / 1e6


def main(argv):
    if argv[1:] == ["dd-mbps"]:
        v = dd_mbps(sys.stdin.read())
        if v is None:
            sys.exit("report.py: no 'N bytes ... copied, T s' line from dd on standard input")
        print(f"{v:.0f}")
        return
    if len(argv) != 3:
        sys.exit(__doc__)
    rows = load_results(argv[1])
    meta = load_meta(argv[2])
    bnd = bounds(meta)
    runs = sorted({r["run"] for r in rows})
    out = []
    w = out.append
    w(f"## Vault benchmark, {meta.get('date', '?')}{' (quick mode)' if meta.get('quick') == '1' else ''}")
    w("")
    if meta.get("failures_note"):
        w(meta["failures_note"])
        w("")
    w(f"- machine: {meta.get('cores')} cores, {meta.get('cpu')}, {meta.get('mem')} RAM, kernel "
      f"{meta.get('kernel')}; load average before {meta.get('load_before')}, after "
      f"{meta.get('load_after', '?')}")
    if meta.get("free_page_reporting"):
        handed = ""
        before, after = meta.get("reported_kib_before"), meta.get("reported_kib_after")
        if before and after:
            handed = f", {(int(after) - int(before)) / 2**20:.1f} GiB handed back during the run"
        w(f"- free page reporting to the hypervisor: {meta['free_page_reporting']}{handed} "
          f"(memory handed back costs a fault on the host when next used: docs/PERFORMANCE.md, "
          f"\"Fresh pages\")")
    w(f"- holdfast: `{meta.get('holdfast_version')}` (binary sha256 {meta.get('holdfast_sha')}, "
      f"copied from {meta.get('holdfast_src')}); restic: `{meta.get('restic_version')}`")
    w(f"- openssl: `{meta.get('openssl_version')}`; zstd: `{meta.get('zstd_version')}`")
    w(f"- runs: {len(runs)} per tool, alternating (odd runs holdfast first, even runs restic "
      f"first, for every operation); medians shown; vaults and sources on "
      f"{meta.get('bench_fs')}; restores into a fresh loop-mounted ext4 per restore")
    w(f"- holdfast vaults: `init --kdf-params 16384,8,1`, default compression; restic vaults: "
      f"`restic init` (`--compression auto`), its key then replaced by one with the same KDF "
      f"parameters (`holdfast key passwd --kdf-params 16384,8,1`; restic's key file now: "
      f"{meta.get('restic_kdf', '?')})")
    for ds in ("A", "B"):
        if f"ds_{ds}_bytes" in meta:
            w(f"- dataset {ds} ({meta.get(f'ds_{ds}_desc')}): {int(meta[f'ds_{ds}_bytes']) / 1e9:.3f} GB "
              f"in {meta[f'ds_{ds}_files']} files ({meta.get(f'ds_{ds}_hardlinked', 0)} hard-linked "
              f"names), {meta.get(f'ds_{ds}_symlinks', 0)} symlinks, {meta.get(f'ds_{ds}_dirs', 0)} "
              f"folders; zstd -{zlevel(meta)} ratio of a sample {zmeta(meta, 'ratio', ds) or '?'}")
    w("")
    w("| operation | wall holdfast | wall restic | speed ratio | CPU holdfast | CPU restic | "
      "CPU ratio | peak RSS holdfast | peak RSS restic | RSS ratio | vault holdfast | "
      "vault restic | size ratio | share of bound holdfast | share of bound restic |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for op, label, ds, kind in OPS:
        m = {}
        for t in TOOLS:
            sel = [r for r in rows if r["op"] == op and r["tool"] == t]
            m[t] = {k: med([r[k] for r in sel]) for k in ("wall", "cpu", "rss", "vault")}
            m[t]["n"] = len(sel)
        if m["holdfast"]["n"] == 0 and m["restic"]["n"] == 0:
            continue
        h, r = m["holdfast"], m["restic"]
        share = {}
        nbytes = meta.get(f"ds_{ds}_bytes")
        for t in TOOLS:
            b = bnd.get((ds, kind)) if kind else None
            if b and nbytes and m[t]["wall"]:
                share[t] = int(nbytes) / m[t]["wall"] / b * 100
            else:
                share[t] = None
        w(f"| {label} | {fmt(h['wall'], '.2f', ' s')} | {fmt(r['wall'], '.2f', ' s')} | "
          f"{fmt_ratio(paired(rows, op, 'wall', invert=True), '.2f', spread=True)} | "
          f"{fmt(h['cpu'], '.1f', ' s')} | {fmt(r['cpu'], '.1f', ' s')} | "
          f"{fmt_ratio(paired(rows, op, 'cpu'), '.2f')} | "
          f"{fmt(h['rss'] and h['rss'] / 1e6, '.0f', ' MB')} | "
          f"{fmt(r['rss'] and r['rss'] / 1e6, '.0f', ' MB')} | "
          f"{fmt_ratio(paired(rows, op, 'rss'), '.2f')} | "
          f"{fmt(h['vault'] and h['vault'] / 1e6, '.1f', ' MB')} | "
          f"{fmt(r['vault'] and r['vault'] / 1e6, '.1f', ' MB')} | "
          f"{fmt_ratio([v for v in paired(rows, op, 'vault') if v], '.3f')} | "
          f"{fmt(share['holdfast'], '.0f', ' %')} | {fmt(share['restic'], '.0f', ' %')} |")
    w("")
    w("Times, CPU, RSS and sizes are medians over the runs. Ratios are the median (speed: and "
      "range) of the per-run ratios of the two measurements taken back to back, since the "
      "machine's speed drifts between runs. Speed ratio = restic wall / holdfast wall (> 1: "
      "holdfast faster). CPU, RSS and size ratios = holdfast / restic (< 1: holdfast uses "
      "less). CPU = user + sys seconds, peak RSS "
      "and times from `/usr/bin/time`. Vault size = `du -sb` of the vault after the operation "
      "(backups only; the nothing-changed and 1 % rows include the earlier snapshots). Cold = "
      "`sync; echo 3 > /proc/sys/vm/drop_caches` right before the command; a warm restore "
      "or check drops the caches too and then reads the tool's own vault back in (untimed). Restore times stop "
      "when the tool exits (the `sync` after it is not timed). Share of bound = dataset bytes "
      "/ wall time / the bound below.")
    w("")
    # Compatibility checks.
    compat = [(k[len("compat_"):], v) for k, v in meta.items() if k.startswith("compat_")]
    if compat:
        w("| compatibility check | result |")
        w("|---|---|")
        for k, v in compat:
            w(f"| {k.replace('_', ' ')} | {v} |")
        w("")
    # Primitive bounds.
    w("| primitive (one core, measured in this run) | MB/s |")
    w("|---|---:|")
    w(f"| SHA-256 (`openssl speed -evp sha256`, 16 KiB blocks) | {float(meta['prim_sha256_MBps']):.0f} |")
    w(f"| AES-256-CTR (`openssl speed -evp aes-256-ctr`, 16 KiB blocks) | {float(meta['prim_aes_MBps']):.0f} |")
    if meta.get("prim_pcw_MBps"):
        w(f"| page-cache write (`dd bs=1M` from /dev/zero into a new file on a fresh loop-mounted "
          f"ext4, after a drop of the caches, as restores run) | {float(meta['prim_pcw_MBps']):.0f} |")
    for ds in ("A", "B"):
        if zmeta(meta, "c", ds) is not None:
            lv = zlevel(meta)
            w(f"| zstd -{lv} compress, sample of {ds} (`zstd -b{lv} -B1MiB`) | {float(zmeta(meta, 'c', ds)):.0f} |")
            w(f"| zstd -{lv} decompress, sample of {ds} | {float(zmeta(meta, 'd', ds)):.0f} |")
    w("")
    w("| bound (both cores) | formula | MB/s |")
    w("|---|---|---:|")
    z = f"zstd{zlevel(meta)}"
    forms = {"backup": f"2 / (1/sha256 + 1/{z}-c + 1/aes)",
             "restore": f"2 / (1/sha256 + 1/aes + 1/{z}-d{' + 1/page-cache-write' if meta.get('prim_pcw_MBps') else ''})",
             "check": f"2 / (1/sha256 + 1/aes + 1/{z}-d)"}
    for (ds, kind), v in sorted(bnd.items()):
        if f"ds_{ds}_bytes" in meta:
            w(f"| {kind} {ds} | {forms[kind]} | {v / 1e6:.0f} |")
    w("")
    if meta.get("prim_measurements"):
        w(f"Primitive measurements, one core, MB/s (zstd: compress/decompress), the best of "
          f"each is used above: {meta['prim_measurements'].rstrip('; ')}. They move with the "
          f"load other work puts on the machine, as the operations do.")
        w("")

    # Raw numbers, so that the spread is visible.
    w("<details><summary>every run</summary>")
    w("")
    w("| run | tool | operation | wall | CPU | peak RSS | vault | load avg (1 min) before |")
    w("|---:|---|---|---:|---:|---:|---:|---:|")
    labels = {op: label for op, label, _, _ in OPS}
    order = {op: i for i, (op, _, _, _) in enumerate(OPS)}
    for r in sorted(rows, key=lambda r: (order.get(r["op"], 99), r["run"], r["tool"])):
        w(f"| {r['run']} | {r['tool']} | {labels.get(r['op'], r['op'])} | {r['wall']:.2f} s | "
          f"{r['cpu']:.1f} s | {r['rss'] / 1e6:.0f} MB | "
          f"{fmt(r['vault'] and r['vault'] / 1e6, '.1f', ' MB')} | {r['load'] or '—'} |")
    w("")
    w("</details>")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv)
