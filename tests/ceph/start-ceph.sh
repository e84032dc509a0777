#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Starts a throw-away single-node Ceph (mon, mgr, one OSD, radosgw) from Debian's packages under
# a fresh temporary folder, every daemon on 127.0.0.1 only, and creates one S3 user. Prints
# KEY=VALUE lines on stdout once the S3 endpoint answers:
#
#   CEPH_DIR=/tmp/holdfast-ceph.XXXXXX   the cluster (give it to stop-ceph.sh)
#   S3_ENDPOINT=http://127.0.0.1:PORT
#   S3_ENDPOINT_TLS=https://127.0.0.1:PORT2   the same gateway over TLS
#   S3_CACERT=$CEPH_DIR/tls/ca.pem            the throw-away CA that signed its certificate
#   AWS_ACCESS_KEY_ID=...  AWS_SECRET_ACCESS_KEY=...  AWS_DEFAULT_REGION=us-east-1
#
# Progress goes to stderr. On any failure (or SIGINT/SIGTERM during start-up) it prints the tail
# of each daemon's log, stops what it started, removes the folder and exits 1.
# $CEPH_DIR/rgw-start restarts radosgw alone (after stop-ceph.sh --rgw-only), for fault tests.
#
# Environment: CEPH_OBJECTSTORE=bluestore (default; a sparse file) or memstore,
# CEPH_OSD_GIB=10 (size of that file, or of memstore), CEPH_MGR=1 (0: no manager),
# CEPH_TMP=/tmp (where the cluster folder goes).
# Measured facts and the settings that matter: shared/docs/ceph-notes.md.
set -euo pipefail

OBJECTSTORE=${CEPH_OBJECTSTORE:-bluestore}
OSD_BYTES=$((${CEPH_OSD_GIB:-10} << 30))
WITH_MGR=${CEPH_MGR:-1}
T0=${EPOCHREALTIME/./}

say() { printf 'start-ceph: %s (%d ms)\n' "$*" $(((${EPOCHREALTIME/./} - T0) / 1000)) >&2; }

for prog in ceph-mon ceph-osd radosgw ceph-authtool monmaptool ceph radosgw-admin curl openssl; do
        command -v "$prog" >/dev/null 2>&1 || {
                echo "start-ceph: $prog not found: install ceph-mon ceph-mgr ceph-osd radosgw" \
                        "ceph-common (scripts/bootstrap does)" >&2
                exit 1
        }
done
case $OBJECTSTORE in
bluestore | memstore) ;;
*) echo "start-ceph: CEPH_OBJECTSTORE must be bluestore or memstore" >&2; exit 1 ;;
esac

DIR=$(mktemp -d "${CEPH_TMP:-/tmp}/holdfast-ceph.XXXXXX")
chmod 700 "$DIR"
mkdir -p "$DIR"/{run,log,crash,mon.a,mgr.x,osd.0,rgw.a,tls}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
started=0

