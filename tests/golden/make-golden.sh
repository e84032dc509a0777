#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Rebuilds the golden vaults in this folder with the real restic (Debian 12's restic 0.14), and
# next to each tarball the outputs restic gives for it, which holdfast must reproduce:
#
#   restic-v2-auto   restic init; backup (compression auto)        two snapshots
#   restic-v2-off    restic init; backup --compression off         two snapshots
#   restic-v1        restic init --repository-version 1            two snapshots
#   restic-v2-small  as v2-auto without big.bin, one snapshot: the base of the damaged copies
#   damaged-pack-byte, damaged-index-truncated, damaged-snapshot-truncated, damaged-key-json
#
# Password "golden". Each NAME.tar.xz holds repo/; NAME/ holds what restic said about it (see
# README.md). Vault files are encrypted with random keys and IVs, so every run gives different
# bytes: rebuild only when the fixtures must change, and commit tarballs and outputs together.
#
# Usage: tests/golden/make-golden.sh            (as root is not needed; needs restic, python3)
set -euo pipefail
umask 022

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
py=/usr/bin/python3
helpers=$root/tests/integration/helpers.py
restic_bin=${RESTIC:-restic}
export GOLDEN_RESTIC=$restic_bin

# restic records the absolute source path in each snapshot: keep it fixed across rebuilds.
work=/tmp/holdfast-golden
src=$work/tree

export TZ=UTC LC_ALL=C.UTF-8 RESTIC_PASSWORD=golden
unset RESTIC_REPOSITORY RESTIC_REPOSITORY_FILE RESTIC_PASSWORD_FILE RESTIC_PASSWORD_COMMAND \
      RESTIC_COMPRESSION RESTIC_CACHE_DIR RESTIC_KEY_HINT RESTIC_HOST 2>/dev/null || true

command -v "$restic_bin" >/dev/null || { echo "make-golden: restic not found" >&2; exit 1; }
case "$("$restic_bin" version)" in
restic\ 0.14.*) ;;
*) echo "make-golden: want restic 0.14 (Debian 12), have: $("$restic_bin" version)" >&2; exit 1 ;;
esac

R() { "$restic_bin" --no-cache --quiet "$@"; }
step() { printf 'make-golden: %s\n' "$*"; }

rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

# --------------------------------------------------------------------------------------------
# The source tree: deterministic content, names and times.
make_tree() {
        mkdir -p "$src/notes/deep" "$src/empty-dir"
        printf 'Hello from the golden tree.\n' >"$src/hello.txt"
        : >"$src/empty.txt"
        printf '# Notes\n\n- restic writes, holdfast reads\n- holdfast writes, restic reads\n' \
                >"$src/notes/todo.md"
        printf 'a leaf in a subfolder\n' >"$src/notes/deep/leaf.txt"
        printf '#!/bin/sh\necho golden\n' >"$src/script.sh"
        chmod 0755 "$src/script.sh"
        printf 'only the owner reads this\n' >"$src/private.txt"
        chmod 0600 "$src/private.txt"
        printf 'this name is not UTF-8\n' >"$src/"$'inv\xfe.txt'
        printf 'markup and quotes in the name\n' >"$src/a<b>&\"q'.txt"
        printf 'UTF-8 name with a space\n' >"$src/grüße ü.txt"
        ln -s hello.txt "$src/link-hello"
        ln -s notes/deep "$src/link-deep"
        # big.bin: 6 copies of a 512 KiB block, then a 100000-byte tail. Each block ends in 64
        # zero bytes, so restic's chunker (minimum chunk 512 KiB, 64-byte window) cuts exactly
        # after every block whatever the vault's polynomial: the file has 7 chunks but only 2
        # distinct blobs, which keeps the uncompressed vaults small. Half of each block is
        # random bytes, half random words (compressible, so "auto" really compresses).
        "$py" - "$src/big.bin" <<'EOF'
import random, sys
rng = random.Random(20240501)
words = [b"vault", b"restic", b"holdfast", b"chunk", b"blob", b"pack", b"index", b"tree",
         b"snapshot", b"key", b"golden", b"sentinel", b"zstd", b"poly1305", b"scrypt", b"aes"]
text = bytearray()
while len(text) < 262080:
    text += rng.choice(words) + b" "
block = rng.randbytes(262144) + bytes(text[:262080]) + bytes(64)
assert len(block) == 512 * 1024
with open(sys.argv[1], "wb") as f:
    f.write(block * 6 + rng.randbytes(100000))
EOF
        if ! setfattr -n user.golden -v "restic stores xattrs" "$src/notes/todo.md" 2>/dev/null; then
                echo "make-golden: warning: $work does not take user xattrs; none stored" >&2
        fi
        local t=2023-03-04T05:06:07
        touch -d "$t.100000001Z" "$src/hello.txt"
        touch -d "$t.200000002Z" "$src/empty.txt"
        touch -d "$t.300000003Z" "$src/notes/todo.md"
        touch -d "$t.400000004Z" "$src/notes/deep/leaf.txt"
        touch -d "$t.500000005Z" "$src/script.sh"
        touch -d "$t.600000006Z" "$src/private.txt"
        touch -d "$t.700000007Z" "$src/"$'inv\xfe.txt'
        touch -d "$t.800000008Z" "$src/a<b>&\"q'.txt"
        touch -d "$t.900000009Z" "$src/grüße ü.txt"
        touch -d "2022-01-01T00:00:00Z" "$src/big.bin"
        touch -h -d "2023-01-02T03:04:05.000000006Z" "$src/link-hello"
        touch -h -d "2023-01-02T03:04:05.000000007Z" "$src/link-deep"
        touch -d "2023-02-01T00:00:00.5Z" "$src/empty-dir" "$src/notes/deep"
        touch -d "2023-02-02T00:00:00.25Z" "$src/notes"
        touch -d "2023-02-03T00:00:00Z" "$src"
}

