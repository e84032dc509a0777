#!/usr/bin/python3
"""Change 1 % of a dataset's files in place, and put them back exactly.

  touch1pct.py apply ROOT STATE    change every 100th non-empty, singly-linked regular file
                                   (sorted walk): 16 bytes in the middle are inverted, size kept;
                                   what is needed to undo it is written to STATE first
  touch1pct.py revert STATE        write the original bytes and times back, remove STATE

STATE is written (and fsynced) before any file is touched, so an interrupted benchmark can
always revert (bench/vault.sh does so on exit and at start when STATE is left over).
The ctime of the changed files moves on; content, size, mode and mtime come back identical.
"""

import json
import os
import stat
import sys

STRIDE = 100
PATCH = 16


def targets(root):
    out = []
    stack = [os.fsencode(root)]
    files = []
    while stack:
        d = stack.pop()
        for name in sorted(os.listdir(d), reverse=True):
            p = os.path.join(d, name)
            st = os.lstat(p)
            if stat.S_ISDIR(st.st_mode):
                stack.append(p)
            elif stat.S_ISREG(st.st_mode) and st.st_size > 0 and st.st_nlink == 1:
                files.append(p)
    files.sort()
    for i, p in enumerate(files):
        if i % STRIDE == STRIDE // 2:
            out.append(p)
    return out, len(files)


def apply(root, state):
    if os.path.exists(state):
        sys.exit(f"touch1pct: {state} exists: revert it first")
    paths, nfiles = targets(root)
    plan = []
    for p in paths:
        st = os.stat(p)
        off = max(0, st.st_size // 2 - PATCH // 2)
        with open(p, "rb") as f:
            f.seek(off)
            orig = f.read(PATCH)
        plan.append({"path": os.fsdecode(p), "offset": off, "orig": orig.hex(),
                     "atime_ns": st.st_atime_ns, "mtime_ns": st.st_mtime_ns})
    with open(state + ".tmp", "w") as f:
        json.dump(plan, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(state + ".tmp", state)
    changed = 0
    for e in plan:
        orig = bytes.fromhex(e["orig"])
        with open(e["path"], "r+b") as f:
            f.seek(e["offset"])
            f.write(bytes(b ^ 0xFF for b in orig))
        changed += len(orig)
    print(json.dumps({"files_changed": len(plan), "of_files": nfiles, "bytes_changed": changed}))


def revert(state):
    with open(state) as f:
        plan = json.load(f)
    for e in plan:
        with open(e["path"], "r+b") as f:
            f.seek(e["offset"])
            f.write(bytes.fromhex(e["orig"]))
        os.utime(e["path"], ns=(e["atime_ns"], e["mtime_ns"]))
    os.remove(state)
    print(json.dumps({"files_reverted": len(plan)}))


def main(argv):
    if len(argv) == 4 and argv[1] == "apply":
        apply(argv[2], argv[3])
    elif len(argv) == 3 and argv[1] == "revert":
        revert(argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