fail() {
        local rc=$?
        trap - EXIT INT TERM
        ((started)) || exit "$rc"
        echo "start-ceph: FAILED: ${1:-see the logs below}" >&2
        for f in "$DIR"/log/*.log; do
                [[ -s $f ]] || continue
                echo "----- tail of $f -----" >&2
                tail -n 15 "$f" >&2
        done
        CEPH_STOP_SIGNAL=KILL "$HERE/stop-ceph.sh" "$DIR" >&2 || true
        exit 1
}
trap 'fail' EXIT
trap 'fail "interrupted"' INT TERM
started=1

# Free loopback ports: bind to port 0 and read what the kernel picked.
free_port() {
        /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
MON_PORT=$(free_port)
MON_PORT1=$(free_port)
RGW_PORT=$(free_port)
RGW_TLS_PORT=$(free_port)
while [[ $MON_PORT1 == "$MON_PORT" ]]; do MON_PORT1=$(free_port); done
while [[ $RGW_PORT == "$MON_PORT" || $RGW_PORT == "$MON_PORT1" ]]; do RGW_PORT=$(free_port); done
while [[ $RGW_TLS_PORT == "$MON_PORT" || $RGW_TLS_PORT == "$MON_PORT1" ||
        $RGW_TLS_PORT == "$RGW_PORT" ]]; do RGW_TLS_PORT=$(free_port); done
FSID=$(cat /proc/sys/kernel/random/uuid)
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
# Not tr </dev/urandom | head: tr gets SIGPIPE under pipefail.
ACCESS_KEY=HF$(od -An -tx1 -N9 /dev/urandom | tr -d ' \n' | tr a-f A-F)
SECRET_KEY=$(od -An -tx1 -N20 /dev/urandom | tr -d ' \n')
CONF=$DIR/ceph.conf

# A throw-away CA and a certificate for 127.0.0.1 signed by it, for the TLS endpoint (P-256 keys;
# the three openssl runs take about 70 ms). Nothing outside DIR trusts the CA: clients need ca.pem.
TLS=$DIR/tls
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=holdfast test CA $FSID" -keyout "$TLS/ca.key" -out "$TLS/ca.pem" \
        2>"$DIR/log/tls.err" || fail "openssl could not make the test CA"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
        -keyout "$TLS/server.key" -out "$TLS/server.csr" 2>>"$DIR/log/tls.err" ||
        fail "openssl could not make the server key"
cat >"$TLS/server.ext" <<EXT
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
EXT
openssl x509 -req -in "$TLS/server.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca.key" -CAcreateserial \
        -days 2 -extfile "$TLS/server.ext" -out "$TLS/server.pem" 2>>"$DIR/log/tls.err" ||
        fail "openssl could not sign the server certificate"
chmod 600 "$TLS/ca.key" "$TLS/server.key"

cat >"$CONF" <<CONF
[global]
fsid = $FSID
mon host = [v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$MON_PORT1]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
keyring = $DIR/keyring
run dir = $DIR/run
pid file = $DIR/run/\$name.pid
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
mon data = $DIR/mon.\$id
mgr data = $DIR/mgr.\$id
osd data = $DIR/osd.\$id
crash dir = $DIR/crash
mon allow pool size one = true
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
osd crush chooseleaf type = 0
mon data avail warn = 1
mon data avail crit = 0
mgr initial modules = iostat
mgr disabled modules = alerts influx insights localpool mirroring nfs osd_perf_query osd_support prometheus restful selftest snap_schedule stats telegraf test_orchestrator zabbix diskprediction_local
paxos propose interval = 0.1
[osd]
osd objectstore = $OBJECTSTORE
bluestore block create = true
bluestore block size = $OSD_BYTES
bluestore fsck on mkfs = false
bluestore fsck on mount = false
memstore device bytes = $OSD_BYTES
osd memory target = 1073741824
[client]
objecter tick interval = 0.5
[client.rgw.a]
# ssl_endpoint, not ssl_port: a port alone listens on every address.
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT ssl_endpoint=127.0.0.1:$RGW_TLS_PORT ssl_certificate=$TLS/server.pem ssl_private_key=$TLS/server.key
rgw data = $DIR/rgw.a
# Deleted objects free their space within seconds, not hours (RGW's garbage collector waits
# 2 h by default), so tests and benchmarks that clean up after themselves keep their room.
rgw gc obj min wait = 5
rgw gc processor period = 5
rgw gc processor max time = 5
CONF

# One keyring with every entity; ceph-mon --mkfs imports them all.
K=$DIR/keyring
ceph-authtool --create-keyring "$K" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$K" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
        --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
ceph-authtool "$K" --gen-key -n mgr.x --cap mon 'allow profile mgr' --cap osd 'allow *' \
        --cap mds 'allow *' >/dev/null
ceph-authtool "$K" --gen-key -n osd.0 --cap mon 'allow profile osd' --cap mgr 'allow profile osd' \
        --cap osd 'allow *' >/dev/null
ceph-authtool "$K" --gen-key -n client.rgw.a --cap mon 'allow rw' --cap osd 'allow rwx' \
        --cap mgr 'allow rw' >/dev/null
chmod 600 "$K"

monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$MON_PORT1]" \
        "$DIR/monmap" >/dev/null
ceph-mon -c "$CONF" -i a --mkfs --monmap "$DIR/monmap" --keyring "$K" >/dev/null 2>"$DIR/log/mkfs-mon.err"

# Daemons in the background, each in its own session (no terminal signals), stdout/err to logs.
spawn() {
        local name=$1
        shift
        setsid "$@" </dev/null >>"$DIR/log/$name.out" 2>&1 &
        echo $! >"$DIR/run/$name.spawned"
}

spawn mon.a ceph-mon -c "$CONF" -i a -f
# The OSD's mkfs runs while the monitor starts; the manager starts at the same time.
ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$OSD_UUID" >"$DIR/log/mkfs-osd.out" 2>&1 &
MKFS=$!
((WITH_MGR)) && spawn mgr.x ceph-mgr -c "$CONF" -i x -f
say "monitor started on 127.0.0.1:$MON_PORT"

alive() { # PID: running and not a zombie
        local st
        st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
        [[ -n $st && $st != Z ]]
}

ceph_cmd() { timeout 20 ceph -c "$CONF" --connect-timeout 15 "$@"; }
ceph_cmd osd new "$OSD_UUID" 0 >/dev/null 2>"$DIR/log/osd-new.err" || fail "ceph osd new failed"
wait "$MKFS" || fail "ceph-osd --mkfs failed"
say "osd.0 formatted ($OBJECTSTORE)"
spawn osd.0 ceph-osd -c "$CONF" -i 0 -f
spawn rgw.a radosgw -c "$CONF" -n client.rgw.a -f

# radosgw alone, for tests that stop and restart it.
cat >"$DIR/rgw-start" <<SH
#!/bin/bash
# Restarts radosgw of this cluster in the background and waits until it answers (30 s at most).
setsid radosgw -c "$CONF" -n client.rgw.a -f </dev/null >>"$DIR/log/rgw.a.out" 2>&1 &
echo \$! >"$DIR/run/rgw.a.spawned"
for _ in \$(seq 300); do
        curl -s -o /dev/null --max-time 2 http://127.0.0.1:$RGW_PORT/ && exit 0
        sleep 0.1
done
echo "rgw-start: radosgw did not answer on 127.0.0.1:$RGW_PORT" >&2
exit 1
SH
chmod 700 "$DIR/rgw-start"

# Wait for RGW: it creates its pools itself. curl --max-time: a foreign process owning the port
# must not hang the probe; a radosgw that exits (port in use) fails the start.
deadline=$((SECONDS + 90))
until curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$RGW_PORT/"; do
        alive "$(cat "$DIR/run/rgw.a.spawned")" || fail "radosgw exited"
        alive "$(cat "$DIR/run/osd.0.spawned")" || fail "ceph-osd exited"
        alive "$(cat "$DIR/run/mon.a.spawned")" || fail "ceph-mon exited"
        ((SECONDS < deadline)) || fail "radosgw did not answer within 90 s"
        sleep 0.1
done
say "radosgw answers on 127.0.0.1:$RGW_PORT"
# The TLS endpoint opens with the plain one; checking it with the CA also proves the certificate.
curl -s -o /dev/null --max-time 5 --cacert "$TLS/ca.pem" "https://127.0.0.1:$RGW_TLS_PORT/" ||
        fail "radosgw does not answer over TLS on 127.0.0.1:$RGW_TLS_PORT"
say "radosgw answers over TLS on 127.0.0.1:$RGW_TLS_PORT"

radosgw-admin -c "$CONF" -n client.admin user create --uid=holdfast --display-name=holdfast \
        --access-key="$ACCESS_KEY" --secret="$SECRET_KEY" >/dev/null 2>"$DIR/log/user-create.err" ||
        fail "radosgw-admin user create failed"
cat >"$DIR/env" <<ENV
CEPH_DIR=$DIR
S3_ENDPOINT=http://127.0.0.1:$RGW_PORT
S3_ENDPOINT_TLS=https://127.0.0.1:$RGW_TLS_PORT
S3_CACERT=$TLS/ca.pem
AWS_ACCESS_KEY_ID=$ACCESS_KEY
AWS_SECRET_ACCESS_KEY=$SECRET_KEY
AWS_DEFAULT_REGION=us-east-1
ENV
chmod 600 "$DIR/env"
trap - EXIT INT TERM
say "ready"
cat "$DIR/env"
