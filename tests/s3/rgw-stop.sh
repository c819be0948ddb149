#!/usr/bin/env bash
# rgw-stop.sh DATADIR [--kill] [--only "rgw osd mon"] [--purge]
# Stops the daemons tests/s3/rgw-start.sh started for DATADIR, and nothing
# else: each PID comes from DATADIR/run/NAME.pid and is signalled only while
# its command name is still the daemon's (radosgw, ceph-osd, ceph-mon).
#   --kill    SIGKILL at once (default: SIGTERM, SIGKILL after 15 s)
#   --only L  just these of rgw, osd, mon (e.g. --only rgw: the gateway dies,
#             the cluster and its data stay)
#   --purge   remove DATADIR afterwards (implies --kill)
set -u
DIR=${1:?usage: rgw-stop.sh DATADIR [--kill] [--only LIST] [--purge]}
shift
SIG=TERM PURGE=0 ONLY="rgw osd mon"
while [ $# -gt 0 ]; do
    case $1 in
        --kill) SIG=KILL ;;
        --purge) SIG=KILL PURGE=1 ;;
        --only) ONLY=$2; shift ;;
        *) echo "rgw-stop: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[ -d "$DIR/run" ] || { echo "rgw-stop: $DIR/run not found" >&2; exit 1; }

comm_of() { case $1 in rgw) echo radosgw ;; osd) echo ceph-osd ;; mon) echo ceph-mon ;; esac; }
pids=()
for d in rgw osd mon; do
    case " $ONLY " in *" $d "*) ;; *) continue ;; esac
    f="$DIR/run/$d.pid"
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    if [ "$(ps -o comm= -p "$pid" 2>/dev/null)" = "$(comm_of $d)" ]; then
        kill -"$SIG" "$pid" 2>/dev/null && pids+=("$pid")
    fi
    rm -f "$f"
done
alive=()
for _ in $(seq 1 150); do
    alive=()
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive+=("$p"); done
    [ ${#alive[@]} -eq 0 ] && break
    sleep 0.1
done
for p in "${alive[@]}"; do
    echo "rgw-stop: pid $p still alive after 15 s, sending SIGKILL" >&2
    kill -KILL "$p" 2>/dev/null
done
for p in "${pids[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.05; done; done
[ "$PURGE" = 1 ] && rm -rf "$DIR"
exit 0
