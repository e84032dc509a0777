#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# bench/serve.sh: N concurrent clients (default 16) back up to one server through loopback,
# then restore from it, against `holdfast serve` and `rclone serve restic` in the same run,
# with the same data and the same client program. Prints a table and one JSON line per server.
#
#   bench/serve.sh [CLIENTS [MIB_PER_CLIENT]]        defaults: 16 clients, 32 MiB each
#   CLIENT=restic bench/serve.sh                      restic 0.14 as the client instead
#   HOLDFAST=path/to/holdfast  STORE=/var/tmp         binary; where the servers store (disk)
#
# Every client has its own vault (/hostNN) and its own random (incompressible) files in tmpfs,
# so the numbers measure the server, the loopback and the clients' crypto, not source reads.
# Server storage is on disk (STORE) with each server's own durability: holdfast serve fsyncs
# every object, its folder and its receipt log before it answers; rclone's local backend
# does not fsync. Both run with their defaults otherwise (holdfast: --no-auth for parity).
set -euo pipefail

clients=${1:-16}
mib=${2:-32}
client=${CLIENT:-holdfast}
here=$(cd "$(dirname "$0")/.." && pwd)
hf=${HOLDFAST:-$here/build/src/cli/holdfast}
store=${STORE:-/var/tmp}
[[ -x "$hf" ]] || { echo "serve.sh: $hf not built (make)" >&2; exit 1; }
command -v rclone >/dev/null || { echo "serve.sh: rclone missing (scripts/bootstrap)" >&2; exit 1; }

work=$(mktemp -d -p "$store" holdfast-bench-serve.XXXXXX)
data=$(mktemp -d -p /dev/shm holdfast-bench-data.XXXXXX)
pids=()
cleanup() {
        for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
        wait 2>/dev/null || true
        rm -rf "$work" "$data"
}
trap cleanup EXIT

echo "serve.sh: $clients clients x $mib MiB ($client client), data in $data, servers store in $work"
python3 - "$data" "$clients" "$mib" <<'EOF'
import os, random, sys
root, n, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    d = os.path.join(root, f"host{i:02d}")
    os.makedirs(d)
    rng = random.Random(i)
    left = mib << 20
    k = 0
    while left:
        size = min(left, 4 << 20)
        with open(os.path.join(d, f"file{k:03d}"), "wb") as f:
            f.write(rng.randbytes(size))
        left -= size
        k += 1
EOF

export HOLDFAST_PASSWORD=bench RESTIC_PASSWORD=bench
now() { date +%s.%N; }

# run_clients URL_BASE PHASE: every client at once; prints seconds; fails on any client error.
run_clients() {
        local base=$1 phase=$2 t0 t1 fails=0 i repo
        local -a ps=()
        t0=$(now)
        for ((i = 0; i < clients; i++)); do
                repo="rest:$base/host$(printf %02d "$i")"
                if [[ $client == restic ]]; then
                        case $phase in
                        init) cmd=(restic --no-cache -q -r "$repo" init) ;;
                        backup) cmd=(restic --no-cache -q -r "$repo" backup "$data/host$(printf %02d "$i")") ;;
                        restore) cmd=(restic --no-cache -q -r "$repo" restore latest --target "$work/restore-$phase-$i") ;;
                        esac
                else
                        case $phase in
                        init) cmd=("$hf" -q -r "$repo" init --kdf-params 16384,8,1) ;;
                        backup) cmd=("$hf" -q -r "$repo" backup "$data/host$(printf %02d "$i")") ;;
                        restore) cmd=("$hf" -q -r "$repo" restore latest --target "$work/restore-$phase-$i") ;;
                        esac
                fi
                "${cmd[@]}" >"$work/client-$i.log" 2>&1 &
                ps+=($!)
        done
        for ((i = 0; i < clients; i++)); do
                if ! wait "${ps[$i]}"; then
                        fails=$((fails + 1))
                        echo "serve.sh: client $i failed ($phase):" >&2
                        tail -5 "$work/client-$i.log" >&2
                fi
        done
        t1=$(now)
        rm -rf "$work"/restore-*
        ((fails == 0)) || return 1
        echo "$t1 - $t0" | bc -l
}

bench_one() { # NAME URL_BASE
        local name=$1 base=$2 tb tr total
        run_clients "$base" init >/dev/null
        tb=$(run_clients "$base" backup)
        tr=$(run_clients "$base" restore)
        total=$((clients * mib))
        printf '%-22s backup %7.2f s %8.1f MiB/s   restore %7.2f s %8.1f MiB/s   errors 0\n' \
                "$name" "$tb" "$(echo "$total / $tb" | bc -l)" "$tr" "$(echo "$total / $tr" | bc -l)"
        printf '{"server":"%s","client":"%s","clients":%d,"mib_per_client":%d,"backup_s":%.3f,"backup_mib_s":%.1f,"restore_s":%.3f,"restore_mib_s":%.1f,"errors":0}\n' \
                "$name" "$client" "$clients" "$mib" "$tb" "$(echo "$total / $tb" | bc -l)" "$tr" \
                "$(echo "$total / $tr" | bc -l)" >>"$work/results.jsonl"
}

# holdfast serve
mkdir -p "$work/hf-root"
"$hf" serve --root "$work/hf-root" --listen 127.0.0.1:0 --no-auth --json -q \
        >"$work/hf.out" 2>"$work/hf.err" &
pids+=($!)
for _ in $(seq 100); do [[ -s "$work/hf.out" ]] && break; sleep 0.05; done
hf_addr=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["address"])' "$work/hf.out")
bench_one "holdfast serve" "http://$hf_addr"
if ! "$hf" serve --verify --root "$work/hf-root" >"$work/verify.out" 2>&1; then
        echo "serve.sh: holdfast serve --verify found problems:" >&2
        cat "$work/verify.out" >&2
        exit 1
fi
kill "${pids[0]}"
wait "${pids[0]}" 2>/dev/null || true
rm -rf "$work/hf-root"

# rclone serve restic
mkdir -p "$work/rc-root"
RCLONE_CONFIG=$work/rclone.conf rclone serve restic --addr 127.0.0.1:0 "$work/rc-root" \
        >"$work/rc.log" 2>&1 &
pids+=($!)
rc_addr=
for _ in $(seq 200); do
        rc_addr=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$work/rc.log" | head -1 || true)
        [[ -n "$rc_addr" ]] && break
        sleep 0.05
done
[[ -n "$rc_addr" ]] || { echo "serve.sh: rclone did not start" >&2; cat "$work/rc.log" >&2; exit 1; }
bench_one "rclone serve restic" "$rc_addr"

echo
cat "$work/results.jsonl"
