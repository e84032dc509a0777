#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench/s3.sh: backup throughput into one Ceph RGW over loopback, in the same run: holdfast,
# restic 0.14, and a plain parallel PUT loop (curl, one object per file, several at once) that
# shows what RGW accepts from a client doing nothing but uploading. The tools alternate; every
# number is the median of the runs. See docs/internals/s3.md.
set -euo pipefail

usage() {
        cat <<'EOF'
usage: bench/s3.sh [--size MIB] [--runs N] [--parallel P] [--check]

  --size MIB     data set: MIB MiB of random (incompressible) data in 16 MiB files (default 1024)
  --runs N       runs per tool (default 3)
  --parallel P   uploads at once in the PUT loop (default 4; 2..8 measured, 4 was best here)
  --check        after the last run, `restic check --read-data` on holdfast's vault

environment (defaults):
  BENCH_DIR=/dev/shm/holdfast-s3-bench   data set (kept) and results-<date>.md
  HOLDFAST=<repo>/build/src/cli/holdfast RESTIC=restic
  S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: use that RGW; otherwise a throw-away
  Ceph is started with tests/ceph/start-ceph.sh and removed at the end
EOF
}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
PY=/usr/bin/python3
SIZE=1024
RUNS=3
PAR=4
CHECK=0
while (($#)); do
        case $1 in
        --size) SIZE=${2:?}; shift ;;
        --runs) RUNS=${2:?}; shift ;;
        --parallel) PAR=${2:?}; shift ;;
        --check) CHECK=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "s3.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
        esac
        shift
done

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 's3.sh: ERROR: %s\n' "$*" >&2; exit 1; }

BENCH_DIR=${BENCH_DIR:-/dev/shm/holdfast-s3-bench}
HOLDFAST=${HOLDFAST:-$ROOT/build/src/cli/holdfast}
RESTIC=${RESTIC:-restic}
[[ -x $HOLDFAST ]] || die "holdfast not found at $HOLDFAST (make, or set HOLDFAST)"
command -v "$RESTIC" >/dev/null || die "restic not found"
command -v curl >/dev/null || die "curl not found"

CEPH_DIR=""
cleanup() {
        [[ -n $CEPH_DIR ]] && CEPH_STOP_SIGNAL=KILL "$ROOT/tests/ceph/stop-ceph.sh" "$CEPH_DIR" >&2
        rm -rf "$BENCH_DIR/work"
}
trap cleanup EXIT
if [[ -z ${S3_ENDPOINT:-} ]]; then
        say "starting a throw-away Ceph"
        env_lines=$(CEPH_OSD_GIB=${CEPH_OSD_GIB:-30} "$ROOT/tests/ceph/start-ceph.sh")
        while IFS='=' read -r k v; do
                [[ -n $k ]] && export "$k=$v"
        done <<<"$env_lines"
fi
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
: "${AWS_ACCESS_KEY_ID:?}" "${AWS_SECRET_ACCESS_KEY:?}"

# The data set: SIZE MiB of random bytes in 16 MiB files (the last one smaller).
DATA=$BENCH_DIR/data-$SIZE
if [[ ! -f $DATA/.complete ]]; then
        say "making $SIZE MiB of random data in $DATA"
        rm -rf "$DATA"
        mkdir -p "$DATA"
        left=$SIZE i=0
        while ((left > 0)); do
                n=$((left < 16 ? left : 16))
                head -c $((n << 20)) /dev/urandom >"$DATA/$(printf 'f%04d' $i)"
                left=$((left - n)) i=$((i + 1))
        done
        touch "$DATA/.complete"
fi
BYTES=$(du -sb --exclude=.complete "$DATA" | cut -f1)
mkdir -p "$BENCH_DIR/work"
export HOLDFAST_PASSWORD=bench RESTIC_PASSWORD=bench

s3py() { # bucket prefix: creates the bucket / empties the prefix
        "$PY" - "$@" <<'PY'
import os, sys
import boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], config=Config(s3={"addressing_style": "path"}))
op, bucket, prefix = sys.argv[1:4]
if op == "mkbucket":
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
else:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
PY
}

now() { date +%s.%N; }
rate() { "$PY" -c "import sys; print(f'{$BYTES / 1048576 / ($2 - $1):.1f}')" "$@"; }

declare -A results
run_put() {
        local run=$1 t0 t1
        s3py mkbucket bench-put ""
        t0=$(now)
        find "$DATA" -type f -name 'f*' -printf '%f\n' | xargs -P "$PAR" -I{} \
                curl -sS -f -o /dev/null --aws-sigv4 "aws:amz:$AWS_DEFAULT_REGION:s3" \
                --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
                -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -T "$DATA/{}" \
                "$S3_ENDPOINT/bench-put/run$run/{}"
        t1=$(now)
        results[put]+="$(rate "$t0" "$t1") "
        s3py empty bench-put "run$run/"
}
run_holdfast() {
        local run=$1 repo="s3:$S3_ENDPOINT/bench-holdfast/run$1" t0 t1
        "$HOLDFAST" -q -r "$repo" init --kdf-params 1024,8,1 >/dev/null
        t0=$(now)
        "$HOLDFAST" -q -r "$repo" backup "$DATA" >/dev/null
        t1=$(now)
        results[holdfast]+="$(rate "$t0" "$t1") "
        if ((CHECK && run == RUNS)); then
                say "restic check --read-data on holdfast's vault"
                "$RESTIC" --no-cache -q -r "$repo" check --read-data >&2
        fi
        s3py empty bench-holdfast "run$run/"
}
run_restic() {
        local run=$1 repo="s3:$S3_ENDPOINT/bench-restic/run$1" t0 t1
        "$RESTIC" --no-cache -q -r "$repo" init >/dev/null
        t0=$(now)
        "$RESTIC" --no-cache -q -r "$repo" backup "$DATA" >/dev/null
        t1=$(now)
        results[restic]+="$(rate "$t0" "$t1") "
        s3py empty bench-restic "run$run/"
}

tools=(put holdfast restic)
for ((run = 1; run <= RUNS; run++)); do
        for ((k = 0; k < 3; k++)); do
                t=${tools[$(((run - 1 + k) % 3))]}
                say "run $run/$RUNS: $t"
                "run_$t" "$run"
        done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
mp=$(echo "${results[put]}" | median)
mh=$(echo "${results[holdfast]}" | median)
mr=$(echo "${results[restic]}" | median)
report=$BENCH_DIR/results-$(date +%Y%m%d-%H%M%S).md
{
        echo "## S3 backup throughput ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $((BYTES >> 20)) MiB random data, $RUNS runs)"
        echo
        echo "RGW: $S3_ENDPOINT ($(radosgw --version 2>/dev/null | awk '{print $3}')). holdfast: $("$HOLDFAST" --version 2>/dev/null | head -1). restic: $("$RESTIC" version | awk '{print $2}')."
        echo
        echo "| client | MiB/s (median) | runs | vs PUT loop |"
        echo "|---|---|---|---|"
        echo "| plain PUT loop (curl, $PAR at once, 16 MiB objects) | $mp | ${results[put]}| 100 % |"
        echo "| holdfast backup (default: compression auto, 16 MiB packs) | $mh | ${results[holdfast]}| $("$PY" -c "print(f'{100 * $mh / $mp:.0f} %')") |"
        echo "| restic 0.14 backup (defaults) | $mr | ${results[restic]}| $("$PY" -c "print(f'{100 * $mr / $mp:.0f} %')") |"
        echo
        echo "holdfast / restic: $("$PY" -c "print(f'{$mh / $mr:.2f}x')")"
} | tee "$report"
say "written to $report"
