#!/usr/bin/env bash
# rgw-start.sh PORT DATADIR      start a throw-away Ceph cluster + RGW
# rgw-start.sh --rgw-only DATADIR  (re)start only radosgw of that cluster
#
# A single-node Ceph cluster for the S3 tests: one mon, one memstore OSD (no
# mgr), radosgw (beast) on 127.0.0.1:PORT, all state, logs and sockets under
# DATADIR (keep its path short: admin sockets are AF_UNIX), and one S3 user
# with fixed test keys. Prints `export NAME=VALUE` lines on stdout (progress
# goes to stderr):   eval "$(tests/s3/rgw-start.sh 41080 "$(mktemp -d)")"
# Stop it with tests/s3/rgw-stop.sh DATADIR: the PIDs are recorded in
# DATADIR/run/{mon,osd,rgw}.pid.
#
# Packages (Debian 12): radosgw ceph-mon ceph-osd curl.
# Environment (optional):
#   MON_PORT         mon port (default PORT+1)
#   S3_ACCESS_KEY    default TESTACCESSKEY0000001
#   S3_SECRET_KEY    default testsecretkey000000000000000000000000001
#   MEMSTORE_BYTES   OSD capacity in bytes (default 8 GiB; RAM is used only
#                    for what is stored)
#   RGW_EXTRA_CONF   extra lines for [client.rgw]
#   RGW_START_TIMEOUT  seconds (default 120)
set -euo pipefail

log() { printf '[rgw-start %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

ONLY_RGW=0
if [ "${1:-}" = "--rgw-only" ]; then
    ONLY_RGW=1
    DIR=${2:?usage: rgw-start.sh --rgw-only DATADIR}
    [ -f "$DIR/ceph.conf" ] || die "$DIR/ceph.conf not found"
    DIR=$(cd "$DIR" && pwd -P)
    PORT=$(cat "$DIR/port")
else
    PORT=${1:?usage: rgw-start.sh PORT DATADIR}
    DIR=${2:?usage: rgw-start.sh PORT DATADIR}
fi
MON_PORT=${MON_PORT:-$((PORT + 1))}
AK=${S3_ACCESS_KEY:-TESTACCESSKEY0000001}
SK=${S3_SECRET_KEY:-testsecretkey000000000000000000000000001}
TMO=${RGW_START_TIMEOUT:-120}
deadline=$(( $(date +%s) + TMO ))

for b in ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph uuidgen curl; do
    command -v "$b" >/dev/null || die "$b not found (apt-get install radosgw ceph-mon ceph-osd curl)"
done
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
C=(-c "$DIR/ceph.conf")

# Wait for a command to succeed while the daemon $2 is alive.
wait_for() {
    local what=$1 d=$2; shift 2
    until "$@" >/dev/null 2>&1; do
        kill -0 "$(cat "$DIR/run/$d.pid")" 2>/dev/null ||
            die "$d exited while waiting for $what; see $DIR/log"
        [ "$(date +%s)" -lt "$deadline" ] || die "timeout waiting for $what; see $DIR/log"
        sleep 0.1
    done
}
rgw_http() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/")" = 200 ]; }
start_rgw() {
    radosgw "${C[@]}" -n client.rgw -f </dev/null >>"$DIR/log/rgw.out" 2>&1 &
    echo $! > "$DIR/run/rgw.pid"
    wait_for "radosgw on 127.0.0.1:$PORT" rgw rgw_http
}

# On failure, stop what this run started (by recorded PID, name checked).
started=()
cleanup_on_fail() {
    local rc=$?
    [ $rc -eq 0 ] && return
    log "start failed (rc=$rc); logs in $DIR/log"
    "$(dirname "$0")/rgw-stop.sh" "$DIR" --kill ${started[@]:+--only "${started[*]}"} >/dev/null 2>&1 || true
}
trap cleanup_on_fail EXIT

if [ "$ONLY_RGW" = 1 ]; then
    port_busy "$PORT" && die "127.0.0.1:$PORT is already in use"
    started=(rgw)
    start_rgw
    log "radosgw restarted on 127.0.0.1:$PORT (pid $(cat "$DIR/run/rgw.pid"))"
    trap - EXIT
    exit 0
fi

