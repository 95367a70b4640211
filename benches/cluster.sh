#!/usr/bin/env bash
# cluster.sh: issue 11's benchmark: a three-node huststore cluster against one huststore node
# and against a three-member etcd cluster, all on this machine, in one run.
#
# Usage:  benches/cluster.sh [-d DUR] [-r "ROWS"] [-s "SIZES"] [-h]
#
# Builds the release binary (cargo build --release; CARGO_TARGET_DIR is honoured) and starts,
# each from a temp folder on free 127.0.0.1 ports:
#   cluster  three huststore nodes of that binary (a `cluster { }` block each: distinct client
#            and peer ports and data folders, one secret file (mode 0600), CLUSTER_GROUPS groups of 3
#            replicas, `election_timeout` ELECTION, `reads linearizable`, WORKERS workers each,
#            `sync_writes on`)
#   single   one huststore node (SINGLE_WORKERS workers, `sync_writes on`)
#   etcd     a three-member etcd cluster (Debian's etcd-server: each member on its own loopback
#            client and peer ports and data folder, started with --initial-cluster, fsync on as
#            by default); the script installs etcd-server with apt-get when it is missing, which
#            needs root
# and measures, for every size of SIZES, against each of the three in turn:
#   put       durable PUT, an overwrite of a random key of KEYS preloaded keys (huststore:
#             POST /put?key=... with the value as body; etcd: POST /v3/kv/put with base64 JSON)
#   get       linearizable GET of a random preloaded key (huststore: GET /get?key=..., which is
#             linearizable in the cluster by `reads linearizable`; etcd: POST /v3/kv/range,
#             linearizable by default)
#   local     GET as above but not linearizable: huststore `consistency=local` (the receiving
#             node's replica), etcd `"serializable":true` (the member's own state); what the
#             read barrier costs
#   failover  (cluster only) `kill -9` of every process of the node that leads group
#             FAILOVER_GROUP (from /cluster/status, else the placement's preferred leader), then
#             a PUT of a key of that group through another node every 10 ms (each try on its own
#             connection, overlapping) until one is answered 200: the time from the kill to that
#             answer, against 3 x election_timeout; FAILOVERS times, the killed node restarted
#             (and writable) between tries
# Every put/get row runs three wrk processes in parallel, `wrk -t1 -c<CONNS/3> -d<DUR> --latency`,
# one per node (the single node gets all three), with the same Lua script (cluster/kv.lua) and
# arguments; the row's rate is the sum of the three rates of 2xx answers, its p50 and p99 the
# worst of the three.
#
# Options (each also settable through the environment variable in brackets):
#   -d DUR       wrk duration per row, 1s..60s                 [DUR=10s]
#   -r "ROWS"    subset of "put get local failover"            [ROWS=all of them]
#   -s "SIZES"   value sizes                                   [SIZES="256 4096"]
#   Environment only: SYSTEMS="etcd cluster single" (which to measure), KEYS=10000, CONNS=100,
#   WORKERS=1 (per cluster node), SINGLE_WORKERS=2, CLUSTER_GROUPS=16, ELECTION=1s, TIMEOUT=5s,
#   FAILOVER_GROUP=0, FAILOVERS=3 (tries: groups FAILOVER_GROUP, +1, ...; the killed node is
#   restarted between tries), PRELOAD_BOUND=120 (seconds per preload), NO_BUILD=1 (use the binary as
#   built), KEEP_TMP=1 (keep the temp folder with the logs).
#
# Tools: bash, cargo, wrk (with Lua), curl, python3, ps, ss, etcd. Loopback only; every process
# the script started is stopped and the temp folder removed on exit. Progress goes to stderr,
# the report (markdown) to stdout.
#
# Reading the figures: wrk runs on the same host and takes a large share of the CPUs, the three
# systems share the same CPUs, and absolute req/s are a property of the box and of its load; the
# ratios taken in one run are what counts.

set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CMDLINE="benches/cluster.sh${*:+ $*}"
ENV_SET=""
for v in CARGO_TARGET_DIR DUR SIZES ROWS SYSTEMS KEYS CONNS WORKERS SINGLE_WORKERS CLUSTER_GROUPS ELECTION \
         TIMEOUT FAILOVER_GROUP FAILOVERS PRELOAD_BOUND NO_BUILD KEEP_TMP; do
  [ -z "${!v+x}" ] || ENV_SET+="$v=\"${!v}\" "
done
CMDLINE="${ENV_SET:-}$CMDLINE"

DUR=${DUR:-10s}
SIZES=${SIZES:-"256 4096"}
ROWS=${ROWS:-"put get local failover"}
SYSTEMS=${SYSTEMS:-"etcd cluster single"}
KEYS=${KEYS:-10000}
CONNS=${CONNS:-100}
WORKERS=${WORKERS:-1}
SINGLE_WORKERS=${SINGLE_WORKERS:-2}
CLUSTER_GROUPS=${CLUSTER_GROUPS:-16}
ELECTION=${ELECTION:-1s}
TIMEOUT=${TIMEOUT:-5s}
FAILOVER_GROUP=${FAILOVER_GROUP:-0}
FAILOVERS=${FAILOVERS:-3}
PRELOAD_BOUND=${PRELOAD_BOUND:-120}
NO_BUILD=${NO_BUILD:-}
KEEP_TMP=${KEEP_TMP:-}
NODES=3 # the script's cluster and etcd have three members; the Lua scripts do not care

die()  { echo "cluster.sh: error: $*" >&2; exit 2; }
warn() { echo "cluster.sh: warning: $*" >&2; }
T0=$SECONDS
log()  { printf '[%3ds] %s\n' $((SECONDS - T0)) "$*" >&2; }
usage() { awk 'NR==1{next} /^#/{sub(/^# ?/,"");print;next} {exit}' "${BASH_SOURCE[0]}"; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
  case "$1" in
    -d|-r|-s) [ $# -ge 2 ] || die "option $1 needs a value" ;;
  esac
  case "$1" in
    -h|--help) usage 0 ;;
    -d) DUR=$2; shift 2 ;;
    -r) ROWS=$2; shift 2 ;;
    -s) SIZES=$2; shift 2 ;;
    *) die "unknown argument $1 (see -h)" ;;
  esac
done