change_tree() {
        printf 'Hello again: changed for the second snapshot.\n' >"$src/hello.txt"
        touch -d "2024-05-02T11:00:00.123456789Z" "$src/hello.txt"
        touch -d "2023-02-03T00:00:00Z" "$src"
}

# --------------------------------------------------------------------------------------------
# Recording what restic says about a vault.

tarball() { # DIR NAME: DIR/repo -> $here/NAME.tar.xz (sorted, numeric owner 0, xz)
        "$py" - "$1" "$here/$2.tar.xz" <<'EOF'
import os, sys, tarfile
base, out = sys.argv[1], sys.argv[2]
def norm(ti):
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti
paths = []
for d, dirs, files in os.walk(os.path.join(base, "repo")):
    dirs.sort()
    paths.append(d)
    paths += [os.path.join(d, f) for f in sorted(files)]
with tarfile.open(out, "w:xz", preset=9, format=tarfile.PAX_FORMAT) as tf:
    for p in paths:
        tf.add(p, arcname=os.path.relpath(p, base), recursive=False, filter=norm)
EOF
}

snapshot_ids() { # REPO -> snapshot IDs, oldest first
        R -r "$1" snapshots --json | "$py" -c '
import json, sys
for s in sorted(json.load(sys.stdin), key=lambda s: s["time"]):
    print(s["id"])'
}

