#!/usr/bin/env bash
# bench/vault.sh: holdfast against restic 0.14 on the same data, the same vault format (restic
# repository v2), the same machine and the same run, tools alternating. See docs/PERFORMANCE.md.
#
# Run as root (loop mounts, drop_caches). Builds datasets A and B once under $BENCH_DIR, measures
# the primitive bounds (openssl speed, zstd -b, dd into the page cache), runs every operation RUNS
# times per tool, checks every restore against the source, runs `restic check --read-data` on
# holdfast-written vaults, and prints a markdown report (also written to
# $BENCH_DIR/results-<date>.md).
set -euo pipefail

usage() {
        cat <<'EOF'
usage: bench/vault.sh [--quick] [--runs N] [--keep-going] [--keep-vaults]

  --quick        smoke test: 1 run, dataset A only, trimmed to ~300 MB (a few minutes)
  --runs N       runs per tool (default 3, or $RUNS)
  --keep-going   a restore that does not match the source is reported and the run goes on
                 (default: stop at once); the exit code is 1 either way
  --keep-vaults  leave the last run's vaults and logs in $BENCH_DIR/work

environment (defaults):
  BENCH_DIR=/var/tmp/holdfast-bench  datasets (kept), work area, results-<date>.md
  HOLDFAST=<repo>/build/src/cli/holdfast  copied to $BENCH_DIR/work first, so a rebuild
                                      during the run does not mix two binaries
  RESTIC=restic
  A_BUDGET=1940000000  A_QUICK_BUDGET=300000000  A_MAX_FILE=4194304  B_SIZE=536870912
  LOOP_SIZE=8G         size of the sparse ext4 image each restore writes into
EOF
}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$HERE")
PY=/usr/bin/python3

QUICK=0
KEEP_GOING=0
KEEP_VAULTS=0
RUNS_ARG=""
while (($#)); do
        case $1 in
        --quick) QUICK=1 ;;
        --runs) RUNS_ARG=${2:?--runs needs a number}; shift ;;
        --runs=*) RUNS_ARG=${1#--runs=} ;;
        --keep-going) KEEP_GOING=1 ;;
        --keep-vaults) KEEP_VAULTS=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "vault.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
        esac
        shift
done

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
        printf '\nvault.sh: ERROR: %s\n' "$*" >&2
        exit 1
}

BENCH_DIR=${BENCH_DIR:-/var/tmp/holdfast-bench}
HOLDFAST=${HOLDFAST:-$REPO_ROOT/build/src/cli/holdfast}
RESTIC=${RESTIC:-restic}
A_BUDGET=${A_BUDGET:-1940000000}
A_QUICK_BUDGET=${A_QUICK_BUDGET:-300000000}
A_MAX_FILE=${A_MAX_FILE:-4194304}
B_SIZE=${B_SIZE:-536870912}
LOOP_SIZE=${LOOP_SIZE:-8G}
if ((QUICK)); then
        RUNS=${RUNS_ARG:-1}
else
        RUNS=${RUNS_ARG:-${RUNS:-3}}
fi
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive number, not '$RUNS'"

# ---------------------------------------------------------------------------------------------
# Preconditions
# ---------------------------------------------------------------------------------------------
[[ $(id -u) == 0 ]] || die "run me as root: restores go into loop-mounted ext4 images and cold runs write /proc/sys/vm/drop_caches"
[[ -x $PY ]] || die "$PY is missing (apt-get install python3)"
for t in "$RESTIC" openssl zstd mkfs.ext4 mount umount mountpoint losetup truncate du flock sha256sum; do
        command -v "$t" >/dev/null || die "'$t' not found in PATH"
done
if [[ ! -x /usr/bin/time ]]; then
        say "/usr/bin/time is missing: installing Debian's 'time' package (apt-get -y install time)"
        apt-get -y install time >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get -y install time >/dev/null; } ||
                die "could not install the 'time' package"
fi
[[ -x $HOLDFAST ]] || die "no holdfast binary at $HOLDFAST: build it (make) or set HOLDFAST=/path/to/holdfast"

mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd -P)
DATA=$BENCH_DIR/data
WORK=$BENCH_DIR/work
mkdir -p "$DATA"
exec 9>"$BENCH_DIR/.lock"
flock -n 9 || die "another vault.sh is running on $BENCH_DIR (lock $BENCH_DIR/.lock)"

TOUCH_STATE=$DATA/touch1pct.state.json
FAILURES=()

cleanup() {
        local rc=$?
        set +e
        local m
        for m in "$BENCH_DIR"/mnt-*; do
                [[ -d $m ]] || continue
                if mountpoint -q "$m"; then
                        umount "$m" 2>/dev/null || umount -l "$m"
                fi
                rmdir "$m"
        done
        rm -f "$BENCH_DIR"/fs-*.img
        if [[ -f $TOUCH_STATE ]]; then
                say "putting back the files changed for the 1 % backup"
                $PY "$HERE/touch1pct.py" revert "$TOUCH_STATE" >/dev/null
        fi
        if ((rc == 0 && !KEEP_VAULTS)); then
                rm -rf "$WORK"
        elif [[ -d $WORK ]]; then
                say "vaults and logs kept in $WORK"
        fi
        exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cleanup_stale() {
        # A run that was killed hard may have left mounts, images or changed files.
        local m
        for m in "$BENCH_DIR"/mnt-*; do
                [[ -d $m ]] || continue
                if mountpoint -q "$m"; then umount "$m"; fi
                rmdir "$m"
        done
        rm -f "$BENCH_DIR"/fs-*.img
        if [[ -f $TOUCH_STATE ]]; then
                say "reverting the 1 % change left by an interrupted run"
                $PY "$HERE/touch1pct.py" revert "$TOUCH_STATE" >/dev/null
        fi
}
cleanup_stale
rm -rf "$WORK"
mkdir -p "$WORK/logs" "$WORK/bin"

avail_gb=$(df -Pk "$BENCH_DIR" | awk 'NR==2 {print int($4 / 1048576)}')
need_gb=$((QUICK ? 4 : 16))
((avail_gb >= need_gb)) || die "$BENCH_DIR has ${avail_gb} GiB free; this run needs about ${need_gb} GiB"

# One binary for the whole run, even if someone rebuilds build/ meanwhile.
HF=$WORK/bin/holdfast
cp "$HOLDFAST" "$HF"
HF_VERSION=$("$HF" --version 2>&1 | head -n1) || die "$HF --version failed"

RESULTS=$WORK/results.tsv
META=$WORK/meta.env
printf 'run\ttool\top\twall_s\tuser_s\tsys_s\tmaxrss_kb\tvault_bytes\tload1\n' >"$RESULTS"
: >"$META"
meta() { printf '%s=%s\n' "$1" "$2" >>"$META"; }
jget() { $PY -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }

PW=$WORK/password
echo "holdfast-bench password 2f1c" >"$PW"

drop_caches() {
        sync
        echo 3 >/proc/sys/vm/drop_caches
}

# ---------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------
# build_a NAME BUDGET: $DATA/NAME holds /usr/lib then /usr/share, sorted walk, to BUDGET bytes.
build_a() {
        local name=$1 budget=$2 dir=$DATA/$1
        local params="v2 roots=/usr/lib,/usr/share budget=$budget max_file=$A_MAX_FILE (linked files kept)"
        if [[ -f $dir.done && $(cat "$dir.params" 2>/dev/null) == "$params" ]]; then
                return
        fi
        say "building dataset $name: /usr/lib + /usr/share, sorted walk, files <= $A_MAX_FILE bytes or hard-linked, up to $budget bytes (once; kept in $dir)"
        rm -rf "$dir" "$dir.tmp" "$dir".done "$dir".manifest "$dir".stats.json "$dir".zsample
        $PY "$HERE/mkdata.py" a "$dir.tmp" "$budget" "$A_MAX_FILE" /usr/lib /usr/share >"$dir.copy.json" ||
                die "building dataset $name failed"
        mv "$dir.tmp" "$dir"
        $PY "$HERE/manifest.py" make "$dir" "$dir.manifest" >"$dir.stats.json"
        printf '%s\n' "$params" >"$dir.params"
        touch "$dir.done"
}

# build_b: four B_SIZE files, two random (AES-256-CTR keystream, fixed keys), two text built from
# dataset A (first B_SIZE bytes forward, first B_SIZE bytes backward: no shared content).
build_b() {
        local dir=$DATA/B
        local params
        params="v1 size=$B_SIZE from=A: $(cat "$DATA/A.params")"
        if [[ -f $dir.done && $(cat "$dir.params" 2>/dev/null) == "$params" ]]; then
                return
        fi
        say "building dataset B: 2 random + 2 compressible files of $B_SIZE bytes (once; kept in $dir)"
        rm -rf "$dir" "$dir.tmp" "$dir".done "$dir".manifest "$dir".stats.json "$dir".zsample
        mkdir -p "$dir.tmp"
        local i
        for i in 1 2; do
                head -c "$B_SIZE" /dev/zero |
                        openssl enc -aes-256-ctr -nosalt -K "$(printf '%064x' "$i")" -iv "$(printf '%032x' 0)" \
                                >"$dir.tmp/random$i"
        done
        $PY "$HERE/mkdata.py" text "$dir.tmp/text1" "$B_SIZE" "$DATA/A" forward text1
        $PY "$HERE/mkdata.py" text "$dir.tmp/text2" "$B_SIZE" "$DATA/A" reverse text2
        touch -d @1700000000 "$dir.tmp"/*
        mv "$dir.tmp" "$dir"
        $PY "$HERE/manifest.py" make "$dir" "$dir.manifest" >"$dir.stats.json"
        printf '%s\n' "$params" >"$dir.params"
        touch "$dir.done"
}

if ((QUICK)); then
        A_NAME=Aq
        build_a Aq "$A_QUICK_BUDGET"
        DATASETS=(A)
else
        A_NAME=A
        build_a A "$A_BUDGET"
        build_b
        DATASETS=(A B)
fi
SRC_A=$DATA/$A_NAME
SRC_B=$DATA/B
declare -A SRC=([A]=$SRC_A [B]=$SRC_B)
declare -A MANIFEST=([A]=$DATA/$A_NAME.manifest [B]=$DATA/B.manifest)
declare -A STATS=([A]=$DATA/$A_NAME.stats.json [B]=$DATA/B.stats.json)

for ds in "${DATASETS[@]}"; do
        st=${STATS[$ds]}
        meta "ds_${ds}_bytes" "$(jget "$st" bytes_unique)"
        meta "ds_${ds}_files" "$(jget "$st" files)"
        meta "ds_${ds}_hardlinked" "$(jget "$st" hardlinked_names)"
        meta "ds_${ds}_symlinks" "$(jget "$st" symlinks)"
        meta "ds_${ds}_dirs" "$(jget "$st" dirs)"
        say "dataset $ds (${SRC[$ds]}): $(jget "$st" bytes_unique) bytes ($(du -sh "${SRC[$ds]}" | cut -f1) on disk) in $(jget "$st" files) files, $(jget "$st" hardlinked_names) of them hard-linked names, $(jget "$st" symlinks) symlinks, $(jget "$st" dirs) folders"
done
meta ds_A_desc "/usr/lib + /usr/share, sorted walk, files <= $A_MAX_FILE B or hard-linked, budget $([[ $QUICK == 1 ]] && echo "$A_QUICK_BUDGET" || echo "$A_BUDGET") B"
meta ds_B_desc "2 × $B_SIZE B random (AES-CTR keystream) + 2 × $B_SIZE B text from dataset A"

# ---------------------------------------------------------------------------------------------
# Primitive bounds
# ---------------------------------------------------------------------------------------------
PRIM_SECONDS=$((QUICK ? 1 : 3))
ZSTD_ITER=$((QUICK ? 1 : 3))
# The level holdfast's `--compression auto` uses (src/repo/codec.c): the bound is the work it does.
ZSTD_LEVEL=2
[[ -f $DATA/$A_NAME.zsample ]] ||
        $PY "$HERE/mkdata.py" sample "$DATA/$A_NAME.zsample" $((QUICK ? 33554432 : 134217728)) "$SRC_A"
if ((!QUICK)); then
        [[ -f $DATA/B.zsample ]] ||
                $PY "$HERE/mkdata.py" sample "$DATA/B.zsample" 67108864 "$SRC_B"/random1 "$SRC_B"/random2 "$SRC_B"/text1 "$SRC_B"/text2
fi

openssl_mbps() { # ALGO NAME_IN_OUTPUT
        openssl speed -evp "$1" -bytes 16384 -seconds "$PRIM_SECONDS" 2>/dev/null |
                awk -v n="$2" '$1 == n {v = $2; sub("k", "", v); printf "%.0f\n", v / 1000}'
}
zstd_bench() { # FILE -> "ratio comp_MBps decomp_MBps"
        zstd -b"$ZSTD_LEVEL" -i"$ZSTD_ITER" -B1048576 "$1" 2>&1 | tr '\r' '\n' |
                grep -E 'MB/s, +[0-9.]+ MB/s' | tail -n1 |
                sed -E 's/.*\(x([0-9.]+)\), +([0-9.]+) MB\/s, +([0-9.]+) MB\/s.*/\1 \2 \3/'
}
# fresh_ext4 IMG MNT: a new sparse ext4 image of LOOP_SIZE, loop-mounted on MNT (restores write
# into one each, and so does the page-cache primitive); gone_ext4 IMG MNT takes it away again.
fresh_ext4() {
        rm -f "$1"
        truncate -s "$LOOP_SIZE" "$1"
        mkfs.ext4 -q -F "$1"
        mkdir -p "$2"
        # noinit_itable: no lazy inode-table zeroing in the background while we measure.
        mount -o loop,noinit_itable "$1" "$2"
}
gone_ext4() {
        umount "$2"
        rmdir "$2"
        rm -f "$1"
}
# Writing new page-cache pages, as a restore does: dd from /dev/zero into a new file on a fresh
# loop-mounted ext4, right after a drop of the caches (restores run the same way). Both tools
# pay it per restored byte; on VMs that hand freed memory back to the host it is slow.
pagecache_mbps() {
        local img=$BENCH_DIR/fs-pcw.img mnt=$BENCH_DIR/mnt-pcw out
        fresh_ext4 "$img" "$mnt"
        drop_caches
        out=$(LC_ALL=C dd if=/dev/zero of="$mnt/pcw" bs=1M count=$((QUICK ? 256 : 1024)) 2>&1)
        gone_ext4 "$img" "$mnt"
        $PY "$HERE/report.py" dd-mbps <<<"$out" || true
}
declare -A PRIM
PRIM_LOG=()
max_of() { awk -v a="$1" -v b="$2" 'BEGIN {print (a + 0 > b + 0) ? a : b}'; }
measure_primitives() {
        local v r c d ds
        local sv av pv
        declare -A ZC ZD
        sv=$(openssl_mbps sha256 sha256)
        [[ $sv ]] || die "could not parse 'openssl speed -evp sha256'"
        if ((sv > ${PRIM[sha]:-0})); then PRIM[sha]=$sv; fi
        av=$(openssl_mbps aes-256-ctr AES-256-CTR)
        [[ $av ]] || die "could not parse 'openssl speed -evp aes-256-ctr'"
        if ((av > ${PRIM[aes]:-0})); then PRIM[aes]=$av; fi
        pv=$(pagecache_mbps)
        [[ $pv ]] || die "could not parse dd's speed writing into a fresh ext4"
        if ((pv > ${PRIM[pcw]:-0})); then PRIM[pcw]=$pv; fi
        for ds in "${DATASETS[@]}"; do
                local sample=$DATA/$A_NAME.zsample
                if [[ $ds == B ]]; then sample=$DATA/B.zsample; fi
                r="" c="" d=""
                read -r r c d < <(zstd_bench "$sample") || true
                [[ $d ]] || die "could not parse 'zstd -b$ZSTD_LEVEL' on $sample"
                PRIM[ratio_$ds]=$r
                ZC[$ds]=$c
                ZD[$ds]=$d
                PRIM[zc_$ds]=$(max_of "$c" "${PRIM[zc_$ds]:-0}")
                PRIM[zd_$ds]=$(max_of "$d" "${PRIM[zd_$ds]:-0}")
        done
        PRIM_LOG+=("$(date +%H:%M:%S): sha256 $sv, aes $av, page-cache write $pv$(for ds in "${DATASETS[@]}"; do printf ', zstd -%s %s %s/%s' "$ZSTD_LEVEL" "$ds" "${ZC[$ds]}" "${ZD[$ds]}"; done)")
        say "primitives, one core: sha256 ${PRIM[sha]} MB/s, aes-256-ctr ${PRIM[aes]} MB/s, page-cache write ${PRIM[pcw]} MB/s$(for ds in "${DATASETS[@]}"; do printf ', zstd -%s on %s: x%s, %s MB/s compress, %s MB/s decompress' "$ZSTD_LEVEL" "$ds" "${PRIM[ratio_$ds]}" "${PRIM[zc_$ds]}" "${PRIM[zd_$ds]}"; done) (best so far)"
}

# ---------------------------------------------------------------------------------------------
# Machine and versions
# ---------------------------------------------------------------------------------------------
DATE_ISO=$(date -u +%Y-%m-%dT%H:%M:%SZ)
DATE_FILE=$(date -u +%Y%m%d-%H%M%S)
meta date "$DATE_ISO"
meta quick "$QUICK"
meta cores "$(nproc)"
meta cpu "$(lscpu | sed -n 's/^Model name: *//p' | head -n1)"
meta mem "$(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
meta kernel "$(uname -r)"
meta load_before "$(cut -d' ' -f1-3 /proc/loadavg)"
meta holdfast_version "$HF_VERSION"
meta holdfast_sha "$(sha256sum "$HF" | cut -c1-12)"
meta holdfast_src "$HOLDFAST"
meta restic_version "$("$RESTIC" version | head -n1)"
meta openssl_version "$(openssl version)"
meta zstd_version "$(zstd --version | grep -oE 'v[0-9.]+' | head -n1)"
meta bench_fs "$(findmnt -n -o FSTYPE -T "$BENCH_DIR") ($(findmnt -n -o SOURCE -T "$BENCH_DIR"))"

# Free page reporting: a guest kernel that hands memory it freed back to the hypervisor, which
# then has to fault it in again on its next use (docs/PERFORMANCE.md, "Fresh pages").
PR_DIR=/sys/module/page_reporting/parameters
free_page_reporting() {
        local d feat
        for d in /sys/bus/virtio/devices/*; do
                [[ -r $d/device && $(cat "$d/device") == 0x0005 ]] || continue
                feat=$(cat "$d/features" 2>/dev/null || true)
                # Feature bit 5 (VIRTIO_BALLOON_F_REPORTING), bits written first to last.
                if [[ ${feat:5:1} == 1 ]]; then
                        echo "on (virtio-balloon, page_reporting_order $(cat "$PR_DIR/page_reporting_order" 2>/dev/null || echo '?'))"
                        return
                fi
        done
        echo "off (no virtio-balloon device with it)"
}
reported_kib() { cat "$PR_DIR/reported_kib" 2>/dev/null || true; }
meta free_page_reporting "$(free_page_reporting)"
meta reported_kib_before "$(reported_kib)"

load1=$(cut -d' ' -f1 /proc/loadavg)
if $PY -c "import sys; sys.exit(0 if float('$load1') > 0.5 else 1)"; then
        say "note: load average is $load1 before the run: other work on this machine will add noise (only ratios from one run mean anything)"
fi

say "measuring primitive bounds (openssl speed, zstd -b$ZSTD_LEVEL, dd into a fresh ext4)"
measure_primitives

# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------
vault_of() { echo "$WORK/vault-$1-$2"; } # TOOL DS
# tool_argv TOOL VAULT: the command prefix (in TOOLCMD) that opens VAULT.
tool_argv() {
        case $1 in
        holdfast) TOOLCMD=("$HF" -r "$2" --password-file "$PW") ;;
        restic) TOOLCMD=("$RESTIC" -r "$2" --password-file "$PW" --cache-dir "$2.cache") ;;
        esac
}
new_vault() { # TOOL DS
        local v
        v=$(vault_of "$1" "$2")
        rm -rf "$v" "$v.cache" "$v.rcache"
        tool_argv "$1" "$v"
        case $1 in
        holdfast) "${TOOLCMD[@]}" init --kdf-params 16384,8,1 >"$WORK/logs/init-$1-$2.log" 2>&1 ;;
        # restic's own init (its config), then its key replaced by one with the KDF
        # parameters holdfast's vaults get: every command of both tools opens the vault with
        # the same scrypt work (restic 0.14 has no option for them; its calibrated default
        # costs it ~0.5 s per command, which the ratios would otherwise count).
        restic) "${TOOLCMD[@]}" init >"$WORK/logs/init-$1-$2.log" 2>&1 &&
                "$HF" -r "$v" --password-file "$PW" key passwd --new-password-file "$PW" \
                        --kdf-params 16384,8,1 >>"$WORK/logs/init-$1-$2.log" 2>&1 ;;
        esac || die "$1 init of $v failed: $(tail -n 5 "$WORK/logs/init-$1-$2.log")"
}

LAST_LOG=""
# measure RUN TOOL OP VAULT_TO_SIZE|- CMD...: time CMD, append one line to $RESULTS.
measure() {
        local run=$1 tool=$2 op=$3 vsize=$4
        shift 4
        local tf=$WORK/time.out log=$WORK/logs/run$run-$tool-$op.log
        LAST_LOG=$log
        say "run $run/$RUNS: $tool: $op"
        local rc=0 load1
        load1=$(cut -d' ' -f1 /proc/loadavg)
        # Writeback left by setup (mkfs, deleted vaults and images) must not land in the timing.
        sync
        /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" >"$log" 2>&1 || rc=$?
        if ((rc != 0)); then
                printf '\n---- last lines of %s ----\n' "$log" >&2
                tail -n 25 "$log" >&2
                cat "$tf" >&2
                die "$tool failed (exit $rc) in '$op', run $run: $*"
        fi
        local wall user sys rss vb=-
        read -r wall user sys rss < <(tail -n1 "$tf")
        if [[ $vsize != - ]]; then vb=$(du -sb "$vsize" | cut -f1); fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$tool" "$op" "$wall" "$user" "$sys" "$rss" "$vb" "$load1" >>"$RESULTS"
        say "    wall ${wall}s, cpu $(awk -v u="$user" -v s="$sys" 'BEGIN {print u + s}')s, peak RSS $((rss / 1024)) MiB$([[ $vb != - ]] && echo ", vault $((vb / 1000000)) MB")"
}

# snapshot_of LOG: the snapshot ID in a backup's --json summary line.
snapshot_of() {
        $PY - "$1" <<'EOF'
import json, sys
sid = None
for line in open(sys.argv[1], errors="replace"):
    try:
        j = json.loads(line)
    except ValueError:
        continue
    if isinstance(j, dict) and j.get("message_type") == "summary":
        sid = j.get("snapshot_id")
if not sid:
    sys.exit("no snapshot_id in " + sys.argv[1])
print(sid)
EOF
}

declare -A SNAP # [tool,ds,n]

# backup RUN TOOL DS OP PARENT|-: back up SRC[DS] into the tool's vault for DS.
backup() {
        local run=$1 tool=$2 ds=$3 op=$4 parent=$5 v
        v=$(vault_of "$tool" "$ds")
        tool_argv "$tool" "$v"
        local args=(backup --json)
        if [[ $parent != - ]]; then args+=(--parent "$parent"); fi
        measure "$run" "$tool" "$op" "$v" "${TOOLCMD[@]}" "${args[@]}" "${SRC[$ds]}"
        snapshot_of "$LAST_LOG"
}

fail_or_note() {
        FAILURES+=("$1")
        printf '\n######## FAILURE: %s ########\n\n' "$1" >&2
        ((KEEP_GOING)) || die "$1 (rerun with --keep-going to continue past this)"
}

FSN=0
# restore RUN TOOL DS OP SNAPSHOT cold|warm: restore into a fresh ext4 and compare with the source.
restore() {
        local run=$1 tool=$2 ds=$3 op=$4 snap=$5 temp=$6 v
        v=$(vault_of "$tool" "$ds")
        tool_argv "$tool" "$v"
        FSN=$((FSN + 1))
        local img=$BENCH_DIR/fs-$FSN.img mnt=$BENCH_DIR/mnt-$FSN
        fresh_ext4 "$img" "$mnt"
        drop_caches
        if [[ $temp == warm ]]; then
                # Warm: the tool's own vault in the page cache, nothing else. Without the drop,
                # restic's packs were cached and holdfast's (dropped once durable) were not, and
                # a restore right after restic's backup wrote into fresh pages, which on these
                # VMs cost seconds of system time (docs/PERFORMANCE.md, "fresh pages").
                find "$v" -type f -exec cat {} + >/dev/null
        fi
        measure "$run" "$tool" "$op" - "${TOOLCMD[@]}" restore "$snap" --target "$mnt/r"
        sync
        local got=$mnt/r${SRC[$ds]}
        if $PY "$HERE/manifest.py" compare "${MANIFEST[$ds]}" "$got" >"$WORK/logs/verify-run$run-$tool-$op.log" 2>&1; then
                say "    restored tree matches the source: $(tail -n1 "$WORK/logs/verify-run$run-$tool-$op.log")"
        else
                cat "$WORK/logs/verify-run$run-$tool-$op.log" >&2
                fail_or_note "$tool $op, run $run: restored tree differs from the source"
        fi
        gone_ext4 "$img" "$mnt"
}

# compat NAME CMD...: a pass/fail compatibility check, recorded in the report.
compat() {
        local name=$1
        shift
        local log=$WORK/logs/compat-$name.log start end
        say "compatibility: $name"
        start=$(date +%s.%N)
        if "$@" >"$log" 2>&1; then
                end=$(date +%s.%N)
                meta "compat_$name" "pass ($(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.1f", b - a}') s)"
                say "    pass"
        else
                local rc=$?
                meta "compat_$name" "**FAIL** (exit $rc; see the log)"
                tail -n 20 "$log" >&2
                FAILURES+=("$name failed (exit $rc)")
                printf '\n######## FAILURE: %s ########\n\n' "$name" >&2
                cp "$log" "$BENCH_DIR/compat-$name-$DATE_FILE.log"
        fi
}

# ---------------------------------------------------------------------------------------------
# The runs
# ---------------------------------------------------------------------------------------------
for ((run = 1; run <= RUNS; run++)); do
        if ((run % 2)); then ORDER=(holdfast restic); else ORDER=(restic holdfast); fi
        say "=== run $run of $RUNS (order: ${ORDER[*]}) ==="

        # backup A, first, cold: a vault thrown away afterwards
        for t in "${ORDER[@]}"; do
                new_vault "$t" A
                drop_caches
                backup "$run" "$t" A a_first_cold - >/dev/null
        done
        # backup A, first, warm: the vault the next operations use
        for t in "${ORDER[@]}"; do
                new_vault "$t" A
                SNAP[$t,A,1]=$(backup "$run" "$t" A a_first_warm -)
        done
        for t in "${ORDER[@]}"; do
                SNAP[$t,A,2]=$(backup "$run" "$t" A a_nochange "${SNAP[$t,A,1]}")
        done
        say "changing 1 % of dataset A's files: $($PY "$HERE/touch1pct.py" apply "$SRC_A" "$TOUCH_STATE")"
        for t in "${ORDER[@]}"; do
                SNAP[$t,A,3]=$(backup "$run" "$t" A a_1pct "${SNAP[$t,A,2]}")
        done
        $PY "$HERE/touch1pct.py" revert "$TOUCH_STATE" >/dev/null
        for t in "${ORDER[@]}"; do
                restore "$run" "$t" A a_restore_cold "${SNAP[$t,A,1]}" cold
        done
        for t in "${ORDER[@]}"; do
                restore "$run" "$t" A a_restore_warm "${SNAP[$t,A,1]}" warm
        done
        for t in "${ORDER[@]}"; do
                v=$(vault_of "$t" A)
                tool_argv "$t" "$v"
                # Warm, as a warm restore: the tool's own vault in the page cache, nothing
                # else. Before, the vault of the tool whose warm restore came first had been
                # dropped by the other's, so the tools took turns checking a cold vault.
                drop_caches
                find "$v" -type f -exec cat {} + >/dev/null
                measure "$run" "$t" a_check - "${TOOLCMD[@]}" check --read-data
        done
        if ((run == 1)); then
                v=$(vault_of holdfast A)
                compat restic_check_read_data_on_holdfast_vault_A \
                        "$RESTIC" -r "$v" --password-file "$PW" --cache-dir "$v.rcache" check --read-data
                v=$(vault_of restic A)
                compat holdfast_check_read_data_on_restic_vault_A \
                        "$HF" -r "$v" --password-file "$PW" check --read-data
        fi

        if ((!QUICK)); then
                cat "$SRC_B"/* >/dev/null # warm
                for t in "${ORDER[@]}"; do
                        new_vault "$t" B
                        SNAP[$t,B,1]=$(backup "$run" "$t" B b_first -)
                done
                for t in "${ORDER[@]}"; do
                        restore "$run" "$t" B b_restore "${SNAP[$t,B,1]}" warm
                done
                if ((run == 1)); then
                        v=$(vault_of holdfast B)
                        compat restic_check_read_data_on_holdfast_vault_B \
                                "$RESTIC" -r "$v" --password-file "$PW" --cache-dir "$v.rcache" check --read-data
                fi
        fi
done

if ((!QUICK)); then
        say "measuring primitive bounds again (the better of the two measurements is used)"
        measure_primitives
fi
meta load_after "$(cut -d' ' -f1-3 /proc/loadavg)"
meta reported_kib_after "$(reported_kib)"
meta prim_sha256_MBps "${PRIM[sha]}"
meta prim_aes_MBps "${PRIM[aes]}"
meta prim_pcw_MBps "${PRIM[pcw]}"
meta prim_zstd_level "$ZSTD_LEVEL"
for ds in "${DATASETS[@]}"; do
        meta "prim_zstd_c_${ds}_MBps" "${PRIM[zc_$ds]}"
        meta "prim_zstd_d_${ds}_MBps" "${PRIM[zd_$ds]}"
        meta "prim_zstd_ratio_${ds}" "x${PRIM[ratio_$ds]}"
done
meta restic_kdf "$($PY -c 'import json,sys,glob; k=json.load(open(sorted(glob.glob(sys.argv[1]+"/keys/*"))[0])); print("scrypt N=%d r=%d p=%d" % (k["N"], k["r"], k["p"]))' "$(vault_of restic A)")"
meta prim_measurements "$(printf '%s; ' "${PRIM_LOG[@]}")"
if ((${#FAILURES[@]})); then
        meta failures_note "**FAILURES in this run:** $(printf '%s; ' "${FAILURES[@]}")"
fi

OUT=$BENCH_DIR/results-$DATE_FILE.md
$PY "$HERE/report.py" "$RESULTS" "$META" >"$OUT"
cp "$RESULTS" "$BENCH_DIR/results-$DATE_FILE.tsv"
cp "$META" "$BENCH_DIR/results-$DATE_FILE.env"
echo
cat "$OUT"
echo
say "report written to $OUT (raw numbers: results-$DATE_FILE.tsv, .env)"
if ((${#FAILURES[@]})); then
        printf '\nvault.sh: FAILED: %s\n' "${FAILURES[@]}" >&2
        exit 1
fi
