#!/usr/bin/python3
"""Deterministic datasets for bench/vault.sh.

  mkdata.py a DEST BUDGET MAX_FILE ROOT...
      Copy ROOTs (in the order given) into DEST/<root path>, walking each tree depth-first with
      the names of every folder sorted bytewise, and stop at the first regular file that would
      take the copied bytes past BUDGET. Regular files larger than MAX_FILE are skipped (large
      files are dataset B's job) unless they have several names: hard links stay in. Files hard-linked to a file already copied are linked in the
      copy, not copied twice, and count once against the budget. Symlinks are kept as symlinks
      (their targets are not followed). Modes and times are kept. Sockets, fifos and devices are
      skipped. Prints one JSON line with what was copied.

  mkdata.py text DEST SIZE SRC_DIR forward|reverse TAG
      A compressible file of exactly SIZE bytes: the regular files under SRC_DIR (sorted walk,
      each inode once), in forward or reverse order, each preceded by a header line naming
      TAG and the file. Taking the first SIZE bytes forward for one file and backward for the
      other keeps the two files free of shared content (no deduplication between them) as long
      as SRC_DIR holds at least 2*SIZE bytes, and the data compresses like SRC_DIR itself.

  mkdata.py sample OUT SIZE SRC...
      About SIZE bytes made of whole files spread evenly over SRC (sorted walk, every k-th
      file), for `zstd -b`. A SRC that is a file is cut into slices instead.

The walk is the same everywhere: os.scandir, names sorted as bytes, folders entered where
they sort. The result depends only on the content of the source trees.
"""

import json
import os
import stat
import sys


def walk(root):
    """Yield (path, lstat) depth-first, names sorted bytewise, a folder before its content."""
    root = os.fsencode(root)
    st = os.lstat(root)
    yield root, st
    if stat.S_ISDIR(st.st_mode):
        yield from _walk_dir(root)


def _walk_dir(d):
    try:
        names = sorted(os.listdir(d))
    except OSError as e:
        print(f"mkdata: skipping unreadable folder {os.fsdecode(d)}: {e}", file=sys.stderr)
        return
    for n in names:
        p = os.path.join(d, n)
        try:
            st = os.lstat(p)
        except OSError:
            continue  # vanished while we walked
        yield p, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk_dir(p)


def regular_files(root):
    """Regular files under root, each inode once, in walk order."""
    seen = set()
    for p, st in walk(root):
        if stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            yield p, st


def copy_file(src, dst, st):
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        left = st.st_size
        while left > 0:
            n = os.sendfile(fo.fileno(), fi.fileno(), None, min(left, 1 << 30))
            if n == 0:
                break  # file shrank while we copied: keep what was there
            left -= n
    os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


def cmd_a(dest, budget, max_file, roots):
    dest = os.fsencode(dest)
    os.makedirs(dest, exist_ok=True)
    copied = 0
    counts = {"files": 0, "hardlinks": 0, "symlinks": 0, "dirs": 0, "skipped_large": 0,
              "skipped_special": 0}
    links = {}  # (dev, ino) of the source -> path of its first copy
    dirs = []  # (copy, lstat) to set times last, deepest first
    stopped = False
    for root in roots:
        if stopped:
            break
        for p, st in walk(root):
            out = os.path.join(dest, p.lstrip(b"/"))
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                os.makedirs(out, exist_ok=True)
                dirs.append((out, st))
                counts["dirs"] += 1
            elif stat.S_ISLNK(mode):
                os.symlink(os.readlink(p), out)
                os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
                counts["symlinks"] += 1
            elif stat.S_ISREG(mode):
                key = (st.st_dev, st.st_ino)
                if key in links:
                    os.link(links[key], out)
                    counts["hardlinks"] += 1
                    continue
                if st.st_size > max_file and st.st_nlink == 1:
                    counts["skipped_large"] += 1
                    continue
                if copied + st.st_size > budget:
                    stopped = True
                    break
                try:
                    copy_file(p, out, st)
                except OSError as e:
                    print(f"mkdata: skipping {os.fsdecode(p)}: {e}", file=sys.stderr)
                    continue
                links[key] = out
                copied += st.st_size
                counts["files"] += 1
            else:
                counts["skipped_special"] += 1
    for out, st in reversed(dirs):
        os.chmod(out, stat.S_IMODE(st.st_mode))
        os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
    counts["bytes"] = copied
    counts["budget_reached"] = stopped
    print(json.dumps(counts))


def cmd_text(dest, size, src, order, tag):
    files = list(regular_files(src))
    if order == "reverse":
        files.reverse()
    written = 0
    with open(dest, "wb") as fo:
        for p, st in files:
            if written >= size:
                break
            header = b"==> %s %s (%d bytes) <==\n" % (tag.encode(), p, st.st_size)
            with open(p, "rb") as fi:
                data = header + fi.read()
            data = data[: size - written]
            fo.write(data)
            written += len(data)
    if written < size:
        sys.exit(f"mkdata: {src} holds only {written} bytes, {size} needed for {dest}")


def cmd_sample(out, size, srcs):
    files = []
    for s in srcs:
        if os.path.isfile(s):
            files.append((os.fsencode(s), os.stat(s)))
        else:
            files.extend(regular_files(s))
    total = sum(st.st_size for _, st in files)
    if total <= 0:
        sys.exit("mkdata: nothing to sample")
    written = 0
    with open(out, "wb") as fo:
        if len(files) <= 16:
            # Big files: an equal slice from evenly spaced offsets of each.
            per = size // len(files)
            nslices = 8
            for p, st in files:
                with open(p, "rb") as fi:
                    for i in range(nslices):
                        fi.seek(st.st_size * i // nslices)
                        fo.write(fi.read(per // nslices))
            return
        stride = max(1, total // size)
        for i, (p, st) in enumerate(files):
            if i % stride:
                continue
            with open(p, "rb") as fi:
                data = fi.read()
            fo.write(data)
            written += len(data)
            if written >= size:
                break


def main(argv):
    if len(argv) >= 5 and argv[1] == "a":
        cmd_a(argv[2], int(argv[3]), int(argv[4]), argv[5:])
    elif len(argv) == 7 and argv[1] == "text":
        cmd_text(argv[2], int(argv[3]), os.fsencode(argv[4]), argv[5], argv[6])
    elif len(argv) >= 5 and argv[1] == "sample":
        cmd_sample(argv[2], int(argv[3]), argv[4:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
