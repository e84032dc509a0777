#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# stop-ceph.sh DIR [--rgw-only]: stops the daemons of the cluster start-ceph.sh made in DIR and
# removes DIR. Only processes whose command line names DIR/ceph.conf are signalled, in the order
# that avoids hangs (radosgw, then the OSD, then the manager and the monitor). With --rgw-only,
# stops radosgw alone and keeps everything else (DIR/rgw-start brings it back).
# CEPH_STOP_SIGNAL=KILL skips the clean shutdown (0.15 s instead of about 1 s).
set -uo pipefail

DIR=${1:?usage: stop-ceph.sh DIR [--rgw-only]}
RGW_ONLY=0
[[ ${2:-} == --rgw-only ]] && RGW_ONLY=1
SIG=${CEPH_STOP_SIGNAL:-TERM}
DIR=$(cd "$DIR" 2>/dev/null && pwd) || { echo "stop-ceph: no folder $1" >&2; exit 0; }
CONF=$DIR/ceph.conf
if [[ ! -f $CONF || $(basename "$DIR") != holdfast-ceph.* ]]; then
        echo "stop-ceph: $DIR is not a cluster of start-ceph.sh; not touching it" >&2
        exit 1
fi

alive() { # PID: running and not a zombie (a zombie still answers kill -0)
        local st
        st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
        [[ -n $st && $st != Z ]]
}

# PIDs of this cluster's daemons of one kind (ceph-mon, ceph-osd, ...), found by command line
# (read with bash builtins: no process per entry of /proc, so it takes milliseconds).
pids_of() {
        local exe=$1 p args
        for p in /proc/[0-9]*; do
                mapfile -d '' args 2>/dev/null <"$p/cmdline" || continue
                ((${#args[@]} >= 3)) || continue
                [[ ${args[0]##*/} == "$exe" && " ${args[*]} " == *" $CONF "* ]] || continue
                echo "${p#/proc/}"
        done
}

stop_kind() {
        local exe=$1 pids p deadline
        pids=$(pids_of "$exe")
        [[ -z $pids ]] && return 0
        for p in $pids; do kill "-$SIG" "$p" 2>/dev/null; done
        deadline=$((${EPOCHREALTIME/./} + 10000000))
        for p in $pids; do
                while alive "$p"; do
                        if ((${EPOCHREALTIME/./} > deadline)); then
                                echo "stop-ceph: $exe ($p) ignored SIG$SIG for 10 s; killing it" >&2
                                kill -KILL "$p" 2>/dev/null
                                sleep 0.1
                                break
                        fi
                        sleep 0.05
                done
        done
}

stop_kind radosgw
((RGW_ONLY)) && exit 0
stop_kind ceph-osd
stop_kind ceph-mgr
stop_kind ceph-mon
rm -rf --one-file-system "$DIR"
exit 0