# ---------------------------------------------------------------- argument checks
[[ "$DUR" =~ ^([0-9]+)s?$ ]] || die "DUR must be seconds, e.g. 10s (got '$DUR')"
DUR_S=${BASH_REMATCH[1]}
[ "$DUR_S" -ge 1 ] && [ "$DUR_S" -le 60 ] || die "DUR must be 1s..60s"
for v in KEYS CONNS WORKERS SINGLE_WORKERS CLUSTER_GROUPS PRELOAD_BOUND FAILOVERS; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[[ "$FAILOVER_GROUP" =~ ^[0-9]+$ ]] && [ "$FAILOVER_GROUP" -lt "$CLUSTER_GROUPS" ] || die "FAILOVER_GROUP must be in 0..CLUSTER_GROUPS-1"
[ "$CLUSTER_GROUPS" -le 1024 ] || die "CLUSTER_GROUPS must be 1..1024"
[ "$CONNS" -ge "$NODES" ] || die "CONNS must be >= $NODES (one wrk per node)"
for t in ELECTION TIMEOUT; do
  [[ "${!t}" =~ ^([0-9]+)(ms|s)$ ]] || die "$t must look like 1s or 300ms (got '${!t}')"
done
ms_of() { [[ "$1" =~ ^([0-9]+)(ms|s)$ ]]; [ "${BASH_REMATCH[2]}" = s ] && echo $((BASH_REMATCH[1] * 1000)) || echo "${BASH_REMATCH[1]}"; }
ELECTION_MS=$(ms_of "$ELECTION"); TIMEOUT_MS=$(ms_of "$TIMEOUT")
for s in $SIZES; do
  [[ "$s" =~ ^[1-9][0-9]*$ ]] && [ "$s" -ge 16 ] && [ "$s" -le 1048576 ] || die "bad size '$s' (16..1048576)"
done
for r in $ROWS; do
  case "$r" in put|get|local|failover) ;; *) die "unknown row '$r' (put get local failover)" ;; esac
done
for s in $SYSTEMS; do
  case "$s" in etcd|cluster|single) ;; *) die "unknown system '$s' (etcd cluster single)" ;; esac
done
want() { [[ " $ROWS " == *" $1 "* ]]; }
has() { [[ " $SYSTEMS " == *" $1 "* ]]; }

# ---------------------------------------------------------------- tools
hint="on Debian/Ubuntu: apt-get install wrk curl python3 procps iproute2 etcd-server"
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found; $hint"; }
need wrk; need curl; need python3; need ps; need ss; need awk
[[ "$(wrk -h 2>&1)" == *--script* ]] || die "this wrk has no Lua (--script) support; $hint"
for f in hb.lua cluster/kv.lua cluster/b64.lua cluster/preload.lua; do
  [ -r "$HERE/$f" ] || die "missing $HERE/$f"
done
if has etcd && ! command -v etcd >/dev/null 2>&1; then
  [ "$(id -u)" -eq 0 ] || die "etcd not found, and installing it needs root: apt-get install etcd-server (or SYSTEMS=\"cluster single\")"
  log "etcd not found: apt-get install -y etcd-server"
  { apt-get install -y etcd-server || { apt-get update && apt-get install -y etcd-server; }; } >&2 \
    || die "apt-get install etcd-server failed"
  # The package's service is not wanted (it would listen on the default ports).
  command -v systemctl >/dev/null 2>&1 && systemctl stop etcd >/dev/null 2>&1
fi
if has etcd; then
  ETCD_BIN=$(command -v etcd) || die "etcd not found"
fi