record() { # NAME REPO VERSION COMPRESSION
        local name=$1 repo=$2 version=$3 compression=$4 out=$here/$1
        local ids first latest target=$work/restore-$1
        rm -rf "$out"
        mkdir -p "$out"
        R -r "$repo" snapshots --json >"$out/snapshots.json"
        echo >>"$out/snapshots.json"
        mapfile -t ids < <(snapshot_ids "$repo")
        first=${ids[0]}
        latest=${ids[-1]}
        R -r "$repo" ls --json latest >"$out/ls-latest.jsonl"
        if ((${#ids[@]} > 1)); then
                R -r "$repo" ls --json "$first" >"$out/ls-first.jsonl"
        fi
        R -r "$repo" restore latest --target "$target"
        (cd "$target" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) \
                >"$out/restore-latest.sha256"
        "$py" "$helpers" manifest "$target" >"$out/restore-latest.manifest.jsonl"
        "$restic_bin" --no-cache -r "$repo" check --read-data >"$out/check.txt" 2>&1
        "$py" - "$repo" "$out" "$name" "$version" "$compression" "$first" "$latest" \
                "$("$restic_bin" version)" "$src" <<'EOF'
import json, os, subprocess, sys
repo, out, name, version, compression, first, latest, restic_version, src = sys.argv[1:]
def lines(*args):
    return subprocess.run([os.environ["GOLDEN_RESTIC"], "--no-cache", "-r", repo, *args], check=True,
                          capture_output=True, text=True).stdout.split("\n")
blobs = [l.split() for l in lines("list", "blobs") if l.strip()]
packs = [l for l in lines("list", "packs") if l.strip()]
stats = {
    "snapshots": len([l for l in lines("list", "snapshots") if l.strip()]),
    "index_files": len([l for l in lines("list", "index") if l.strip()]),
    "keys": len([l for l in lines("list", "keys") if l.strip()]),
    "packs": len(packs),
    "blobs": len(blobs),
    "data_blobs": sum(1 for b in blobs if b[0] == "data"),
    "tree_blobs": sum(1 for b in blobs if b[0] == "tree"),
}
info = {
    "name": name,
    "tarball": name + ".tar.xz",
    "repo_dir": "repo",
    "password": os.environ["RESTIC_PASSWORD"],
    "repository_version": int(version),
    "compression": compression,
    "first_snapshot": first,
    "latest_snapshot": latest,
    "source_path": src,
    "written_by": restic_version.strip(),
}
for fn, doc in (("stats.json", stats), ("info.json", info)):
    with open(os.path.join(out, fn), "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")
EOF
}

# --------------------------------------------------------------------------------------------
# The vaults.

backup() { # REPO TAG TIME [restic backup options...]
        local repo=$1 tag=$2 time=$3
        shift 3
        (cd "$work" && R -r "$repo" backup --host golden --tag golden --tag "$tag" \
                --time "$time" "$@" tree)
}

make_vault() { # NAME VERSION COMPRESSION
        local name=$1 version=$2 compression=$3 repo=$work/$1/repo
        step "$name"
        rm -rf "$src"
        make_tree
        R -r "$repo" init --repository-version "$version" >/dev/null
        backup "$repo" first "2024-05-01 12:00:00" --compression "$compression"
        change_tree
        backup "$repo" second "2024-05-02 12:00:00" --compression "$compression"
        R -r "$repo" check --read-data >/dev/null
        tarball "$work/$name" "$name"
        record "$name" "$repo" "$version" "$compression"
}

make_vault restic-v2-auto 2 auto
make_vault restic-v2-off 2 off
make_vault restic-v1 1 auto

step restic-v2-small
small=$work/restic-v2-small/repo
rm -rf "$src"
make_tree
R -r "$small" init >/dev/null
backup "$small" first "2024-05-01 12:00:00" --exclude big.bin
tarball "$work/restic-v2-small" restic-v2-small
record restic-v2-small "$small" 2 auto

# --------------------------------------------------------------------------------------------
# Damaged copies of restic-v2-small. Each NAME/expect.json names the damaged file; restic.txt
# keeps what restic 0.14 said about the damage, for reference.

damage() { # NAME KIND
        local name=$1 kind=$2 dir=$work/$1 out=$here/$1
        step "$name"
        rm -rf "$dir" "$out"
        mkdir -p "$dir" "$out"
        cp -a "$small" "$dir/repo"
        "$py" - "$dir/repo" "$kind" "$out/expect.json" "$(snapshot_ids "$small" | tail -n 1)" <<'EOF'
import json, os, subprocess, sys
repo, kind, expect_path, snap = sys.argv[1:]
def restic(*args):
    return subprocess.run([os.environ["GOLDEN_RESTIC"], "--no-cache", "-r", repo, *args], check=True,
                          capture_output=True).stdout
def only(folder):
    names = sorted(os.listdir(os.path.join(repo, folder)))
    assert len(names) == 1, (folder, names)
    return names[0]
def writable(path):
    os.chmod(path, 0o600)
    return path
expect = {"kind": kind, "snapshot": snap}
if kind == "pack-byte":
    # Flip one byte in the middle of hello.txt's data blob: only that blob's MAC fails, so
    # every other file of the snapshot can still be restored.
    tree = json.loads(restic("cat", "snapshot", snap))["tree"]
    root = json.loads(restic("cat", "blob", tree))["nodes"]
    top = next(n for n in root if n["name"] == "tree")
    nodes = json.loads(restic("cat", "blob", top["subtree"]))["nodes"]
    hello = next(n for n in nodes if n["name"] == "hello.txt")
    blob = hello["content"][0]
    idx = json.loads(restic("cat", "index", only("index")))
    pack, entry = next((p["id"], b) for p in idx["packs"] for b in p["blobs"] if b["id"] == blob)
    path = writable(os.path.join(repo, "data", pack[:2], pack))
    with open(path, "r+b") as f:
        off = entry["offset"] + entry["length"] // 2
        f.seek(off)
        byte = f.read(1)[0]
        f.seek(off)
        f.write(bytes([byte ^ 0x5a]))
    expect.update(file=f"data/{pack[:2]}/{pack}", pack=pack, blob=blob, offset=off,
                  damaged_paths=["/tree/hello.txt"])
elif kind in ("index-truncated", "snapshot-truncated"):
    folder = "index" if kind == "index-truncated" else "snapshots"
    name = only(folder)
    path = writable(os.path.join(repo, folder, name))
    size = os.path.getsize(path)
    os.truncate(path, size // 2)
    expect.update(file=f"{folder}/{name}", id=name, size_before=size, size_after=size // 2)
elif kind == "key-json":
    name = only("keys")
    path = writable(os.path.join(repo, "keys", name))
    text = open(path, "rb").read().rstrip()
    assert text.endswith(b"}")
    # Valid start, then the closing brace replaced by a dangling member: malformed JSON.
    with open(path, "wb") as f:
        f.write(text[:-1] + b',"kdf":')
    expect.update(file=f"keys/{name}", id=name)
else:
    raise SystemExit(f"unknown damage {kind}")
with open(expect_path, "w") as f:
    json.dump(expect, f, indent=2, sort_keys=True)
    f.write("\n")
EOF
        find "$dir/repo" -type f -exec chmod 0400 {} +
        tarball "$dir" "$name"
        {
                local rc
                for cmd in "snapshots" "ls latest" "check --read-data"; do
                        echo "\$ restic $cmd"
                        rc=0
                        # shellcheck disable=SC2086
                        "$restic_bin" --no-cache -r "$dir/repo" $cmd >"$work/out.txt" 2>&1 || rc=$?
                        head -n 40 "$work/out.txt" | sed "s|$dir/||g"
                        echo "(exit code $rc)"
                        echo
                done
        } >"$out/restic.txt"
}

damage damaged-pack-byte pack-byte
damage damaged-index-truncated index-truncated
damage damaged-snapshot-truncated snapshot-truncated
damage damaged-key-json key-json

step "done: $(du -sh "$here" | cut -f1) in $here"
