# SPDX-License-Identifier: LGPL-2.1-or-later
"""bench/report.py, which turns bench/vault.sh's measurements into docs/PERFORMANCE.md's tables:
the primitive bounds each operation's share is taken against, and the parse of dd's speed that
vault.sh measures writing into the page cache with. The benchmark itself takes ~11 minutes and
is run by hand (docs/PERFORMANCE.md)."""
import subprocess

import helpers as h

REPORT = h.ROOT / "bench" / "report.py"

META = {
    "date": "2026-11-29T09:00:00Z", "cores": "2", "cpu": "test CPU", "mem": "23 GiB",
    "kernel": "6.18", "load_before": "0.1 0.1 0.1", "load_after": "0.2 0.2 0.2",
    "prim_sha256_MBps": "1753", "prim_aes_MBps": "7943", "prim_zstd_level": "2",
    "prim_zstd_c_B_MBps": "764", "prim_zstd_d_B_MBps": "2707", "prim_zstd_ratio_B": "x1.483",
    "ds_B_bytes": "2147483648", "ds_B_files": "4", "ds_B_desc": "test",
}
# run tool op wall user sys maxrss_kb vault
ROWS = [
    (1, "holdfast", "b_restore", 2.0, 2.2, 1.0, 40000, "-"),
    (1, "restic", "b_restore", 4.0, 5.0, 1.5, 100000, "-"),
    (2, "restic", "b_restore", 5.0, 5.0, 1.5, 100000, "-"),
    (2, "holdfast", "b_restore", 2.5, 2.2, 1.0, 40000, "-"),
]


def report(tmp_path, meta):
    res = tmp_path / "results.tsv"
    res.write_text("".join("\t".join(str(v) for v in r) + "\n" for r in ROWS))
    env = tmp_path / "meta.env"
    env.write_text("".join(f"{k}={v}\n" for k, v in meta.items()))
    p = subprocess.run(["/usr/bin/python3", str(REPORT), str(res), str(env)],
                       capture_output=True, text=True, check=True)
    return p.stdout


def table_row(text, first_cell, ncells):
    """The cells of the row of a table with ncells columns that starts with first_cell."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell and len(cells) == ncells:
            return cells
    raise AssertionError(f"no row {first_cell!r} of {ncells} cells in:\n{text}")


def test_restore_bound_counts_hashing_and_page_cache_writes(tmp_path):
    # Both tools check each restored blob's SHA-256 and write every byte into new page-cache
    # pages, so a restore's bound has both terms, per core.
    out = report(tmp_path, META | {"prim_pcw_MBps": "1000"})
    sha, aes, zd, pcw = 1753e6, 7943e6, 2707e6, 1000e6
    bound = 2 / (1 / sha + 1 / aes + 1 / zd + 1 / pcw)
    row = table_row(out, "restore B", 3)
    assert row[1] == "2 / (1/sha256 + 1/aes + 1/zstd2-d + 1/page-cache-write)"
    assert row[2] == f"{bound / 1e6:.0f}"
    assert table_row(out, "page-cache write (`dd bs=1M` from /dev/zero into a new file on a "
                          "fresh loop-mounted ext4, after a drop of the caches, as restores "
                          "run)", 2)[1] == "1000"
    # Share of bound = bytes / median wall / bound, per tool.
    cells = table_row(out, "restore B", 15)
    assert cells[1] == "2.25 s" and cells[2] == "4.50 s"
    assert cells[3] == "2.00× (2.00–2.00)"
    assert cells[-2] == f"{2147483648 / 2.25 / bound * 100:.0f} %"
    assert cells[-1] == f"{2147483648 / 4.5 / bound * 100:.0f} %"


def test_runs_without_the_page_cache_primitive_still_count_hashing(tmp_path):
    out = report(tmp_path, META)
    row = table_row(out, "restore B", 3)
    assert row[1] == "2 / (1/sha256 + 1/aes + 1/zstd2-d)"
    assert row[2] == f"{2 / (1 / 1753e6 + 1 / 7943e6 + 1 / 2707e6) / 1e6:.0f}"
    assert "page-cache write" not in out


def test_free_page_reporting_is_named_with_what_was_handed_back(tmp_path):
    out = report(tmp_path, META | {
        "free_page_reporting": "on (virtio-balloon, page_reporting_order 9)",
        "reported_kib_before": "1000", "reported_kib_after": str(1000 + 3 * 2**20)})
    assert ("- free page reporting to the hypervisor: on (virtio-balloon, page_reporting_order "
            "9), 3.0 GiB handed back during the run") in out
    assert "free page reporting" not in report(tmp_path, META)


def test_dd_speed_is_read_from_dd_itself(tmp_path):
    p = subprocess.run(["dd", "if=/dev/zero", f"of={tmp_path / 'f'}", "bs=1M", "count=64"],
                       capture_output=True, text=True, env={"LC_ALL": "C"}, check=True)
    # "67108864 bytes (67 MB, 64 MiB) copied, 0.0312 s, 2.1 GB/s": 64 MiB over dd's own time,
    # read here by splitting, not with report.py's pattern.
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("67108864 bytes "), p.stderr
    seconds = float(last.split(", ")[-2].removesuffix(" s"))
    want = 67108864 / seconds / 1e6
    got = subprocess.run(["/usr/bin/python3", str(REPORT), "dd-mbps"], input=p.stderr,
                         capture_output=True, text=True, check=True).stdout
    assert got == f"{want:.0f}\n"
    bad = subprocess.run(["/usr/bin/python3", str(REPORT), "dd-mbps"],
                         input="dd: error writing 'f': No space left on device\n",
                         capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stdout == ""
    assert "no 'N bytes ... copied, T s' line from dd" in bad.stderr