# ---------------------------------------------------------------- build
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
  case "$CARGO_TARGET_DIR" in /*) TARGET=$CARGO_TARGET_DIR ;; *) TARGET=$ROOT/$CARGO_TARGET_DIR ;; esac
else
  TARGET=$ROOT/target
fi
BIN=$TARGET/release/huststore
if [ -z "$NO_BUILD" ] && { has cluster || has single; }; then
  need cargo
  log "cargo build --release"
  (cd "$ROOT" && cargo build --release >&2) || die "cargo build --release failed"
fi
{ has cluster || has single; } && { [ -x "$BIN" ] || die "no binary at $BIN (build it, or unset NO_BUILD)"; }

# ---------------------------------------------------------------- temp dir + cleanup
TMP=$(mktemp -d "${TMPDIR:-/tmp}/huststore-cluster-bench.XXXXXX") || die "mktemp failed"
chmod 755 "$TMP"
WRK_PIDS=""; ETCD_PIDS=(); NODE_PIDS=(); SINGLE_PID=""; POLL_PID=""
declare -a NODE_KIDS

stop_pid() { # stop_pid PID [SECONDS]: TERM, wait, KILL
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < ${2:-10} * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}
kids_of() { ps -o pid= --ppid "$1" 2>/dev/null | tr '\n' ' '; }
hs_stop() { # hs_stop MASTER_PID [KNOWN_CHILDREN]: TERM to the master, KILL to its children after 15 s
  local pid=$1 kids=${2:-} k
  [ -n "$pid" ] || return 0
  kids="$kids $(kids_of "$pid")"
  stop_pid "$pid" 15
  for k in $kids; do kill -KILL "$k" 2>/dev/null; done
  return 0
}
cleanup() {
  local p i
  for p in $WRK_PIDS $POLL_PID; do kill -KILL "$p" 2>/dev/null; done
  for ((i = 0; i < ${#NODE_PIDS[@]}; i++)); do hs_stop "${NODE_PIDS[i]}" "${NODE_KIDS[i]:-}"; done
  [ -z "$SINGLE_PID" ] || hs_stop "$SINGLE_PID"
  for p in "${ETCD_PIDS[@]}"; do stop_pid "$p" 10; done
  if [ -n "$KEEP_TMP" ]; then echo "cluster.sh: temp folder kept: $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

UNIT="0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
mkbody() { # mkbody N: N bytes of the pattern the Lua scripts send
  local n=$1 s=$UNIT
  while [ ${#s} -lt "$n" ]; do s=$s$s; done
  printf '%s' "${s:0:$n}"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
TAKEN=" "
free_port() { # below the ephemeral range, never one this run handed out already
  local p i
  for i in $(seq 100); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 12000 ))
    [[ "$TAKEN" == *" $p "* ]] && continue
    port_in_use "$p" && continue
    TAKEN+="$p "; echo "$p"; return 0
  done
  return 1
}
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time "${2:-2}" "$1" 2>/dev/null; }

# cpu_ticks PIDS...: utime + stime of the processes, in clock ticks
cpu_ticks() {
  local p t=0 v
  for p in "$@"; do
    v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null)
    t=$((t + ${v:-0}))
  done
  echo "$t"
}
HZ=$(getconf CLK_TCK 2>/dev/null || echo 100)

# ---------------------------------------------------------------- etcd
ETCD_URLS=()
etcd_start() {
  local i try initial="" cport pport ok
  for try in 1 2 3; do
    initial=""; ETCD_URLS=(); ETCD_PIDS=()
    local -a cp pp
    for i in 1 2 3; do
      cp[i]=$(free_port) || die "no free port"; pp[i]=$(free_port) || die "no free port"
      initial+="${initial:+,}e$i=http://127.0.0.1:${pp[i]}"
    done
    for i in 1 2 3; do
      rm -rf "$TMP/etcd/e$i"; mkdir -p "$TMP/etcd/e$i"
      "$ETCD_BIN" --name "e$i" --data-dir "$TMP/etcd/e$i/data" \
        --listen-client-urls "http://127.0.0.1:${cp[i]}" --advertise-client-urls "http://127.0.0.1:${cp[i]}" \
        --listen-peer-urls "http://127.0.0.1:${pp[i]}" --initial-advertise-peer-urls "http://127.0.0.1:${pp[i]}" \
        --initial-cluster "$initial" --initial-cluster-token "hb-bench-$$" --initial-cluster-state new \
        --logger zap --log-level warn </dev/null >"$TMP/etcd/e$i/log" 2>&1 &
      ETCD_PIDS+=($!)
      ETCD_URLS+=("http://127.0.0.1:${cp[i]}")
    done
    for ((i = 0; i < 300; i++)); do
      ok=0
      for cport in "${ETCD_URLS[@]}"; do
        [[ "$(curl -s --max-time 1 "$cport/health" 2>/dev/null)" == *'"health":"true"'* ]] && ok=$((ok + 1))
      done
      [ "$ok" -eq 3 ] && break
      sleep 0.1
    done
    if [ "$ok" -eq 3 ]; then
      log "etcd: 3 members up (${ETCD_URLS[*]})"
      return 0
    fi
    warn "etcd did not come up (try $try); its logs:"
    for i in 1 2 3; do tail -3 "$TMP/etcd/e$i/log" | sed 's/^/    /' >&2; done
    for pport in "${ETCD_PIDS[@]}"; do stop_pid "$pport" 5; done
    ETCD_PIDS=()
  done
  die "could not start the etcd cluster"
}

# ---------------------------------------------------------------- huststore
hs_conf_common() { # hs_conf_common PORT DIR WORKERS
  echo "daemon off;"
  [ "$(id -u)" -ne 0 ] || echo "user root;"
  echo "mode kv;"
  echo "worker_processes $3;"
  echo "listen 127.0.0.1:$1;"
  echo "pid $2/huststore.pid;"
  echo "error_log $2/error.log notice;"
  echo "data_dir $2/data;"
  echo "map_size 8g;"
  echo "cache_size 64m;"
  echo "sync_writes on;"
}

# hs_wait MASTER_PID URL DIR: until /status.html answers 200 and the pid file exists (15 s)
hs_wait() {
  local pid=$1 url=$2 dir=$3 i
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    [ -s "$dir/huststore.pid" ] && [ "$(http_code "$url/status.html" 1)" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}

hs_show_logs() { # hs_show_logs DIR
  sed 's/^/    /' "$1/out" >&2
  tail -5 "$1/error.log" 2>/dev/null | sed 's/^/    /' >&2
}

SINGLE_URL=""
single_start() {
  local try dir=$TMP/single port
  for try in 1 2 3; do
    rm -rf "$dir"; mkdir -p "$dir/data"
    port=$(free_port) || die "no free port"
    hs_conf_common "$port" "$dir" "$SINGLE_WORKERS" > "$dir/huststore.conf"
    "$BIN" -c "$dir/huststore.conf" </dev/null >"$dir/out" 2>&1 &
    SINGLE_PID=$!
    if hs_wait "$SINGLE_PID" "http://127.0.0.1:$port" "$dir"; then
      SINGLE_URL="http://127.0.0.1:$port"
      log "single node up on $SINGLE_URL (pid $SINGLE_PID, $SINGLE_WORKERS workers)"
      return 0
    fi
    warn "the single node did not come up (try $try):"; hs_show_logs "$dir"
    hs_stop "$SINGLE_PID"; SINGLE_PID=""
    grep -q 'in use' "$dir/out" || break
  done
  die "could not start the single node"
}

# Which group a key is in (cluster.md §2: x31 over the bytes, % 1024, contiguous ranges), and a
# key of a given group: python3, so that the script needs no huststore tool for it.
KEY_OF_GROUP_PY='
import sys
groups, want, prefix = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def group(key):
    h = 0
    for b in key.encode():
        h = (h * 31 + b) & 0xffffffff
    return ((h % 1024 + 1) * groups - 1) // 1024
for j in range(1000000):
    k = "%s%d" % (prefix, j)
    if group(k) == want:
        print(k)
        break
'
key_of_group() { python3 -c "$KEY_OF_GROUP_PY" "$CLUSTER_GROUPS" "$1" "$2"; }

NODE_URLS=(); NODE_PEER_PORTS=()
cluster_start() {
  local try i j dir secret=$TMP/cluster/cluster.secret ok g key code
  local -a cport pport
  for try in 1 2 3; do
    rm -rf "$TMP/cluster"; mkdir -p "$TMP/cluster"
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$secret"
    chmod 600 "$secret"
    NODE_URLS=(); NODE_PEER_PORTS=(); NODE_PIDS=(); NODE_KIDS=()
    for ((i = 0; i < NODES; i++)); do
      cport[i]=$(free_port) || die "no free port"; pport[i]=$(free_port) || die "no free port"
    done
    for ((i = 0; i < NODES; i++)); do
      dir=$TMP/cluster/n$((i + 1)); mkdir -p "$dir/data"
      {
        hs_conf_common "${cport[i]}" "$dir" "$WORKERS"
        echo "cluster {"
        echo "    name bench;"
        echo "    node_id n$((i + 1));"
        for ((j = 0; j < NODES; j++)); do
          echo "    node n$((j + 1)) 127.0.0.1:${cport[j]} 127.0.0.1:${pport[j]};"
        done
        echo "    groups $CLUSTER_GROUPS;"
        echo "    replicas 3;"
        echo "    secret $secret;"
        echo "    timeout $TIMEOUT;"
        echo "    election_timeout $ELECTION;"
        echo "    reads linearizable;"
        echo "}"
      } > "$dir/huststore.conf"
      "$BIN" -t -c "$dir/huststore.conf" >"$dir/t.out" 2>&1 || { cat "$dir/t.out" >&2; die "huststore -t refused the cluster conf"; }
      NODE_URLS+=("http://127.0.0.1:${cport[i]}")
      NODE_PEER_PORTS+=("${pport[i]}")
    done
    for ((i = 0; i < NODES; i++)); do
      dir=$TMP/cluster/n$((i + 1))
      "$BIN" -c "$dir/huststore.conf" </dev/null >"$dir/out" 2>&1 &
      NODE_PIDS+=($!)
    done
    ok=1
    for ((i = 0; i < NODES; i++)); do
      if ! hs_wait "${NODE_PIDS[i]}" "${NODE_URLS[i]}" "$TMP/cluster/n$((i + 1))"; then
        warn "cluster node n$((i + 1)) did not come up (try $try):"; hs_show_logs "$TMP/cluster/n$((i + 1))"
        ok=0
      fi
    done
    if [ "$ok" -eq 1 ]; then
      for ((i = 0; i < NODES; i++)); do NODE_KIDS[i]=$(kids_of "${NODE_PIDS[i]}"); done
      # Ready when a write to every group, through every node, is answered 200 (60 s).
      local deadline=$((SECONDS + 60)) left=""
      for ((g = 0; g < CLUSTER_GROUPS; g++)); do
        key=$(key_of_group "$g" "probe_")
        for ((i = 0; i < NODES; i++)); do
          while :; do
            code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 6 --data-binary x "${NODE_URLS[i]}/put?key=$key" 2>/dev/null)
            [ "$code" = 200 ] && break
            [ "$SECONDS" -lt "$deadline" ] || { left+=" group $g via n$((i + 1)): $code"; break; }
            sleep 0.1
          done
        done
      done
      for ((i = 0; i < NODES; i++)); do NODE_KIDS[i]="${NODE_KIDS[i]} $(kids_of "${NODE_PIDS[i]}")"; done
      if [ -z "$left" ]; then
        log "cluster: 3 nodes up, every group writable through every node (${NODE_URLS[*]})"
        return 0
      fi
      warn "the cluster did not become writable within 60 s:$left"
      for ((i = 0; i < NODES; i++)); do tail -5 "$TMP/cluster/n$((i + 1))/error.log" 2>/dev/null | sed "s/^/    n$((i + 1)): /" >&2; done
      CLUSTER_BROKEN=1
      return 1
    fi
    for ((i = 0; i < NODES; i++)); do hs_stop "${NODE_PIDS[i]}"; done
    NODE_PIDS=()
    # Only a port taken meanwhile is worth another try with new ports.
    cat "$TMP"/cluster/n*/out 2>/dev/null | grep -q 'in use' || break
  done
  die "could not start the huststore cluster"
}