for p in "$PORT" "$MON_PORT"; do port_busy "$p" && die "127.0.0.1:$p is already in use"; done
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd -P)
C=(-c "$DIR/ceph.conf")
[ -z "$(ls -A "$DIR")" ] || die "$DIR is not empty (only fresh clusters are built)"
mkdir -p "$DIR"/{mon,osd/ceph-0,run,log,crash,rgw}
echo "$PORT" > "$DIR/port"

FSID=$(uuidgen)
cat > "$DIR/ceph.conf" <<CONF
[global]
fsid = $FSID
mon host = v2:127.0.0.1:$MON_PORT
public addr = 127.0.0.1
cluster addr = 127.0.0.1
# loopback test cluster: no cephx between daemons (S3 SigV4 auth stays on)
auth cluster required = none
auth service required = none
auth client required = none
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
log to stderr = false
err to stderr = false
crash dir = $DIR/crash
keyring = $DIR/keyring
mon cluster log file = $DIR/log/\$cluster.\$channel.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
paxos propose interval = 0.1
paxos min wait = 0.01

[mon]
mon data = $DIR/mon/\$cluster-\$id

[osd]
osd data = $DIR/osd/\$cluster-\$id
osd objectstore = memstore
memstore device bytes = ${MEMSTORE_BYTES:-8589934592}
# a gateway the tests SIGKILL keeps its watches until this times out (default
# 30 s), and every bucket created or deleted meanwhile waits on it
osd client watch timeout = 3

[client.rgw]
# radosgw wants a secure mon connection unless told; impossible with auth none
ms mon client mode = crc secure
rgw frontends = beast endpoint=127.0.0.1:$PORT
rgw data = $DIR/rgw
rgw dns name = localhost
rgw thread pool size = 64
rgw enable ops log = false
rgw enable usage log = false
${RGW_EXTRA_CONF:-}
CONF

T0=$(date +%s%N)
log "mon on 127.0.0.1:$MON_PORT"
monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" "$DIR/monmap" >/dev/null
ceph-mon "${C[@]}" --mkfs -i a --monmap "$DIR/monmap" 2>>"$DIR/log/mkfs.err"
ceph-mon "${C[@]}" -i a -f </dev/null >>"$DIR/log/mon.out" 2>&1 &
echo $! > "$DIR/run/mon.pid"
started+=(mon)
wait_for "mon quorum" mon timeout 5 ceph "${C[@]}" --connect-timeout 2 mon stat

log "osd (memstore)"
OSDUUID=$(uuidgen)
ID=$(timeout 20 ceph "${C[@]}" osd new "$OSDUUID")
[ "$ID" = 0 ] || die "unexpected osd id $ID"
ceph-osd "${C[@]}" -i 0 --mkfs --osd-uuid "$OSDUUID" 2>>"$DIR/log/mkfs.err"
ceph-osd "${C[@]}" -i 0 -f </dev/null >>"$DIR/log/osd.out" 2>&1 &
echo $! > "$DIR/run/osd.pid"
started+=(osd)
osd_up() { timeout 5 ceph "${C[@]}" osd dump 2>/dev/null | grep -q '^osd\.0 up'; }
wait_for "osd.0 up" osd osd_up

log "radosgw on 127.0.0.1:$PORT"
started+=(rgw)
start_rgw

radosgw-admin "${C[@]}" user create --uid=tester --display-name="Test User" \
    --access-key="$AK" --secret-key="$SK" >/dev/null 2>>"$DIR/log/admin.err"
# bucket pools now, so the first test does not pay for their creation
for p in default.rgw.buckets.index default.rgw.buckets.data default.rgw.buckets.non-ec; do
    timeout 20 ceph "${C[@]}" osd pool create "$p" 8 8 >/dev/null 2>&1 || true
    timeout 20 ceph "${C[@]}" osd pool application enable "$p" rgw >/dev/null 2>&1 || true
done
# a signed request must work before we say ready
code=$(curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:s3" \
    --user "$AK:$SK" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "http://127.0.0.1:$PORT/")
[ "$code" = 200 ] || die "signed ListBuckets answered HTTP $code"

log "ready in $(( ($(date +%s%N) - T0) / 1000000 )) ms"
trap - EXIT
cat <<OUT
export S3_ENDPOINT=http://127.0.0.1:$PORT
export S3_REGION=us-east-1
export AWS_ACCESS_KEY_ID=$AK
export AWS_SECRET_ACCESS_KEY=$SK
export RGW_DATADIR=$DIR
OUT
