#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The sentinel's overhead and memory (issue 5 targets), in one run, as root:
#   1. the benign build workload (untar a generated C project, make -j2, make clean, make -j2)
#      on an XFS loop mount, RUNS times without and RUNS times with the sentinel, interleaved;
#      prints the medians and the overhead (target <= 5 %);
#   2. an event storm (STORM_PROCS processes creating, writing and deleting small files for
#      STORM_SECS seconds) against the sentinel: events per second it processed and its peak
#      RSS (target <= 150 MiB at 100k events/s).
#
#   bench/sentinel.sh                 HOLDFAST=build/src/cli/holdfast RUNS=5 FS=xfs
set -euo pipefail
cd "$(dirname "$0")/.."
HOLDFAST=${HOLDFAST:-build/src/cli/holdfast}
RUNS=${RUNS:-7}
FS=${FS:-xfs}
STORM_SECS=${STORM_SECS:-10}
STORM_PROCS=${STORM_PROCS:-4}
[[ $EUID -eq 0 ]] || { echo "bench/sentinel.sh: needs root" >&2; exit 2; }
HOLDFAST=$(realpath "$HOLDFAST")

work=$(mktemp -d /tmp/holdfast-bench-sentinel.XXXXXX)
spid=
cleanup() {
        [[ -n $spid ]] && kill "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
        umount "$work/mnt" 2>/dev/null || true
        rm -rf "$work"
}
trap cleanup EXIT
truncate -s 2G "$work/fs.img"
case $FS in
xfs) mkfs.xfs -q -f "$work/fs.img" ;;
ext4) mkfs.ext4 -q -F "$work/fs.img" ;;
btrfs) mkfs.btrfs -q -f "$work/fs.img" ;;
esac
mkdir -p "$work/mnt"
mount -o loop "$work/fs.img" "$work/mnt"
tree=$work/mnt/tree
mkdir -p "$tree"
tree=$(realpath "$tree")
echo "$tree" >"$tree/.holdfast-scratch"
python3 tests/sentinel/benign.py prepare build "$tree"
cat >"$work/sentinel.conf" <<CONF
[sentinel]
action = kill
raw-disk-guard = no
[protect]
path = $tree
[alerts]
syslog = no
CONF

start_sentinel() {
        "$HOLDFAST" sentinel --config "$work/sentinel.conf" --state "$work/state" >"$work/sentinel.log" 2>&1 &
        spid=$!
        for _ in $(seq 200); do
                grep -q ready "$work/sentinel.log" && return 0
                sleep 0.05
        done
        cat "$work/sentinel.log" >&2
        return 1
}
stop_sentinel() {
        kill "$spid"
        wait "$spid" || true
        spid=
}
# One build; prints "WALL CPU" (CPU: user+sys of the build's processes, which other load on
# the machine disturbs much less than wall time).
one_build() {
        rm -rf "$tree/build-work"
        sync
        python3 - "$tree" <<'PY'
import resource, subprocess, sys, time
t = time.time()
subprocess.run([sys.executable, "tests/sentinel/benign.py", "build", sys.argv[1]], check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{time.time() - t:.3f} {r.ru_utime + r.ru_stime:.3f}")
PY
}
sentinel_cpu() {
        awk '{print ($14 + $15) / 100}' "/proc/$spid/stat"
}

without=() with=() cwithout=() cwith=() scpu=()
for i in $(seq "$RUNS"); do
        read -r w c < <(one_build)
        without+=("$w") cwithout+=("$c")
        start_sentinel
        read -r w c < <(one_build)
        with+=("$w") cwith+=("$c") scpu+=("$(sentinel_cpu)")
        stop_sentinel
        echo "run $i: without ${without[-1]} s (cpu ${cwithout[-1]} s), with ${with[-1]} s" \
                "(cpu ${cwith[-1]} s; sentinel cpu ${scpu[-1]} s)" >&2
done
head -1 "$work/sentinel.log"
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mw=$(median "${without[@]}")
ms=$(median "${with[@]}")
cw=$(median "${cwithout[@]}")
cs=$(median "${cwith[@]}")
sc=$(median "${scpu[@]}")
printf 'build workload (%s, %d runs, medians): wall without %.2f s, with %.2f s: overhead %.1f %%\n' \
        "$FS" "$RUNS" "$mw" "$ms" "$(echo "($ms - $mw) * 100 / $mw" | bc -l)"
printf '  cpu of the build without %.2f s, with %.2f s (%.1f %%); the sentinel used %.2f s cpu (%.1f %% of the build cpu)\n' \
        "$cw" "$cs" "$(echo "($cs - $cw) * 100 / $cw" | bc -l)" "$sc" "$(echo "$sc * 100 / $cw" | bc -l)"

# The storm.
rm -rf "$tree/build-work"
mkdir -p "$tree/storm"
start_sentinel
rss_peak=0
cat >"$work/storm.c" <<'C'
/* Storm: each process creates, writes, rewrites, renames and deletes small files. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv)
{
        int procs = atoi(argv[3]);
        double secs = atof(argv[2]);
        for (int k = 0; k < procs; k++) {
                if (fork() == 0) {
                        char d[4096], p[4200], q[4200];
                        snprintf(d, sizeof(d), "%s/%d", argv[1], k);
                        mkdir(d, 0755);
                        time_t end = time(NULL) + (time_t)secs;
                        long n = 0;
                        while (time(NULL) < end) {
                                for (int i = 0; i < 1000; i++) {
                                        snprintf(p, sizeof(p), "%s/f%d", d, i);
                                        int fd = open(p, O_CREAT | O_WRONLY, 0644);
                                        if (write(fd, "xxxxxxxxxxxxxxxx", 16) < 0) return 1;
                                        close(fd);
                                }
                                for (int i = 0; i < 1000; i++) {
                                        snprintf(p, sizeof(p), "%s/f%d", d, i);
                                        snprintf(q, sizeof(q), "%s/g%d", d, i);
                                        rename(p, q);
                                        unlink(q);
                                }
                                n += 1000;
                        }
                        fprintf(stderr, "storm worker %d: %ld files\n", k, n);
                        _exit(0);
                }
        }
        while (wait(NULL) > 0)
                ;
        return 0;
}
C
cc -O2 -o "$work/storm" "$work/storm.c"
"$work/storm" "$tree/storm" "$STORM_SECS" "$STORM_PROCS" &
storm=$!
t0=$EPOCHREALTIME
while kill -0 "$storm" 2>/dev/null; do
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$spid/status")
        ((rss > rss_peak)) && rss_peak=$rss
        sleep 0.1
done
wait "$storm"
secs=$(echo "$EPOCHREALTIME - $t0" | bc)
stop_sentinel
stats=$(grep "stopping" "$work/sentinel.log")
events=$(sed -n 's/.*stopping: \([0-9]*\) events.*/\1/p' <<<"$stats")
perm=$(sed -n 's/.*guard: \([0-9]*\) permission events.*/\1/p' <<<"$stats")
printf 'storm (%d procs, %.1f s): %d notification events (%.0f/s) + %d permission events (%.0f/s), sentinel peak RSS %.1f MiB\n' \
        "$STORM_PROCS" "$secs" "$events" "$(echo "$events / $secs" | bc -l)" "$perm" \
        "$(echo "$perm / $secs" | bc -l)" "$(echo "$rss_peak / 1024" | bc -l)"
grep -E "overflow" "$work/sentinel.log" | head -3 || true