# helper_pids NODE_INDEX: the processes of node i that listen on its peer port (the helper)
helper_pids() {
  ss -ltnpH "sport = :${NODE_PEER_PORTS[$1]}" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u | tr '\n' ' '
}

# ---------------------------------------------------------------- wrk, in parallel
# run_par SECS MARKER SCRIPT ARGS...: one wrk per URL of TARGETS (-t1, CONNS shared out), all at
# once; in ARGS, @K@ becomes the wrk's index (0..). Sets PAR_RES to "qps p50_us p99_us non2xx
# sockerr reqs secs" (qps: the rate of 2xx answers; rates summed, latencies the worst, secs the shortest) or FAIL, and
# PAR_PRELOAD to "sent bad" summed over the HB_PRELOAD lines. With a MARKER, wrk k is ended
# (SIGINT: it still reports) once MARKER.k.1 exists. Bounded by SECS + 30 s.
run_par() {
  local secs=$1 marker=$2 script=$3 n=${#TARGETS[@]} k c i left pids=() out line
  shift 3
  for ((k = 0; k < n; k++)); do
    c=$(( CONNS / n + (k < CONNS % n ? 1 : 0) ))
    [ -z "$marker" ] || rm -f "$marker.$k".*
    HB_SEED=$((k * 104729)) wrk -t1 -c"$c" -d"${secs}s" --timeout 10s --latency -s "$HERE/cluster/$script" \
      "${TARGETS[k]}" -- "${@//@K@/$k}" >"$TMP/wrk.$k.out" 2>&1 &
    pids[k]=$!
  done
  WRK_PIDS="${pids[*]}"
  for ((i = 0; i < (secs + 30) * 20; i++)); do
    left=0
    for ((k = 0; k < n; k++)); do
      kill -0 "${pids[k]}" 2>/dev/null || continue
      if [ -n "$marker" ] && [ -e "$marker.$k.1" ]; then kill -INT "${pids[k]}" 2>/dev/null; continue; fi
      left=$((left + 1))
    done
    [ "$left" -gt 0 ] || break
    sleep 0.05
  done
  for ((i = 0; i < 200; i++)); do
    left=0; for ((k = 0; k < n; k++)); do kill -0 "${pids[k]}" 2>/dev/null && left=1; done
    [ "$left" -eq 1 ] || break; sleep 0.05
  done
  for ((k = 0; k < n; k++)); do kill -KILL "${pids[k]}" 2>/dev/null; wait "${pids[k]}" 2>/dev/null; done
  WRK_PIDS=""
  PAR_RES=""; PAR_PRELOAD="0 0"
  for ((k = 0; k < n; k++)); do
    out=$TMP/wrk.$k.out
    if grep -q '^HB_PRELOAD' "$out"; then
      line=$(grep '^HB_PRELOAD' "$out" | tail -1)
      PAR_PRELOAD=$(printf '%s\n' "$line" | awk -v prev="$PAR_PRELOAD" '{for(i=2;i<=NF;i++){split($i,a,"=");v[a[1]]=a[2]}
        split(prev, p, " "); print p[1] + v["sent"], p[2] + v["bad"]}')
      continue
    fi
    line=$(grep '^HB_RESULT' "$out" | tail -1)
    if [ -z "$line" ]; then
      tail -5 "$out" | sed "s/^/    wrk $k: /" >&2
      PAR_RES=FAIL; continue
    fi
    [ "$PAR_RES" = FAIL ] && continue
    PAR_RES=$(printf '%s\n' "$line" | awk -v prev="$PAR_RES" -v dur="$secs" '{for(i=2;i<=NF;i++){split($i,a,"=");v[a[1]]=a[2]}
      if (v["secs"] == "") v["secs"] = dur
      if (v["reqs"] > 0) v["qps"] = v["qps"] * (v["reqs"] - v["non2xx"]) / v["reqs"] # 2xx only
      if (prev == "") { print v["qps"], v["p50_us"], v["p99_us"], v["non2xx"], v["sockerr"], v["reqs"], v["secs"]; exit }
      split(prev, p, " ")
      printf "%.1f %d %d %d %d %d %.2f\n", p[1] + v["qps"], (v["p50_us"] > p[2] ? v["p50_us"] : p[2]),
        (v["p99_us"] > p[3] ? v["p99_us"] : p[3]), p[4] + v["non2xx"], p[5] + v["sockerr"], p[6] + v["reqs"],
        (v["secs"] < p[7] ? v["secs"] : p[7]) }')
  done
  [ -n "$PAR_RES" ] || PAR_RES=FAIL
}

# targets_of SYSTEM: sets TARGETS to the three URLs wrk runs against, and SYS to the script's name
targets_of() {
  case "$1" in
    etcd) TARGETS=("${ETCD_URLS[@]}"); SYS=etcd ;;
    cluster) TARGETS=("${NODE_URLS[@]}"); SYS=hs ;;
    single) TARGETS=("$SINGLE_URL" "$SINGLE_URL" "$SINGLE_URL"); SYS=hs ;;
  esac
}
system_up() {
  case "$1" in
    etcd) [ ${#ETCD_URLS[@]} -gt 0 ] ;;
    cluster) [ ${#NODE_URLS[@]} -gt 0 ] && [ -z "${CLUSTER_BROKEN:-}" ] ;;
    single) [ -n "$SINGLE_URL" ] ;;
  esac
}

# check_value SYSTEM KEY SIZE: the key reads back as the SIZE bytes preload.lua wrote
check_value() {
  local got code
  targets_of "$1"
  mkbody "$3" > "$TMP/expect"
  if [ "$SYS" = etcd ]; then
    code=$(curl -s -o "$TMP/got.json" -w '%{http_code}' --max-time 10 -X POST \
             -d "{\"key\":\"$(printf '%s' "$2" | base64 -w0)\"}" "${TARGETS[1]}/v3/kv/range")
    python3 -c 'import sys,json,base64; print(base64.b64decode(json.load(open(sys.argv[1]))["kvs"][0]["value"]).decode(), end="")' \
      "$TMP/got.json" > "$TMP/got" 2>/dev/null
  else
    code=$(curl -s -o "$TMP/got" -w '%{http_code}' --max-time 10 "${TARGETS[1]}/get?key=$2")
  fi
  [ "$code" = 200 ] && cmp -s "$TMP/got" "$TMP/expect" && return 0
  warn "$1: GET $2 -> HTTP $code, $(wc -c < "$TMP/got") bytes (expected 200 and $3 bytes)"
  return 1
}

# preload SYSTEM SIZE: keys c<SIZE>_0 .. c<SIZE>_<KEYS-1>, shared out over the three URLs
preload() {
  local sys=$1 size=$2 prefix="c${2}_" t0=$SECONDS
  targets_of "$sys"
  run_par "$PRELOAD_BOUND" "$TMP/preload.mark" preload.lua "$SYS" "$prefix" "$size" @K@ "$KEYS" "${#TARGETS[@]}" "$TMP/preload.mark.@K@"
  read -r sent bad <<< "$PAR_PRELOAD"
  [ "$sent" -eq "$KEYS" ] && [ "$bad" -eq 0 ] || warn "preload $sys $size B: $sent of $KEYS PUTs answered, $bad not 200"
  log "preload $sys, $size B: $sent keys in $((SECONDS - t0)) s"
  check_value "$sys" "${prefix}0" "$size"; check_value "$sys" "${prefix}$((KEYS - 1))" "$size"
}

# ---------------------------------------------------------------- rows
declare -A RES CPU_NOTE COUNT_NOTE
# Consensus counters of /metrics, summed over the cluster's nodes (a worker shows its helper's
# figures of at most METRICS_EVERY = 2 s ago, hence the pauses around a row).
COUNTERS="proposals proposal_entries log_syncs log_entries applies apply_commits read_barriers leader_checks read_index peer_connects"
cluster_counters() {
  local u
  for u in "${NODE_URLS[@]}"; do curl -s --max-time 3 "$u/metrics" 2>/dev/null; done |
    awk -v names="$COUNTERS" 'BEGIN{ n = split(names, k, " ") }
      { for (i = 1; i <= n; i++) if ($1 == "huststore_cluster_" k[i] "_total") v[i] += $2 }
      END{ for (i = 1; i <= n; i++) printf "%d ", v[i] + 0; print "" }'
}
# counts_note BEFORE AFTER REQUESTS: what the counters moved by, per request
counts_note() {
  awk -v b="$1" -v a="$2" -v r="$3" -v names="$COUNTERS" 'BEGIN{
    n = split(names, k, " "); split(b, x, " "); split(a, y, " ")
    for (i = 1; i <= n; i++) d[k[i]] = y[i] - x[i]
    if (r <= 0) r = 1
    printf "counters: %.2f writes per proposed entry, %.2f log entries per fsync (%d fsyncs, 3 nodes), %.2f group applies per store commit, per request %.2f leader checks, %.2f ReadIndex calls, %.3f new peer connections",
      (d["proposal_entries"] > 0 ? d["proposals"] / d["proposal_entries"] : 0), (d["log_syncs"] > 0 ? d["log_entries"] / d["log_syncs"] : 0), d["log_syncs"], (d["apply_commits"] > 0 ? d["applies"] / d["apply_commits"] : 0), d["leader_checks"] / r, d["read_index"] / r, d["peer_connects"] / r }'
}

