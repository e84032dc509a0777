#!/usr/bin/python3
"""Manifests of a tree, to prove a restore gave back exactly what was backed up.

  manifest.py make ROOT OUT       write ROOT's manifest to OUT (and a summary JSON line to stdout)
  manifest.py compare MANIFEST ROOT
      build ROOT's manifest and compare; exit 0 when equal, 1 (listing the first differences)
      when not.

One line per entry below ROOT (ROOT itself excluded), sorted by path:
  path  type  mode  uid:gid  size  mtime_ns  content  linkgroup
type is f/d/l/o; content is the SHA-256 of a regular file's data or a symlink's target; mtime
is recorded for files and symlinks (folder times change whenever an entry is added, so they
are left out); linkgroup is, for a regular file with more than one name inside ROOT, the
smallest of those names (so hard links must come back as hard links), else "-". Paths are
written as Python bytes reprs so that any name survives. Files are hashed on all cores.
"""

import hashlib
import json
import os
import stat
import sys
from concurrent.futures import ProcessPoolExecutor


def _hash_file(path):
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def _hash_batch(paths):
    return [_hash_file(p) for p in paths]


def build(root):
    root = os.fsencode(root)
    entries = []  # [rel, type, mode, owner, size, mtime, content, (dev, ino) or None]
    to_hash = []  # (index into entries, absolute path)
    inodes = {}  # (dev, ino) -> [rel...]
    stack = [b""]
    while stack:
        rel_dir = stack.pop()
        d = os.path.join(root, rel_dir) if rel_dir else root
        for name in sorted(os.listdir(d)):
            rel = os.path.join(rel_dir, name) if rel_dir else name
            p = os.path.join(root, rel)
            st = os.lstat(p)
            mode = stat.S_IMODE(st.st_mode)
            owner = f"{st.st_uid}:{st.st_gid}"
            if stat.S_ISDIR(st.st_mode):
                entries.append([rel, "d", mode, owner, 0, "-", "-", None])
                stack.append(rel)
            elif stat.S_ISLNK(st.st_mode):
                target = hashlib.sha256(os.readlink(p)).hexdigest()
                entries.append([rel, "l", mode, owner, 0, st.st_mtime_ns, target, None])
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino) if st.st_nlink > 1 else None
                if key:
                    inodes.setdefault(key, []).append(rel)
                entries.append([rel, "f", mode, owner, st.st_size, st.st_mtime_ns, None, key])
                to_hash.append((len(entries) - 1, p))
            else:
                entries.append([rel, "o", mode, owner, 0, "-", "-", None])
    # Hash in batches of about 64 MiB on every core.
    batches, cur, cur_bytes = [], [], 0
    for idx, p in to_hash:
        cur.append((idx, p))
        cur_bytes += entries[idx][4] + 4096
        if cur_bytes >= 64 << 20:
            batches.append(cur)
            cur, cur_bytes = [], 0
    if cur:
        batches.append(cur)
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as ex:
        for batch, hashes in zip(batches, ex.map(_hash_batch, [[p for _, p in b] for b in batches])):
            for (idx, _), h in zip(batch, hashes):
                entries[idx][6] = h
    lines = []
    for rel, typ, mode, owner, size, mtime, content, key in entries:
        group = "-"
        if key is not None and len(inodes[key]) > 1:
            group = repr(min(inodes[key]))
        lines.append(f"{rel!r}\t{typ}\t{mode:o}\t{owner}\t{size}\t{mtime}\t{content}\t{group}")
    lines.sort()
    summary = {
        "entries": len(lines),
        "files": sum(1 for e in entries if e[1] == "f"),
        "dirs": sum(1 for e in entries if e[1] == "d"),
        "symlinks": sum(1 for e in entries if e[1] == "l"),
        "other": sum(1 for e in entries if e[1] == "o"),
        "bytes": sum(e[4] for e in entries if e[1] == "f"),
        "bytes_unique": sum(e[4] for e in entries if e[1] == "f" and e[7] is None)
        + _unique_linked_bytes(entries),
        "hardlinked_names": sum(1 for e in entries if e[7] is not None and len(inodes[e[7]]) > 1),
    }
    return lines, summary


def _unique_linked_bytes(entries):
    seen, total = set(), 0
    for e in entries:
        if e[1] == "f" and e[7] is not None and e[7] not in seen:
            seen.add(e[7])
            total += e[4]
    return total


def main(argv):
    if len(argv) == 4 and argv[1] == "make":
        lines, summary = build(argv[2])
        with open(argv[3] + ".tmp", "w") as f:
            f.write("\n".join(lines) + "\n")
        os.rename(argv[3] + ".tmp", argv[3])
        print(json.dumps(summary))
        return 0
    if len(argv) == 4 and argv[1] == "compare":
        with open(argv[2]) as f:
            want = f.read().splitlines()
        if not os.path.isdir(argv[3]):
            print(f"MISMATCH: restored tree {argv[3]} does not exist", file=sys.stderr)
            return 1
        got, summary = build(argv[3])
        if got == want:
            print(json.dumps(summary))
            return 0
        want_by = {l.split("\t", 1)[0]: l for l in want}
        got_by = {l.split("\t", 1)[0]: l for l in got}
        missing = [k for k in want_by if k not in got_by]
        extra = [k for k in got_by if k not in want_by]
        differ = [k for k in want_by if k in got_by and want_by[k] != got_by[k]]
        print(f"MISMATCH in {argv[3]}: {len(want)} entries expected, {len(got)} restored; "
              f"{len(missing)} missing, {len(extra)} extra, {len(differ)} different",
              file=sys.stderr)
        print("  fields: path type mode uid:gid size mtime_ns sha256 linkgroup", file=sys.stderr)
        for k in missing[:10]:
            print(f"  missing: {want_by[k]}", file=sys.stderr)
        for k in extra[:10]:
            print(f"  extra:   {got_by[k]}", file=sys.stderr)
        for k in differ[:10]:
            print(f"  want:    {want_by[k]}\n  got:     {got_by[k]}", file=sys.stderr)
        return 1
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
