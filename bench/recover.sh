#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# bench/recover.sh: the numbers of issue 6, measured on loop images made here (root only).
#
#   1. Recovery of an incident that touched FILES (10,000) files: XFS, a sentinel in alert mode
#      (so the attacker encrypts every file), then `holdfast recover --incident ID`; every file
#      is checked against its pre-attack SHA-256. Target: <= 60 s.
#   2. Shadow space per byte the attacker overwrote: full and intermittent (every 16th 4 KiB
#      block) encryption of SPACE_FILES files of 64 KiB on XFS, btrfs (reflink) and ext4 (copy):
#      growth of the filesystem's used space with the sentinel, less the growth of the same
#      attack without it (btrfs allocates new extents for overwritten blocks and keeps the old
#      ones: the attack alone grows it), over bytes overwritten. Target: <= 1.2.
#   3. Pre-image overhead on a benign build (untar and make -j of a generated C project of
#      BUILD_FILES files) in a protected tree: no sentinel, the sentinel without pre-images
#      (notify mode) and with them (pre-content), interleaved in one run, median of REPS.
#
# Environment: HOLDFAST (binary, default build/src/cli/holdfast), BENCH_DIR (scratch parent,
# default /var/tmp), FILES, SPACE_FILES, BUILD_FILES, REPS, PARTS ("1 2 3"), KEEP=1.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
hf=${HOLDFAST:-$root/build/src/cli/holdfast}
[[ "$hf" == /* ]] || hf=$root/$hf
hf=$(realpath "$hf")
FILES=${FILES:-10000}
SPACE_FILES=${SPACE_FILES:-1000}
BUILD_FILES=${BUILD_FILES:-120}
REPS=${REPS:-5}
PARTS=${PARTS:-"1 2 3"}

if [[ $EUID -ne 0 ]]; then
        echo "bench/recover.sh: needs root (loop mounts, the sentinel)" >&2
        exit 2
fi
work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/holdfast-bench-recover.XXXXXX")
export HOLDFAST_PASSWORD=bench-recover
unset HOLDFAST_PASSWORD_FILE HOLDFAST_REPOSITORY RESTIC_REPOSITORY
mkdir -p "$work/bin"
cp "$hf" "$work/bin/hf-attacker"   # the attacker: the same program under another path
sentinel_pid=
mounts=()

cleanup() {
        stop_sentinel
        for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
        if [[ "${KEEP:-0}" != 1 ]]; then rm -rf "$work"; else echo "kept $work"; fi
}
trap cleanup EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# mkfs_mount FS DIR: a 2 GiB loop image of FS mounted at DIR.
mkfs_mount() {
        local fs=$1 dir=$2 img=$2.img
        truncate -s 2G "$img"
        case $fs in
        xfs) mkfs.xfs -q -f "$img" ;;
        btrfs) mkfs.btrfs -q -f "$img" >/dev/null ;;
        ext4) mkfs.ext4 -q -F "$img" ;;
        esac
        mkdir -p "$dir"
        mount -o loop "$img" "$dir"
        mounts+=("$dir")
}

used_bytes() {
        sync
        [[ $(stat -f -c %T "$1") == btrfs ]] && btrfs filesystem sync "$1" >/dev/null 2>&1 || true
        sleep 1
        stat -f -c '%b %f %S' "$1" | awk '{ printf "%d", ($1 - $2) * $3 }'
}

# start_sentinel STATE TREE ACTION [MODE]
start_sentinel() {
        local state=$1 tree=$2 action=$3 mode=${4:-auto}
        mkdir -p "$state"
        cat >"$state.conf" <<EOF
[sentinel]
action = $action
mode = $mode
decoys = no
raw-disk-guard = no
[protect]
path = $tree
[trust]
program = $hf
[alerts]
syslog = no
EOF
        setsid "$hf" sentinel --config "$state.conf" --state "$state" >>"$state.log" 2>&1 </dev/null &
        sentinel_pid=$!
        for _ in $(seq 300); do
                grep -q "holdfast sentinel: ready" "$state.log" 2>/dev/null && return 0
                sleep 0.1
        done
        echo "the sentinel did not start (see $state.log)" >&2
        exit 1
}

stop_sentinel() {
        if [[ -n "$sentinel_pid" ]]; then
                kill "$sentinel_pid" 2>/dev/null || true
                wait "$sentinel_pid" 2>/dev/null || true
                sentinel_pid=
        fi
}

manifest() { (cd "$1" && find . -path ./.holdfast -prune -o -type f -name '*.txt' \
        ! -name HOW_TO_RECOVER_FILES.txt -print0 | sort -z | xargs -0 sha256sum); }

last_incident() {
        "$hf" incidents --state "$1" --json | python3 -c \
                'import json,sys; v=json.load(sys.stdin); print(max((i["id"] for i in v), default=0))'
}

json_field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read().splitlines()[-1])['$1'])"; }

echo "holdfast bench/recover.sh in $work ($(uname -r), $(nproc) CPUs)"

# ---- 1. recovery of a 10,000-file incident ------------------------------------------------
if [[ " $PARTS " == *" 1 "* ]]; then
        echo
        echo "1. recovery of an incident that touched $FILES files (XFS, 16 KiB files)"
        m=$work/p1
        mkfs_mount xfs "$m"
        "$hf" simulate prepare "$m/srv" --files "$FILES" --file-size 16384
        "$hf" -r "$work/p1-vault" init -q --kdf-params 16384,8,1 >/dev/null
        t0=$(now); "$hf" -r "$work/p1-vault" backup -q "$m/srv"; t1=$(now)
        echo "   vault: first snapshot in $(elapsed "$t0" "$t1") s"
        manifest "$m/srv" >"$work/p1-before"
        start_sentinel "$work/p1-state" "$m/srv" alert
        t0=$(now)
        setsid "$work/bin/hf-attacker" simulate attack encrypt "$m/srv" -q >"$work/p1-attack.json"
        t1=$(now)
        sleep 1
        stop_sentinel
        id=$(last_incident "$work/p1-state")
        echo "   attack: $(json_field files <"$work/p1-attack.json") files," \
             "$(json_field bytes <"$work/p1-attack.json") bytes encrypted in $(elapsed "$t0" "$t1") s" \
             "(sentinel in alert mode: incident $id, the attacker ran to the end)"
        sync; echo 3 >/proc/sys/vm/drop_caches
        t0=$(now)
        "$hf" -r "$work/p1-vault" recover --incident "$id" --state "$work/p1-state" --json \
                >"$work/p1-recover.jsonl" || true
        t1=$(now)
        manifest "$m/srv" >"$work/p1-after"
        left=$(find "$m/srv" -path "$m/srv/.holdfast" -prune -o -type f -print | wc -l)
        if cmp -s "$work/p1-before" "$work/p1-after"; then same=identical; else same=DIFFERENT; fi
        summary=$(tail -n1 "$work/p1-recover.jsonl")
        echo "   recover: $(elapsed "$t0" "$t1") s wall (cold cache) for" \
             "$(echo "$summary" | json_field files) files:" \
             "$(echo "$summary" | json_field from_preimage) from pre-images," \
             "$(echo "$summary" | json_field removed) attacker files removed;" \
             "every file $same to its pre-attack hash ($left files in the tree)"
        p1_seconds=$(elapsed "$t0" "$t1")
        umount "$m"
fi

# ---- 2. shadow space ---------------------------------------------------------------------
if [[ " $PARTS " == *" 2 "* ]]; then
        echo
        echo "2. shadow space over bytes overwritten ($SPACE_FILES files of 64 KiB)"
        printf '   %-6s %-16s %12s %12s %12s %12s %12s %7s\n' fs attack overwritten growth-now \
                growth-rest no-sentinel shadow-files ratio
        for fs in xfs btrfs ext4; do
                for kind in encrypt intermittent-4k; do
                        # The attack alone, on a filesystem of its own.
                        m=$work/p2-$fs-$kind-base
                        mkfs_mount "$fs" "$m"
                        "$hf" simulate prepare "$m/srv" --files "$SPACE_FILES" --file-size 65536
                        u0=$(used_bytes "$m")
                        setsid "$work/bin/hf-attacker" simulate attack "$kind" "$m/srv" -q >/dev/null
                        umount "$m"
                        mount -o loop "$m.img" "$m"
                        base=$(($(used_bytes "$m") - u0))
                        umount "$m"
                        rm -f "$m.img"
                        m=$work/p2-$fs-$kind
                        mkfs_mount "$fs" "$m"
                        "$hf" simulate prepare "$m/srv" --files "$SPACE_FILES" --file-size 65536
                        u0=$(used_bytes "$m")
                        start_sentinel "$m-state" "$m/srv" alert
                        setsid "$work/bin/hf-attacker" simulate attack "$kind" "$m/srv" -q \
                                >"$m-attack.json"
                        sleep 1
                        stop_sentinel
                        u1now=$(used_bytes "$m")
                        # At rest: a remount drops XFS's speculative CoW preallocations (the
                        # cowextsize hint reserves 128 KiB per CoW write until then).
                        umount "$m"
                        mount -o loop "$m.img" "$m"
                        u1=$(used_bytes "$m")
                        over=$(json_field bytes <"$m-attack.json")
                        shadow=$(du -sb "$m/.holdfast/shadow" | cut -f1)
                        ratio=$(awk -v a="$u1" -v b="$u0" -v c="$base" -v o="$over" \
                                'BEGIN { printf "%.2f", (a - b - c) / o }')
                        printf '   %-6s %-16s %12d %12d %12d %12d %12d %7s\n' "$fs" "$kind" \
                                "$over" $((u1now - u0)) $((u1 - u0)) "$base" "$shadow" "$ratio"
                        umount "$m"
                        rm -f "$m.img"
                done
        done
        echo "   (growth: used space after minus before, ransom notes included, right after the"
        echo "    attack and at rest after a remount; no-sentinel: the same at rest for the attack"
        echo "    without a sentinel; ratio: (growth-rest - no-sentinel) over bytes overwritten;"
        echo "    shadow-files: apparent size of the pre-images, which share blocks with the"
        echo "    originals on XFS and btrfs)"
fi

# ---- 3. pre-image overhead on a benign build ---------------------------------------------
if [[ " $PARTS " == *" 3 "* ]]; then
        echo
        echo "3. pre-image overhead: untar + make -j$(nproc) of a $BUILD_FILES-file C project (XFS)"
        proj=$work/project
        mkdir -p "$proj/src"
        for i in $(seq 1 "$BUILD_FILES"); do
                {
                        echo "#include <stdio.h>"
                        echo "#include \"common.h\""
                        for f in $(seq 1 40); do
                                echo "int fn_${i}_$f(int x) { int s = 0; for (int k = 0; k < x; k++)"
                                echo "        s += k * $f ^ (k >> 3); return s + table[$f % 16]; }"
                        done
                } >"$proj/src/m$i.c"
        done
        echo "static const int table[16] = {1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16};" \
                >"$proj/src/common.h"
        echo 'int main(void) { return 0; }' >"$proj/src/main.c"
        cat >"$proj/Makefile" <<'EOF'
SRCS := $(wildcard src/*.c)
OBJS := $(SRCS:.c=.o)
app: $(OBJS)
	$(CC) -o $@ $(OBJS)
%.o: %.c src/common.h
	$(CC) -O1 -c -o $@ $<
EOF
        tar -C "$work" -cf "$work/project.tar" project
        m=$work/p3
        mkfs_mount xfs "$m"
        mkdir -p "$m/srv"
        declare -A times
        for rep in $(seq 1 "$REPS"); do
                for variant in none notify pre-content; do
                        d=$m/srv/build-$variant-$rep
                        if [[ $variant != none ]]; then
                                start_sentinel "$work/p3-state-$variant" "$m/srv" alert "$variant"
                        fi
                        sync
                        t0=$(now)
                        mkdir -p "$d"
                        tar -C "$d" -xf "$work/project.tar"
                        make -s -C "$d/project" -j"$(nproc)" >/dev/null
                        t1=$(now)
                        stop_sentinel
                        times[$variant]+="$(elapsed "$t0" "$t1") "
                done
        done
        median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
        minimum() { tr ' ' '\n' | grep . | sort -n | head -n1; }
        base=$(echo "${times[none]}" | median)
        for variant in none notify pre-content; do
                med=$(echo "${times[$variant]}" | median)
                printf '   %-12s median %6.2f s, min %6.2f s  (%s)  median %+.1f %%\n' "$variant" \
                        "$med" "$(echo "${times[$variant]}" | minimum)" "${times[$variant]% }" \
                        "$(awk -v a="$med" -v b="$base" 'BEGIN { print (a / b - 1) * 100 }')"
        done
        pre=$(echo "${times[pre-content]}" | median)
        notify=$(echo "${times[notify]}" | median)
        echo "   pre-image overhead (pre-content over notify): $(awk -v a="$pre" -v b="$notify" \
                'BEGIN { printf "%+.1f %%", (a / b - 1) * 100 }')"
        umount "$m"
fi