# measure OP SIZE SYSTEM: one row; RES[op,size,system] = PAR_RES
measure() {
  local op=$1 size=$2 sys=$3 i before=() after w h m all_w all_h all_m counted
  targets_of "$sys"
  if [ "$sys" = cluster ]; then # CPU time of the masters, workers and helpers over the row
    all_h=""; all_w=""; all_m="${NODE_PIDS[*]}"
    for ((i = 0; i < NODES; i++)); do
      h=$(helper_pids "$i"); all_h+=" $h"
      for w in $(kids_of "${NODE_PIDS[i]}"); do [[ " $h " == *" $w "* ]] || all_w+=" $w"; done
    done
    sleep 2.5; counted=$(cluster_counters)
    # shellcheck disable=SC2086
    before=("$(cpu_ticks $all_w)" "$(cpu_ticks $all_h)" "$(cpu_ticks $all_m)")
  fi
  run_par "$DUR_S" "" kv.lua "$SYS" "$op" "$size" "c${size}_" "$KEYS"
  RES[$op,$size,$sys]=$PAR_RES
  if [ "$sys" = cluster ]; then
    # shellcheck disable=SC2086
    after=("$(cpu_ticks $all_w)" "$(cpu_ticks $all_h)" "$(cpu_ticks $all_m)")
    CPU_NOTE[$op,$size]=$(awk -v w=$((after[0] - before[0])) -v h=$((after[1] - before[1])) -v m=$((after[2] - before[2])) \
      -v hz="$HZ" -v d="$DUR_S" 'BEGIN{ printf "CPU over the row: workers %.0f%%, helpers %.0f%%, masters %.0f%% of one core", 100*w/hz/d, 100*h/hz/d, 100*m/hz/d }')
    sleep 2.5
    COUNT_NOTE[$op,$size]=$(counts_note "$counted" "$(cluster_counters)" "$(echo "$PAR_RES" | awk '{print $6 + 0}')")
    log "$op $size B cluster: ${COUNT_NOTE[$op,$size]}"
  fi
  log "$op $size B $sys: ${PAR_RES}"
  sleep 0.5
}

# ---------------------------------------------------------------- failover
FAILOVER_PY='
import http.client, os, signal, sys, threading, time
host, port, key, deadline_s = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
pids = [int(p) for p in sys.argv[5:]]
first_ok = [None]; codes = {}; lock = threading.Lock(); inflight = [0]; events = []
def attempt(sent):
    code = "timeout"
    try:
        c = http.client.HTTPConnection(host, port, timeout=deadline_s)
        c.request("POST", "/put?key=" + key, body=b"failover", headers={"Content-Type": "application/octet-stream"})
        r = c.getresponse(); r.read(); code = r.status
        why = r.getheader("Cluster-Error") or ""; c.close()
    except Exception as e:
        code = type(e).__name__; why = ""
    done = time.monotonic()
    with lock:
        codes[code] = codes.get(code, 0) + 1
        events.append((done - t0, code, why))
        inflight[0] -= 1
        if code == 200 and (first_ok[0] is None or done < first_ok[0][0]):
            first_ok[0] = (done, sent)
for p in pids:
    try: os.kill(p, signal.SIGKILL)
    except ProcessLookupError: pass
t0 = time.monotonic(); tries = 0
while first_ok[0] is None and time.monotonic() - t0 < deadline_s:
    with lock:
        busy = inflight[0]
    if busy < 400:
        with lock: inflight[0] += 1
        threading.Thread(target=attempt, args=(time.monotonic(),), daemon=True).start()
        tries += 1
    time.sleep(0.01)
time.sleep(0.05)
with lock:
    seen = " ".join("%s:%d" % (k, v) for k, v in sorted(codes.items(), key=lambda kv: str(kv[0])))
    # When the answers changed (status and Cluster-Error), in ms from the kill: where the time went.
    changes, last = [], None
    for at, code, why in sorted(events, key=lambda e: e[0]):
        if (code, why) != last:
            changes.append("%.0f:%s%s" % (at * 1000, code, ("(" + why + ")") if why else ""))
            last = (code, why)
    timeline = "|".join(changes[:8]).replace(" ", "_")
    if first_ok[0] is None:
        print("FAILOVER none tries=%d codes=%s timeline=%s" % (tries, seen.replace(" ", ","), timeline))
    else:
        print("FAILOVER ms=%.0f sent_ms=%.0f tries=%d codes=%s timeline=%s" % ((first_ok[0][0] - t0) * 1000,
              (first_ok[0][1] - t0) * 1000, tries, seen.replace(" ", ","), timeline))
'
# leader_of STATUS_JSON GROUP: the index (0-based) of the group's leader in the node list, from
# /cluster/status's {"groups":[{"group","leader",...}]} with leader a node index or a node name
leader_of() {
  python3 -c '
import json, sys
names = sys.argv[3:]
try:
    st = json.loads(sys.argv[1])
except Exception:
    sys.exit(1)
gs = st.get("groups") if isinstance(st, dict) else None
for g in gs or []:
    if not isinstance(g, dict) or str(g.get("group")) != sys.argv[2]:
        continue
    l = g.get("leader")
    if isinstance(l, dict):
        l = l.get("name", l.get("node", l.get("id")))
    if isinstance(l, bool) or l is None:
        sys.exit(1)
    if isinstance(l, int) and 0 <= l < len(names):
        print(l); sys.exit(0)
    if str(l) in names:
        print(names.index(str(l))); sys.exit(0)
    if str(l).isdigit() and int(l) < len(names):
        print(int(l)); sys.exit(0)
sys.exit(1)' "$1" "$2" n1 n2 n3
}

# failover_once GROUP: one kill -9 of GROUP's leader's node and the wait for a write to succeed;
# appends the time (ms, or "none") to FAILOVER_MS and a line to FAILOVER_NOTES; sets VICTIM
failover_once() {
  local g=$1 st leader src key poll port line ms victims after newl
  st=$(curl -s --max-time 3 "${NODE_URLS[0]}/cluster/status" 2>/dev/null)
  if leader=$(leader_of "$st" "$g"); then
    src="/cluster/status"
  else
    leader=$((g % NODES)); src="the placement's preferred leader (/cluster/status gave no leader for group $g)"
  fi
  key=$(key_of_group "$g" "failover_")
  poll=$(( (leader + 1) % NODES ))
  port=${NODE_URLS[poll]##*:}
  [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 6 --data-binary x "${NODE_URLS[poll]}/put?key=$key")" = 200 ] ||
    warn "failover: the first PUT of $key through n$((poll + 1)) did not answer 200"
  victims="${NODE_PIDS[leader]} ${NODE_KIDS[leader]} $(kids_of "${NODE_PIDS[leader]}")"
  victims=$(printf '%s\n' $victims | sort -u | tr '\n' ' ')
  log "failover: group $g led by n$((leader + 1)) (from $src); kill -9 of its processes ($victims), PUT $key through n$((poll + 1)) every 10 ms"
  # shellcheck disable=SC2086
  line=$(python3 -c "$FAILOVER_PY" 127.0.0.1 "$port" "$key" 30 $victims)
  wait "${NODE_PIDS[leader]}" 2>/dev/null
  NODE_KIDS[leader]=""
  log "failover: $line"
  ms=$(sed -n 's/^FAILOVER ms=\([0-9]*\) .*/\1/p' <<< "$line" | head -1)
  FAILOVER_MS+=" ${ms:-none}"
  after=$(curl -s --max-time 3 "${NODE_URLS[poll]}/cluster/status" 2>/dev/null)
  newl=$(leader_of "$after" "$g") && newl="n$((newl + 1))" || newl="unknown"
  FAILOVER_NOTES+="${FAILOVER_NOTES:+; }group $g: leader n$((leader + 1)) (from $src) killed, PUTs through n$((poll + 1)), new leader $newl, ${ms:-no success in 30 s} ms ($(sed 's/^FAILOVER //; s/ms=[0-9]* //' <<< "$line"))"
  VICTIM=$leader
}

# node_restart I: starts node I again on its conf and data folder; true once a write to every
# group through it is answered 200 (60 s)
node_restart() {
  local i=$1 dir=$TMP/cluster/n$(($1 + 1)) g key code deadline=$((SECONDS + 60))
  "$BIN" -c "$dir/huststore.conf" </dev/null >>"$dir/out" 2>&1 &
  NODE_PIDS[i]=$!
  hs_wait "${NODE_PIDS[i]}" "${NODE_URLS[i]}" "$dir" || { warn "n$((i + 1)) did not come back"; hs_show_logs "$dir"; return 1; }
  NODE_KIDS[i]=$(kids_of "${NODE_PIDS[i]}")
  for ((g = 0; g < CLUSTER_GROUPS; g++)); do
    key=$(key_of_group "$g" "probe_")
    while :; do
      code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 6 --data-binary x "${NODE_URLS[i]}/put?key=$key" 2>/dev/null)
      [ "$code" = 200 ] && break
      [ "$SECONDS" -lt "$deadline" ] || { warn "n$((i + 1)) back, but group $g not writable through it: $code"; return 1; }
      sleep 0.1
    done
  done
  log "failover: n$((i + 1)) back and writable"
}

FAILOVER_MS=""; FAILOVER_NOTES=""
failover() {
  local k g
  FAILOVER_BOUND=$((3 * ELECTION_MS))
  for ((k = 0; k < FAILOVERS; k++)); do
    g=$(( (FAILOVER_GROUP + k) % CLUSTER_GROUPS ))
    failover_once "$g"
    [ $((k + 1)) -lt "$FAILOVERS" ] || break
    node_restart "$VICTIM" || break
  done
}

# ---------------------------------------------------------------- report
fmt_size() { local s=$1; if [ $((s % 1024)) -eq 0 ]; then echo "$((s / 1024)) KiB"; else echo "$s B"; fi; }
cell_qps() { awk -v x="$1" 'BEGIN{ if (x ~ /^[0-9.]+$/) printf "%.0f/s", x; else print "-" }'; }
cell_ms() { awk -v x="$1" 'BEGIN{ if (x ~ /^[0-9.]+$/) printf "%.2f ms", x / 1000; else print "-" }'; }
ratio_of() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a / b; else print "-" }'; }
verdict() { # verdict VALUE TARGET: "**3.20** (met)"
  awk -v v="$1" -v t="$2" 'BEGIN{ if (v !~ /^[0-9.]+$/) { print "-"; exit }
    printf "**%s** (%s)", v, (v >= t ? "met" : "**not met**") }'
}
errs_of() { # errs_of RES: "" or "N not 2xx, M socket errors"
  local r=$1 nx se reqs
  [ "$r" != FAIL ] || { echo "wrk failed"; return; }
  read -r _ _ _ nx se reqs _ <<< "$r"
  local s=""
  [ "${nx:-0}" -eq 0 ] || s+="$nx of $reqs not 2xx"
  [ "${se:-0}" -eq 0 ] || s+="${s:+, }$se socket errors"
  echo "$s"
}

row_name() {
  case "$1" in
    put) echo "PUT, durable" ;;
    get) echo "GET, linearizable" ;;
    local) echo "GET, local (etcd: serializable)" ;;
  esac
}

report() {
  local op size sys r q p50 p99 cells note rq e c s
  echo "# huststore cluster benchmark (issue 11), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "- command: \`$CMDLINE\` (rows: $ROWS; systems: $SYSTEMS)"
  echo "- machine: $(uname -n), $(nproc) CPUs ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)), $(awk '/^MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo) memory, kernel $(uname -r); load average before the run: $LOAD_BEFORE"
  echo "- disk of the temp folder ($TMP): $(df -hPT "$TMP" | awk 'NR==2{print $1" ("$2"), "$3" total, "$5" free, mounted on "$7}')"
  echo "- run time: $((SECONDS - T0)) s"
  if has cluster || has single; then
    echo "- huststore: $("$BIN" -v 2>&1 | head -1), $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "not a git checkout ($ROOT)")$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo ' with uncommitted changes'); map_size 8g, cache_size 64m, sync_writes on"
  fi
  has cluster && echo "- cluster: 3 nodes on 127.0.0.1, $WORKERS worker(s) each plus the cluster helper, groups $CLUSTER_GROUPS, replicas 3, election_timeout $ELECTION, timeout $TIMEOUT, reads linearizable"
  has single && echo "- single node: $SINGLE_WORKERS workers, no cluster block"
  has etcd && echo "- etcd: $("$ETCD_BIN" --version 2>/dev/null | head -1 | sed 's/etcd Version: //'), 3 members on 127.0.0.1 (own client and peer ports and data folders, --initial-cluster, defaults otherwise: fsync on); requests through its JSON gateway"
  echo "- load: per row and system, 3 wrk processes at once (\`wrk -t1 -c$((CONNS / 3))..$(( (CONNS + 2) / 3 )) -d$DUR --latency\`, $CONNS connections in all), one per node (all three against the single node), the same Lua script (benches/cluster/kv.lua) and arguments; rate = the sum of the three wrk runs' rates of 2xx answers; p50 and p99 = the worst of the three runs' own percentiles"
  echo "- keys: $KEYS keys per size, preloaded; PUT overwrites a random one (durable: huststore \`sync_writes on\` / the cluster's fsynced log; etcd's WAL fsync), GET reads a random one (linearizable in the cluster and in etcd)"
  local bad=0 f
  for f in "$TMP"/cluster/n*/error.log "$TMP"/single/error.log; do
    [ -r "$f" ] || continue
    bad=$((bad + $(grep -cE '\[(alert|crit|emerg)\]|panick' "$f")))
  done
  echo "- huststore's error logs of this run: $bad alert/crit/emerg or panic lines"
  echo
  echo "| row | size | etcd (3 members) | p50 | p99 | cluster (3 nodes) | p50 | p99 | single node | p50 | p99 | cluster / etcd | cluster / single | note |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  for op in put get local; do
    want "$op" || continue
    for size in $SIZES; do
      cells=""; note=""
      for sys in etcd cluster single; do
        r=${RES[$op,$size,$sys]:-}
        if [ -z "$r" ] || [ "$r" = FAIL ]; then
          cells+="| ${r:+failed}${r:--} | - | - "
          continue
        fi
        read -r q p50 p99 _ <<< "$r"
        cells+="| $(cell_qps "$q") | $(cell_ms "$p50") | $(cell_ms "$p99") "
        e=$(errs_of "$r"); [ -z "$e" ] || note+="${note:+; }$sys: $e"
      done
      [ -z "${CPU_NOTE[$op,$size]:-}" ] || note+="${note:+; }cluster ${CPU_NOTE[$op,$size]}"
      [ -z "${COUNT_NOTE[$op,$size]:-}" ] || note+="; ${COUNT_NOTE[$op,$size]}"
      q=${RES[$op,$size,cluster]:-}; q=${q%% *}
      r=${RES[$op,$size,etcd]:-}; s=${RES[$op,$size,single]:-}
      echo "| $(row_name "$op") | $(fmt_size "$size") $cells| $(ratio_of "$q" "${r%% *}") | $(ratio_of "$q" "${s%% *}") | $note |"
    done
  done
  echo
  echo "Targets (issue 11), at each size:"
  echo
  echo "| target | $(for s in $SIZES; do printf '%s | ' "$(fmt_size "$s")"; done | sed 's/ | $//') |"
  echo "|---|$(for s in $SIZES; do printf -- '---:|'; done)"
  for c in "put etcd 3 cluster PUT / etcd PUT ≥ 3" "get etcd 3 cluster GET / etcd GET ≥ 3" \
           "put single 0.3 cluster PUT / single PUT ≥ 0.3" "get single 0.5 cluster GET / single GET ≥ 0.5"; do
    read -r op sys rq note <<< "$c"
    want "$op" || continue
    printf '| %s |' "$note"
    for s in $SIZES; do
      r=${RES[$op,$s,cluster]:-}; q=${RES[$op,$s,$sys]:-}
      printf ' %s |' "$(verdict "$(ratio_of "${r%% *}" "${q%% *}")" "$rq")"
    done
    echo
  done
  if want failover && has cluster; then
    local t worst="" n_ok=0 n=0 sorted median
    for t in $FAILOVER_MS; do
      n=$((n + 1))
      if [[ "$t" =~ ^[0-9]+$ ]]; then n_ok=$((n_ok + 1)); [ -n "$worst" ] && [ "$worst" -ge "$t" ] || worst=$t; else worst=none; break; fi
    done
    echo
    if [ "$n" -eq 0 ]; then
      echo "Failover: not measured."
    elif [ "$worst" = none ]; then
      echo "Failover: **a try had no write succeed** within 30 s of the \`kill -9\` (times in ms:$FAILOVER_MS; $FAILOVER_NOTES)."
    else
      sorted=$(printf '%s\n' $FAILOVER_MS | sort -n | tr '\n' ' ')
      median=$(printf '%s\n' $FAILOVER_MS | sort -n | awk '{a[NR]=$1} END{print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}')
      echo "Failover ($n tries, the killed node restarted and writable again between tries): writes to the group succeeded again after **${sorted% } ms** (median $median ms) from the \`kill -9\`, against 3 × election_timeout = $FAILOVER_BOUND ms: $( [ "$worst" -le "$FAILOVER_BOUND" ] && echo "met by every try" || echo "**not met** (worst $worst ms)"). Tries: $FAILOVER_NOTES."
    fi
  fi
  echo
  echo "wrk shares the host's $(nproc) CPUs with the servers it measures, the three systems run side by side"
  echo "(idle while another is measured), and the machine is shared with other builds and tests; absolute"
  echo "req/s swing with the box and its load: compare the ratios taken in one run."
}

# ---------------------------------------------------------------- main
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
has etcd && etcd_start
has single && single_start
has cluster && cluster_start
for size in $SIZES; do
  if want put || want get || want local; then
    for sys in etcd cluster single; do has "$sys" && system_up "$sys" && preload "$sys" "$size"; done
  fi
  for op in put get local; do
    want "$op" || continue
    for sys in etcd cluster single; do has "$sys" && system_up "$sys" && measure "$op" "$size" "$sys"; done
  done
done
if want failover && has cluster && system_up cluster; then failover; fi
log "done"
report
