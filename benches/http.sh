#!/usr/bin/env bash
# http.sh: huststore's HTTP benchmark (issue 5), every figure a ratio to nginx in the same run.
#
# Usage:  benches/http.sh [-d DUR] [-r "ROWS"] [-s "SIZES"] [-h]
#
# Builds the release binary (cargo build --release; CARGO_TARGET_DIR is honoured), starts an
# nginx `return 200` yardstick and huststore itself, each from a temp folder on a free
# 127.0.0.1 port, and measures with `wrk -t2 -c100 -d<DUR> --latency` and the Lua scripts of
# this folder. Every row runs the same wrk script, with the same arguments, against huststore
# for DUR, between two runs of DUR/2 against nginx answering the same request with
# `return 200` and a body of the same size (an empty one for PUT, DEL and MQ put), and reports
# the ratio of huststore's rate to the mean of nginx's two, and the p50, p99 and p99.9
# latencies of both (wrk's histogram) with huststore's p99 over nginx's. Rows:
#   put    PUT (POST /put?key=..., new keys) with `sync_writes on` and with `sync_writes off`
#   get    GET /get?key=... over GET_KEYS preloaded keys
#   del    DEL /del?key=... over preloaded keys, each deleted once (a row stops early when the
#          keys run out, rather than measuring 404s)
#          (put, get, del: for every size of SIZES)
#   mq     mq mode (1 worker, `sync_writes on`): put, then get with ack=true on the queue the
#          put row filled (topped up first), for every size of MQ_SIZES; a row whose probe
#          request does not answer 200 is printed "n/a (mq answered <status>)"
#   scale  GET and PUT (overwrite of a random existing key) at 256 B with 10k, 1M and 10M keys
#          in the store (SCALE_KEYS), preloaded with `sync_writes off` by preload.lua (the 10M
#          step takes about 2.5 minutes and 4 GiB of disk), then measured after a restart with
#          `sync_writes SCALE_SYNC`; GET at each size against the first (issue 13's targets:
#          0.9 up to 1M keys, 0.8 at 10M)
#   rss    total VmRSS of master + workers, idle and with RSS_CONNS idle keep-alive
#          connections open (held by idle-conns.py), for huststore and for the nginx yardstick
#
# Options (each also settable through the environment variable in brackets):
#   -d DUR       wrk duration per run, 1s..60s         [DUR=4s]
#   -r "ROWS"    subset of "put get del mq scale rss"  [ROWS=all of them]
#   -s "SIZES"   value sizes of the put/get/del rows   [SIZES="256 1024 4096 16384 65536"]
#   Environment only: MQ_SIZES="256 4096", SCALE_KEYS="10000 1000000 10000000",
#   SCALE_SYNC=on, RSS_CONNS=10000, GET_KEYS=1000, CONNS=100, THREADS=2, PRELOAD_BOUND=300 (s per
#   preload), ROW_MAX_MB=1024 (most MiB preloaded for one DEL or MQ get row), PUT_POOL_MB=1024
#   (most MiB of pre-formatted PUT requests per wrk thread, see put.lua; at most 1/8 of the
#   available memory), NO_BUILD=1 (use the binary as built), KEEP_TMP=1 (keep the temp folder).
#
# Tools: bash, cargo, wrk (with Lua), curl, nginx, awk, python3, ps. Loopback only; the
# daemons, wrk and the connection helper are stopped and the temp folder removed on exit.
# Progress goes to stderr, the report (markdown) to stdout.
#
# Reading the figures: wrk runs on the same host and takes about one of the CPUs, so absolute
# req/s are a property of the box and of its load; a ratio taken in one run is what counts.

set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CMDLINE="benches/http.sh${*:+ $*}"
ENV_SET=""
for v in CARGO_TARGET_DIR DUR SIZES MQ_SIZES ROWS CONNS THREADS GET_KEYS SCALE_KEYS SCALE_SYNC RSS_CONNS \
         PRELOAD_BOUND ROW_MAX_MB PUT_POOL_MB NO_BUILD KEEP_TMP; do
  [ -z "${!v+x}" ] || ENV_SET+="$v=\"${!v}\" "
done
CMDLINE="${ENV_SET:-}$CMDLINE"

DUR=${DUR:-4s}
SIZES=${SIZES:-"256 1024 4096 16384 65536"}
MQ_SIZES=${MQ_SIZES:-"256 4096"}
ROWS=${ROWS:-"put get del mq scale rss"}
CONNS=${CONNS:-100}
THREADS=${THREADS:-2}
GET_KEYS=${GET_KEYS:-1000}
SCALE_KEYS=${SCALE_KEYS:-"10000 1000000 10000000"}
SCALE_SIZE=256
SCALE_SYNC=${SCALE_SYNC:-on}
RSS_CONNS=${RSS_CONNS:-10000}
PRELOAD_BOUND=${PRELOAD_BOUND:-300}
ROW_MAX_MB=${ROW_MAX_MB:-1024}
# put.lua pre-formats its requests, body included, so that wrk is not what a PUT row measures:
# up to PUT_POOL_MB per wrk thread. 1 GiB covers the inserts of a 64 KiB row at DUR=4s; a
# smaller pool makes the rest of a row's PUTs overwrites (noted in the row).
avail_mb=$(awk '/^MemAvailable:/{print int($2 / 1024)}' /proc/meminfo 2>/dev/null)
PUT_POOL_MB=${PUT_POOL_MB:-$(( ${avail_mb:-8192} / 8 < 1024 ? ${avail_mb:-8192} / 8 : 1024 ))}
NO_BUILD=${NO_BUILD:-}
KEEP_TMP=${KEEP_TMP:-}

die()  { echo "http.sh: error: $*" >&2; exit 2; }
warn() { echo "http.sh: warning: $*" >&2; }
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
[[ "$DUR" =~ ^([0-9]+)s?$ ]] || die "DUR must be seconds, e.g. 4s (got '$DUR')"
DUR_S=${BASH_REMATCH[1]}
[ "$DUR_S" -ge 1 ] && [ "$DUR_S" -le 60 ] || die "DUR must be 1s..60s"
DUR="${DUR_S}s"
NG_HALF=$(( DUR_S / 2 )); [ "$NG_HALF" -ge 1 ] || NG_HALF=1
for v in CONNS THREADS GET_KEYS RSS_CONNS PRELOAD_BOUND ROW_MAX_MB PUT_POOL_MB; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[ "$THREADS" -le "$CONNS" ] || die "THREADS must be <= CONNS"
for s in $SIZES $MQ_SIZES; do
  [[ "$s" =~ ^[1-9][0-9]*$ ]] && [ "$s" -le 1048576 ] || die "bad size '$s' (1..1048576)"
done
prev=0
for k in $SCALE_KEYS; do
  [[ "$k" =~ ^[1-9][0-9]*$ ]] && [ "$k" -gt "$prev" ] || die "SCALE_KEYS must be increasing positive integers"
  prev=$k
done
for r in $ROWS; do
  case "$r" in put|get|del|mq|scale|rss) ;; *) die "unknown row '$r' (put get del mq scale rss)" ;; esac
done
case "$SCALE_SYNC" in on|off) ;; *) die "SCALE_SYNC must be on or off" ;; esac
want() { [[ " $ROWS " == *" $1 "* ]]; }

# ---------------------------------------------------------------- tools
hint="on Debian/Ubuntu: apt-get install wrk curl nginx-light gawk python3 procps"
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' not found; $hint"; }
need wrk; need curl; need awk; need ps
want rss && need python3
NGINX_BIN=$(command -v nginx 2>/dev/null || true)
[ -n "$NGINX_BIN" ] || { [ -x /usr/sbin/nginx ] && NGINX_BIN=/usr/sbin/nginx; }
[ -n "$NGINX_BIN" ] || die "'nginx' not found; $hint"
[[ "$(wrk -h 2>&1)" == *--script* ]] || die "this wrk has no Lua (--script) support; $hint"
for f in hb.lua put.lua get.lua del.lua mq-put.lua mq-get.lua preload.lua idle-conns.py; do
  [ -r "$HERE/$f" ] || die "missing $HERE/$f"
done

# 10,000 connections need as many descriptors in the helper and in the daemons (inherited).
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=1048576
want_fd=$((RSS_CONNS + 1024))
[ "$want_fd" -le "$hard" ] || want_fd=$hard
ulimit -n "$want_fd" 2>/dev/null || warn "could not raise the open files limit to $want_fd"
if want rss && [ $((RSS_CONNS + 512)) -gt "$(ulimit -n)" ]; then
  RSS_CONNS=$(( $(ulimit -n) - 512 ))
  warn "open files limit $(ulimit -n): holding only $RSS_CONNS connections"
fi

# ---------------------------------------------------------------- build
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
  case "$CARGO_TARGET_DIR" in /*) TARGET=$CARGO_TARGET_DIR ;; *) TARGET=$ROOT/$CARGO_TARGET_DIR ;; esac
else
  TARGET=$ROOT/target
fi
BIN=$TARGET/release/huststore
if [ -z "$NO_BUILD" ]; then
  need cargo
  log "cargo build --release"
  (cd "$ROOT" && cargo build --release >&2) || die "cargo build --release failed"
fi
[ -x "$BIN" ] || die "no binary at $BIN (build it, or unset NO_BUILD)"

# ---------------------------------------------------------------- temp dir + cleanup
TMP=$(mktemp -d "${TMPDIR:-/tmp}/huststore-bench.XXXXXX") || die "mktemp failed"
chmod 755 "$TMP"
NG_PID=""; HS_PID=""; HS_WORKERS=""; WRK_PID=""; HELPER_PID=""

stop_pid() { # stop_pid PID [SECONDS]: TERM, wait, KILL
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < ${2:-10} * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}
cleanup() {
  [ -z "$WRK_PID" ] || kill -KILL "$WRK_PID" 2>/dev/null
  [ -z "$HELPER_PID" ] || kill -KILL "$HELPER_PID" 2>/dev/null
  hs_stop
  if [ -n "$NG_PID" ]; then stop_pid "$NG_PID"; NG_PID=""; fi
  if [ -n "$KEEP_TMP" ]; then echo "http.sh: temp folder kept: $TMP" >&2; else rm -rf "$TMP"; fi
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
free_port() { # below the ephemeral range, so wrk's and the helper's client ports never collide
  local p i
  for i in $(seq 50); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 12000 ))
    port_in_use "$p" || { echo "$p"; return 0; }
  done
  return 1
}

rss_kib() { # rss_kib PID: VmRSS of PID and of its children, KiB
  local pid=$1 total=0 p v
  for p in $pid $(ps -o pid= --ppid "$pid" 2>/dev/null); do
    v=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

# ---------------------------------------------------------------- nginx yardstick
ALL_SIZES=$(printf '%s\n' $SIZES $MQ_SIZES $SCALE_SIZE | sort -nu | tr '\n' ' ')
nginx_conf() { # nginx_conf PORT -> $TMP/nginx/nginx.conf
  local port=$1 c1k c32k="" body s k32 k1 r i
  c1k=$(mkbody 1024)
  for i in $(seq 32); do c32k+='$hb_c1k'; done
  {
    echo "worker_processes 2;"
    echo "daemon off; master_process on;"
    echo "pid $TMP/nginx/nginx.pid;"
    echo "error_log $TMP/nginx/error.log warn;"
    echo "events { worker_connections $((RSS_CONNS + 1024)); }"
    echo "http {"
    echo "  access_log off;"
    echo "  keepalive_timeout 65s; keepalive_requests 100000000;"
    echo "  client_max_body_size 0;"
    echo "  client_body_temp_path $TMP/nginx/cbt; proxy_temp_path $TMP/nginx/pt;"
    echo "  fastcgi_temp_path $TMP/nginx/ft; uwsgi_temp_path $TMP/nginx/ut; scgi_temp_path $TMP/nginx/st;"
    echo "  default_type text/plain;"
    echo "  map \$server_port \$hb_c1k  { default \"$c1k\"; }"
    echo "  map \$server_port \$hb_c32k { default \"$c32k\"; }"
    echo "  server {"
    echo "    listen 127.0.0.1:$port backlog=4096;"
    for s in $ALL_SIZES; do
      k32=$(( s / 32768 )); k1=$(( (s % 32768) / 1024 )); r=$(( s % 1024 ))
      body=""
      for ((i = 0; i < k32; i++)); do body+='$hb_c32k'; done
      for ((i = 0; i < k1; i++)); do body+='$hb_c1k'; done
      body+=$(mkbody "$r")
      echo "    location = /s$s/get { return 200 \"$body\"; }"
      echo "    location = /s$s/put { return 200 \"\"; }"
      echo "    location = /s$s/del { return 200 \"\"; }"
      echo "    location = /s$s/status.html { return 200 \"ok\\n\"; }"
    done
    echo "    location = /status.html { return 200 \"ok\\n\"; }"
    echo "    location / { return 404; }"
    echo "  }"
    echo "}"
  } > "$TMP/nginx/nginx.conf"
}

start_nginx() {
  local try port
  mkdir -p "$TMP/nginx"
  for try in 1 2 3 4 5; do
    port=$(free_port) || break
    nginx_conf "$port"
    "$NGINX_BIN" -t -q -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log" 2>"$TMP/nginx/t.err" \
      || { cat "$TMP/nginx/t.err" >&2; die "nginx config test failed"; }
    "$NGINX_BIN" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log" </dev/null 2>>"$TMP/nginx/stderr" &
    NG_PID=$!
    for _ in $(seq 50); do
      kill -0 "$NG_PID" 2>/dev/null || break
      if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port/status.html")" = 200 ]; then
        NG_PORT=$port; NG_URL="http://127.0.0.1:$port"; return 0
      fi
      sleep 0.1
    done
    stop_pid "$NG_PID" 5; NG_PID=""
  done
  cat "$TMP/nginx/stderr" "$TMP/nginx/error.log" 2>/dev/null >&2
  die "could not start the yardstick nginx"
}

# ---------------------------------------------------------------- huststore
# hs_start MODE SYNC DATA_DIR: starts the master in the foreground (daemon off) on a temp conf
# and waits until /status.html answers 200 and the pid file exists. Returns 1 (after printing
# why) when it does not come up.
hs_start() {
  local mode=$1 sync=$2 data=$3 try i conf=$TMP/huststore.conf log_at=0
  HS_MODE=$mode; HS_SYNC=$sync
  for try in 1 2 3 4 5; do
    HS_PORT=$(free_port) || break
    HS_URL="http://127.0.0.1:$HS_PORT"
    {
      echo "daemon off;"
      [ "$(id -u)" -ne 0 ] || echo "user root;"
      echo "mode $mode;"
      [ "$mode" = mq ] || echo "worker_processes 2;"
      echo "listen 127.0.0.1:$HS_PORT;"
      echo "pid $TMP/huststore.pid;"
      echo "error_log $TMP/huststore-error.log notice;"
      echo "data_dir $data;"
      echo "map_size 8g;"
      echo "cache_size 64m;"
      echo "sync_writes $sync;"
    } > "$conf"
    rm -f "$TMP/huststore.pid"
    log_at=$(stat -c %s "$TMP/huststore-error.log" 2>/dev/null || echo 0)
    "$BIN" -c "$conf" </dev/null >"$TMP/huststore.out" 2>&1 &
    HS_PID=$!
    for ((i = 0; i < 150; i++)); do
      kill -0 "$HS_PID" 2>/dev/null || break
      if [ -s "$TMP/huststore.pid" ] &&
         [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$HS_URL/status.html")" = 200 ]; then
        HS_WORKERS=$(ps -o pid= --ppid "$HS_PID" | tr '\n' ' ')
        return 0
      fi
      sleep 0.1
    done
    if ! kill -0 "$HS_PID" 2>/dev/null && grep -q 'in use' "$TMP/huststore.out"; then
      wait "$HS_PID" 2>/dev/null; HS_PID=""; continue
    fi
    hs_stop
    break
  done
  warn "huststore ($mode, sync_writes $sync) did not come up; its stderr and error log:"
  sed 's/^/    /' "$TMP/huststore.out" >&2
  tail -c +$((log_at + 1)) "$TMP/huststore-error.log" 2>/dev/null | tail -5 | sed 's/^/    /' >&2
  HS_PID=""
  return 1
}

hs_stop() { # TERM to the master (fast stop), KILL to everything it started after 15 s
  [ -n "${HS_PID:-}" ] || return 0
  local w
  HS_WORKERS="$HS_WORKERS $(ps -o pid= --ppid "$HS_PID" 2>/dev/null | tr '\n' ' ')"
  stop_pid "$HS_PID" 15
  for w in $HS_WORKERS; do kill -KILL "$w" 2>/dev/null; done
  HS_PID=""; HS_WORKERS=""
}

# ---------------------------------------------------------------- wrk
# run_wrk SECONDS MARKER SCRIPT URL ARGS...: one wrk run; sets WRK_RES to "qps p99_us non2xx
# sockerr reqs secs reused pool p50_us p999_us" or "FAIL" (reused: PUTs that overwrote a key of
# the row, see put.lua; p999: the 99.9th percentile, which hb.lua's done() asks wrk for).
# HB_GO/HB_THREADS are the scripts' start gate (see hb.lua). With a MARKER, the
# script creates MARKER.<thread> when the thread is done and wrk is ended (SIGINT: it still
# reports) once all threads are. Bounded by SECONDS + 30 s (+ 10 s to wind down).
run_wrk() {
  local secs=$1 marker=$2 script=$3 url=$4 i line out=$TMP/wrk.out
  shift 4
  [ -z "$marker" ] || rm -f "$marker".*
  rm -f "$TMP/go"
  HB_GO=$TMP/go HB_THREADS=$THREADS \
    wrk -t"$THREADS" -c"$CONNS" -d"${secs}s" --timeout 10s --latency -s "$HERE/$script" "$url" -- "$@" \
    >"$out" 2>&1 &
  WRK_PID=$!
  for ((i = 0; i < (secs + 30) * 20; i++)); do
    kill -0 "$WRK_PID" 2>/dev/null || break
    if [ -n "$marker" ] && [ "$(ls "$marker".* 2>/dev/null | wc -l)" -ge "$THREADS" ]; then
      kill -INT "$WRK_PID" 2>/dev/null
      break
    fi
    sleep 0.05
  done
  for ((i = 0; i < 200; i++)); do kill -0 "$WRK_PID" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$WRK_PID" 2>/dev/null
  wait "$WRK_PID" 2>/dev/null
  WRK_PID=""
  line=$(grep '^HB_RESULT' "$out" | tail -1)
  if [ -z "$line" ]; then
    tail -5 "$out" | sed 's/^/    wrk: /' >&2
    WRK_RES=FAIL; return
  fi
  WRK_RES=$(printf '%s\n' "$line" | awk -v dur="$secs" '{for(i=2;i<=NF;i++){split($i,a,"=");v[a[1]]=a[2]}
       if (v["secs"] == "") v["secs"] = dur
       print v["qps"], v["p99_us"], v["non2xx"], v["sockerr"], v["reqs"], v["secs"], v["reused"]+0, v["pool"]+0,
             (v["p50_us"] == "" ? "-" : v["p50_us"]), (v["p999_us"] == "" ? "-" : v["p999_us"])}')
}

# preload MODE NAME SIZE FIRST COUNT: preload.lua against huststore, bounded by PRELOAD_BOUND.
# Sets PRE_SENT (PUTs answered) and PRE_BAD (answers not 200).
preload() {
  local mode=$1 name=$2 size=$3 first=$4 count=$5 marker=$TMP/preload.mark i line out=$TMP/preload.out
  rm -f "$marker".* "$TMP/go"
  HB_GO=$TMP/go HB_THREADS=$THREADS \
    wrk -t"$THREADS" -c"$CONNS" -d"${PRELOAD_BOUND}s" --timeout 10s -s "$HERE/preload.lua" "$HS_URL" \
    -- "$mode" "$name" "$size" "$first" "$count" "$THREADS" "$marker" >"$out" 2>&1 &
  WRK_PID=$!
  for ((i = 0; i < (PRELOAD_BOUND + 30) * 20; i++)); do
    kill -0 "$WRK_PID" 2>/dev/null || break
    if [ "$(ls "$marker".* 2>/dev/null | wc -l)" -ge "$THREADS" ]; then
      kill -INT "$WRK_PID" 2>/dev/null
      break
    fi
    sleep 0.05
  done
  for ((i = 0; i < 200; i++)); do kill -0 "$WRK_PID" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$WRK_PID" 2>/dev/null
  wait "$WRK_PID" 2>/dev/null
  WRK_PID=""
  PRE_SENT=0; PRE_BAD=0
  line=$(grep '^HB_PRELOAD' "$out" | tail -1)
  if [ -z "$line" ]; then
    tail -5 "$out" | sed 's/^/    wrk: /' >&2
    return
  fi
  read -r PRE_SENT PRE_BAD < <(printf '%s\n' "$line" |
    awk '{for(i=2;i<=NF;i++){split($i,a,"=");v[a[1]]=a[2]} print v["sent"]+0, v["bad"]+0}')
}

# preload_kv NAME SIZE FIRST COUNT: preload keys NAME<i>, warn when incomplete; sets PRE_OK.
preload_kv() {
  preload kv "$@"
  [ "$PRE_SENT" -eq "$4" ] && [ "$PRE_BAD" -eq 0 ] ||
    warn "preload $1 ($2 B): $PRE_SENT of $4 PUTs answered, $PRE_BAD not 200"
  PRE_OK=$((PRE_SENT - PRE_BAD))
}

# check_value KEY SIZE: GET KEY answers 200 with the SIZE bytes preload.lua sent.
check_value() {
  local got
  mkbody "$2" > "$TMP/expect"
  got=$(curl -s -o "$TMP/got" -w '%{http_code}' --max-time 10 "$HS_URL/get?key=$1")
  [ "$got" = 200 ] && cmp -s "$TMP/got" "$TMP/expect" && return 0
  warn "GET $1 -> HTTP $got, $(wc -c < "$TMP/got") bytes (expected 200 and $2 bytes)"
  return 1
}

kv_count() { # number of plain kv records (/stat)
  curl -s --max-time 10 "$HS_URL/stat" | sed -n 's/.*"KVPAIR":{"count":\([0-9]*\).*/\1/p'
}

# ---------------------------------------------------------------- rows
# A row: name, size, huststore "qps p99 non2xx sockerr reqs secs reused pool p50 p999" (or
# "n/a ..."; latencies in microseconds), the same for nginx (its two runs' mean), target (">=0.8" style or "-"), note. Derived and RSS rows are stored ready-made.
R_N=0
declare -a R_NAME R_SIZE R_HS R_NG R_TARGET R_NOTE R_KIND
fmt_size() { # 256 -> 256 B, 1024 -> 1 KiB
  local s=$1
  if [ $((s % 1024)) -eq 0 ]; then echo "$((s / 1024)) KiB"; else echo "$s B"; fi
}
fmt_count() { # 10000 -> 10k, 1000000 -> 1M
  local k=$1
  if [ $((k % 1000000)) -eq 0 ]; then echo "$((k / 1000000))M"
  elif [ $((k % 1000)) -eq 0 ]; then echo "$((k / 1000))k"
  else echo "$k"; fi
}
add_row() { # add_row KIND NAME SIZE HS NG TARGET NOTE
  R_KIND[R_N]=$1; R_NAME[R_N]=$2; R_SIZE[R_N]=$3; R_HS[R_N]=$4; R_NG[R_N]=$5
  R_TARGET[R_N]=$6; R_NOTE[R_N]=$7
  R_N=$((R_N + 1))
}
tg256() { if [ "$1" = 256 ]; then echo "$2"; else echo -; fi; } # targets are stated at 256 B
qps_of() { case "$1" in FAIL|n/a*) echo "" ;; *) echo "${1%% *}" ;; esac; }

# measure NAME SIZE TARGET MARKER SCRIPT ARGS...: the row against nginx for DUR/2, huststore
# for DUR, nginx again for DUR/2; the yardstick is the mean of the two nginx runs, so a
# disturbance by other load shows as a difference between them (noted above 25%). An argument
# @POOL@ becomes PUT_POOL_MB for huststore and 64 for nginx: put.lua's pool size changes
# which keys are written, not what a request costs wrk, and nginx stores no key.
measure() {
  local name=$1 size=$2 target=$3 marker=$4 script=$5 hs ng ng1 ng2 note="" nx se secs reqs reused pool a
  shift 5
  local hs_args=() ng_args=()
  for a in "$@"; do
    if [ "$a" = @POOL@ ]; then hs_args+=("$PUT_POOL_MB"); ng_args+=(64)
    else hs_args+=("$a"); ng_args+=("$a"); fi
  done
  run_wrk "$NG_HALF" "$marker" "$script" "$NG_URL/s$size" "${ng_args[@]}"; ng1=$WRK_RES
  sleep 0.3
  run_wrk "$DUR_S" "$marker" "$script" "$HS_URL" "${hs_args[@]}"; hs=$WRK_RES
  sleep 0.3
  run_wrk "$NG_HALF" "$marker" "$script" "$NG_URL/s$size" "${ng_args[@]}"; ng2=$WRK_RES
  sleep 0.3
  if [ "$ng1" = FAIL ]; then ng=$ng2
  elif [ "$ng2" = FAIL ]; then ng=$ng1
  else
    ng=$(printf '%s\n%s\n' "$ng1" "$ng2" | awk '{for (i = 1; i <= NF; i++) v[NR, i] = $i}
      END { printf "%.1f %d %d %d %d %.2f 0 0 %d %d", (v[1,1] + v[2,1]) / 2, (v[1,2] + v[2,2]) / 2,
            v[1,3] + v[2,3], v[1,4] + v[2,4], v[1,5] + v[2,5], v[1,6] + v[2,6],
            (v[1,9] + v[2,9]) / 2, (v[1,10] + v[2,10]) / 2 }')
    awk -v a="${ng1%% *}" -v b="${ng2%% *}" 'BEGIN{ m = a > b ? a : b; exit !(m > 0 && ((a - b) / m > 0.25 || (b - a) / m > 0.25)) }' &&
      EXTRA_NOTE+="${EXTRA_NOTE:+; }nginx unsteady: $(printf '%.0f' "${ng1%% *}")/s before, $(printf '%.0f' "${ng2%% *}")/s after"
  fi
  if [ "$hs" != FAIL ]; then
    read -r _ _ nx se reqs secs reused pool <<< "$hs"
    [ "$nx" -eq 0 ] || note+="${note:+; }$nx of $reqs answers not 2xx"
    [ "${reused:-0}" -eq 0 ] ||
      note+="${note:+; }$reused of $reqs PUTs overwrote a key of the row (pool of $pool per thread)"
    [ "$se" -eq 0 ] || note+="${note:+; }$se socket errors"
    awk -v s="$secs" -v d="$DUR_S" 'BEGIN{exit !(s < d - 0.3)}' &&
      note+="${note:+; }ran ${secs} s of ${DUR_S} s"
  else
    note="wrk failed against huststore"
  fi
  [ "$ng" != FAIL ] || note+="${note:+; }wrk failed against nginx"
  [ -z "${EXTRA_NOTE:-}" ] || note+="${note:+; }$EXTRA_NOTE"
  EXTRA_NOTE=""
  add_row wrk "$name" "$size" "$hs" "$ng" "$target" "$note"
  log "$name $(fmt_size "$size"): huststore $(qps_of "$hs")/s, nginx $(qps_of "$ng")/s${note:+ ($note)}"
}

# ---------------------------------------------------------------- phases
phase_put_durable() {
  local s
  log "PUT, sync_writes on"
  hs_start kv on "$TMP/put-on" || die "huststore did not start"
  for s in $SIZES; do
    measure "PUT, sync_writes on" "$s" "$(tg256 "$s" '>=0.3')" "" put.lua "$s" p 0 @POOL@
    PUT_ON_QPS[$s]=$(qps_of "${R_HS[R_N-1]}")
  done
  hs_stop
  rm -rf "$TMP/put-on"
}

phase_kv() { # PUT sync off, then GET and DEL on the same store restarted with sync_writes on
  local s n rate est data=$TMP/kv
  hs_start kv off "$data" || die "huststore did not start"
  if want put; then
    log "PUT, sync_writes off"
    for s in $SIZES; do
      measure "PUT, sync_writes off" "$s" "$(tg256 "$s" '>=0.7')" "" put.lua "$s" p 0 @POOL@
    done
  fi
  if want get || want del; then
    log "preloading (sync_writes off)"
    for s in $SIZES; do
      if want get; then
        preload_kv "g${s}_" "$s" 0 "$GET_KEYS"; GET_LOADED[$s]=$PRE_OK
      fi
      if want del; then
        # Enough keys for DUR at the durable PUT rate of 256 B (DEL is never slower), x1.5,
        # bounded by ROW_MAX_MB; the row stops early if they run out.
        rate=${PUT_ON_QPS[256]:-${PUT_ON_QPS[$s]:-30000}}
        est=$(awk -v r="$rate" -v d="$DUR_S" 'BEGIN{printf "%d", r * d * 1.5 + 1000}')
        n=$(( ROW_MAX_MB * 1048576 / s ))
        [ "$est" -le "$n" ] && n=$est
        [ "$n" -ge 1000 ] || n=1000
        preload_kv "d${s}_" "$s" 0 "$n"; DEL_KEYS[$s]=$n
      fi
    done
    log "restart with sync_writes on"
    hs_stop
    hs_start kv on "$data" || die "huststore did not start"
    for s in $SIZES; do
      if want get; then
        check_value "g${s}_0" "$s"; check_value "g${s}_$((GET_KEYS - 1))" "$s"
      fi
      if want del; then check_value "d${s}_$((DEL_KEYS[$s] - 1))" "$s"; fi
    done
    if want get; then
      log "GET"
      for s in $SIZES; do
        local tg=-
        { [ "$s" = 256 ] || [ "$s" = 65536 ]; } && tg='>=0.8'
        [ "${GET_LOADED[$s]}" -eq "$GET_KEYS" ] || EXTRA_NOTE="only ${GET_LOADED[$s]} of $GET_KEYS keys preloaded"
        measure "GET ($GET_KEYS keys)" "$s" "$tg" "" get.lua "g${s}_" "$GET_KEYS"
      done
    fi
    if want del; then
      log "DEL"
      for s in $SIZES; do
        EXTRA_NOTE="${DEL_KEYS[$s]} keys preloaded"
        measure "DEL, sync_writes on" "$s" "$(tg256 "$s" '>=0.3')" "$TMP/del.mark" \
          del.lua "d${s}_" "${DEL_KEYS[$s]}" "$THREADS" "$TMP/del.mark"
      done
    fi
  fi
  hs_stop
  rm -rf "$data"
}

mq_ready() { # ready messages of queue $1 (all priorities)
  curl -s --max-time 10 "$HS_URL/stat?queue=$1" |
    sed -n 's/.*"ready":\[\([0-9]*\),\([0-9]*\),\([0-9]*\)\].*/\1 \2 \3/p' | awk '{print $1+$2+$3}'
}

phase_mq() {
  local s code gcode need have why
  log "MQ (mq mode, 1 worker, sync_writes on)"
  if ! hs_start mq on "$TMP/mq"; then
    for s in $MQ_SIZES; do
      add_row na "MQ put, durable" "$s" "n/a (mq mode did not start)" "" "$(tg256 "$s" '>=0.3')" ""
      add_row na "MQ get, ack=true" "$s" "n/a (mq mode did not start)" "" "$(tg256 "$s" '>=0.3')" ""
    done
    return
  fi
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST --data-binary x "$HS_URL/put?queue=hb_probe")
  gcode=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$HS_URL/get?queue=hb_probe&worker=probe&ack=true")
  for s in $MQ_SIZES; do
    if [ "$code" = 200 ]; then
      measure "MQ put, durable" "$s" "$(tg256 "$s" '>=0.3')" "" mq-put.lua "$s" "q$s"
      MQ_PUT_QPS[$s]=$(qps_of "${R_HS[R_N-1]}")
    else
      add_row na "MQ put, durable" "$s" "n/a (mq answered $code)" "" "$(tg256 "$s" '>=0.3')" ""
      log "MQ put $(fmt_size "$s"): n/a (mq answered $code)"
    fi
  done
  for s in $MQ_SIZES; do
    if [ "$code" != 200 ] || [ "$gcode" != 200 ]; then
      why=$gcode; [ "$code" = 200 ] || why="$code to put"
      add_row na "MQ get, ack=true" "$s" "n/a (mq answered $why)" "" "$(tg256 "$s" '>=0.3')" ""
      log "MQ get $(fmt_size "$s"): n/a (mq answered $why)"
      continue
    fi
    # The get row drains what the put row left; top the queue up to about twice the durable
    # put rate for DUR (a get with ack is a write too, of the same weight).
    need=$(awk -v r="${MQ_PUT_QPS[$s]:-10000}" -v d="$DUR_S" -v cap=$((ROW_MAX_MB * 1048576 / s)) \
      'BEGIN{ n = (r > 0 ? r : 10000) * d * 2.5 + 1000; if (n > cap) n = cap; printf "%d", n }')
    have=$(mq_ready "q$s"); have=${have:-0}
    if [ "$have" -lt "$need" ]; then
      preload mq "q$s" "$s" 0 $((need - have))
      [ "$PRE_BAD" -eq 0 ] || warn "mq preload q$s: $PRE_BAD of $PRE_SENT puts not 200"
      have=$(mq_ready "q$s"); have=${have:-0}
    fi
    EXTRA_NOTE="$have messages queued"
    measure "MQ get, ack=true" "$s" "$(tg256 "$s" '>=0.3')" "$TMP/mqget.mark" \
      mq-get.lua "q$s" w "$TMP/mqget.mark"
  done
  hs_stop
  rm -rf "$TMP/mq"
}

phase_scale() {
  local k prev=0 data=$TMP/scale n cnt label first_label="" first_row=""
  local s=$SCALE_SIZE
  for k in $SCALE_KEYS; do
    label=$(fmt_count "$k")
    log "scale: preloading to $label keys (sync_writes off)"
    hs_start kv off "$data" || die "huststore did not start"
    preload_kv s_ "$s" "$prev" $((k - prev))
    hs_stop
    hs_start kv "$SCALE_SYNC" "$data" || die "huststore did not start"
    cnt=$(kv_count)
    check_value "s_$((k - 1))" "$s"
    [ "${cnt:-0}" -eq "$k" ] || EXTRA_NOTE="store holds ${cnt:-?} keys"
    measure "GET, $label keys in store" "$s" - "" get.lua s_ "$k"
    if [ -z "$first_row" ]; then first_row=$((R_N - 1)); first_label=$label
    else
      # Issue 13: GET keeps 0.9 of its rate up to 1M keys, 0.8 at 10M and beyond.
      local target='>=0.9'
      [ "$k" -lt 10000000 ] || target='>=0.8'
      add_row derived "GET, $label keys vs $first_label keys" "$s" "$first_row" "$((R_N - 1))" "$target" ""
    fi
    [ "${cnt:-0}" -eq "$k" ] || EXTRA_NOTE="store holds ${cnt:-?} keys"
    measure "PUT (overwrite), sync_writes $SCALE_SYNC, $label keys in store" "$s" - "" put.lua "$s" s_ "$k" @POOL@
    hs_stop
    prev=$k
  done
  rm -rf "$data"
}

# hold_conns PORT PATH: opens RSS_CONNS idle keep-alive connections, runs "$@"-less measurement
# through the globals: sets HELD (connections held) and RSS_BUSY (KiB) of the tree of PID $3.
hold_conns() {
  local port=$1 path=$2 pid=$3 i
  rm -f "$TMP/conns.ready" "$TMP/conns.stop"
  python3 "$HERE/idle-conns.py" "$port" "$RSS_CONNS" "$path" "$TMP/conns.ready" "$TMP/conns.stop" 90 \
    2>"$TMP/conns.err" &
  HELPER_PID=$!
  for ((i = 0; i < 1200; i++)); do
    [ -e "$TMP/conns.ready" ] && break
    kill -0 "$HELPER_PID" 2>/dev/null || break
    sleep 0.1
  done
  HELD=$(awk '{print $1}' "$TMP/conns.ready" 2>/dev/null); HELD=${HELD:-0}
  sleep 1
  RSS_BUSY=$(rss_kib "$pid")
  ESTAB=""
  command -v ss >/dev/null 2>&1 &&
    ESTAB=$(ss -Htn state established "( sport = :$port )" 2>/dev/null | wc -l)
  touch "$TMP/conns.stop"
  for ((i = 0; i < 200; i++)); do kill -0 "$HELPER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$HELPER_PID" 2>/dev/null
  wait "$HELPER_PID" 2>/dev/null
  HELPER_PID=""
  [ -s "$TMP/conns.err" ] && sed 's/^/    idle-conns: /' "$TMP/conns.err" >&2
  return 0
}

phase_rss() {
  local hs_idle ng_idle hs_busy ng_busy hs_held ng_held note
  log "RSS, idle and with $RSS_CONNS idle keep-alive connections"
  hs_start kv on "$TMP/rss" || die "huststore did not start"
  curl -s -o /dev/null --max-time 5 -X POST --data-binary "$(mkbody 256)" "$HS_URL/put?key=rss"
  curl -s -o /dev/null --max-time 5 "$HS_URL/get?key=rss"
  sleep 1
  hs_idle=$(rss_kib "$HS_PID"); ng_idle=$(rss_kib "$NG_PID")
  hold_conns "$HS_PORT" /status.html "$HS_PID"; hs_busy=$RSS_BUSY; hs_held=$HELD
  note="huststore held $hs_held${ESTAB:+ (ss: $ESTAB established)}"
  sleep 1
  hold_conns "$NG_PORT" /status.html "$NG_PID"; ng_busy=$RSS_BUSY; ng_held=$HELD
  note+=", nginx held $ng_held${ESTAB:+ (ss: $ESTAB established)}"
  hs_stop
  rm -rf "$TMP/rss"
  add_row rss "RSS idle, MiB (master + workers)" - "$hs_idle" "$ng_idle" - "after one PUT and one GET"
  add_row rss "RSS with $(fmt_count "$RSS_CONNS") idle keep-alive connections, MiB" - "$hs_busy" "$ng_busy" - "$note"
  add_row rssadd "RSS added by $(fmt_count "$RSS_CONNS") idle connections, MiB" - \
    "$((hs_busy - hs_idle))" "$((ng_busy - ng_idle))" '<40' ""
  log "RSS huststore idle $((hs_idle / 1024)) MiB, busy $((hs_busy / 1024)) MiB; nginx idle $((ng_idle / 1024)) MiB, busy $((ng_busy / 1024)) MiB"
}

# ---------------------------------------------------------------- report
report() {
  local i hs ng q p nq np ratio tg met a b p50 p999 np50 np999
  echo "# huststore HTTP benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "- command: \`$CMDLINE\`${ROWS:+ (rows: $ROWS)}"
  echo "- machine: $(uname -n), $(nproc) CPUs ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)), $(awk '/^MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo) memory, kernel $(uname -r)"
  echo "- disk of the temp folder ($TMP): $(df -hPT "$TMP" | awk 'NR==2{print $1" ("$2"), "$3" total, "$5" free, mounted on "$7}')"
  echo "- run time: $((SECONDS - T0)) s"
  echo "- huststore: $("$BIN" -v 2>&1 | head -1), $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "not a git checkout ($ROOT)")$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo ' with uncommitted changes'); 2 workers (mq mode: 1), map_size 8g, cache_size 64m"
  echo "- yardstick: nginx $("$NGINX_BIN" -v 2>&1 | sed 's/.*\///'), 2 workers, \`return 200\` with a body of the row's size (empty for PUT, DEL, MQ put)"
  echo "- load: \`wrk -t$THREADS -c$CONNS -d$DUR --latency\` on the same host against huststore, between two ${NG_HALF}s runs against nginx (the yardstick is their mean); the same Lua script and arguments against both servers"
  echo "- ratio = huststore / nginx in this run (RSS rows: huststore / nginx too, so lower is better there); p50, p99 and p99.9 from wrk's latency histogram (hb.lua's done()), nginx's the mean of its two runs; p99 / nginx p99: huststore's p99 over nginx's in the same row (issue 13's target: ≤ 3)"
  local bad
  bad=$(grep -cE '\[(alert|crit|emerg)\]|panick' "$TMP/huststore-error.log" 2>/dev/null)
  echo "- huststore's error logs of this run: ${bad:-0} alert/crit/emerg or panic lines$( [ "${bad:-0}" -eq 0 ] || printf ', first: `%s`' "$(grep -m1 -E '\[(alert|crit|emerg)\]|panick' "$TMP/huststore-error.log" | tr '`' "'")")"
  echo
  echo "| row | size | huststore | p50 | p99 | p99.9 | nginx | p50 | p99 | p99.9 | ratio | p99 / nginx p99 | target | note |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
  for ((i = 0; i < R_N; i++)); do
    hs=${R_HS[i]}; ng=${R_NG[i]}; tg=${R_TARGET[i]}
    case "${R_KIND[i]}" in
      wrk)
        read -r q p _ _ _ _ _ _ p50 p999 _ <<< "$hs"; read -r nq np _ _ _ _ _ _ np50 np999 _ <<< "$ng"
        ratio=$(awk -v a="$q" -v b="$nq" 'BEGIN{ if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a / b; else print "-" }')
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${R_NAME[i]}" "$(fmt_size "${R_SIZE[i]}")" \
          "$(awk -v x="$q" 'BEGIN{ if (x ~ /^[0-9.]+$/) printf "%.0f/s", x; else print x }')" \
          "$(fmt_ms "${p50:-}")" "$(fmt_ms "$p")" "$(fmt_ms "${p999:-}")" \
          "$(awk -v x="$nq" 'BEGIN{ if (x ~ /^[0-9.]+$/) printf "%.0f/s", x; else print x }')" \
          "$(fmt_ms "${np50:-}")" "$(fmt_ms "$np")" "$(fmt_ms "${np999:-}")" \
          "**$ratio**" "$(p99_ratio "$p" "$np")" "$(target_cell "$tg" "$ratio" ge)" "${R_NOTE[i]}" ;;
      na)
        printf '| %s | %s | n/a | - | - | - | - | - | - | - | %s | - | %s | %s |\n' "${R_NAME[i]}" "$(fmt_size "${R_SIZE[i]}")" \
          "$hs" "$(target_cell "$tg" - ge)" "${R_NOTE[i]}" ;;
      derived)
        # ratio of the two rows' ratios to their own yardsticks (same scripts, so the client
        # cost cancels out); the raw req/s ratio in the note
        read -r q _ <<< "${R_HS[ng]}"; read -r nq _ <<< "${R_NG[ng]}"
        read -r a _ <<< "${R_HS[hs]}"; read -r b _ <<< "${R_NG[hs]}"
        ratio=$(awk -v q="$q" -v nq="$nq" -v a="$a" -v b="$b" 'BEGIN{ if (q+0 > 0 && nq+0 > 0 && a+0 > 0 && b+0 > 0) printf "%.2f", (q / nq) / (a / b); else print "-" }')
        printf '| %s | %s | %s | - | - | - | %s | - | - | - | %s | - | %s | %s |\n' "${R_NAME[i]}" "$(fmt_size "${R_SIZE[i]}")" \
          "$(awk -v q="$q" -v a="$a" 'BEGIN{ if (q+0 > 0 && a+0 > 0) printf "%.2f× req/s", q / a; else print "-" }')" \
          "$(awk -v q="$nq" -v a="$b" 'BEGIN{ if (q+0 > 0 && a+0 > 0) printf "%.2f× req/s", q / a; else print "-" }')" \
          "**$ratio**" "$(target_cell "$tg" "$ratio" ge)" "ratio of the two rows' ratios to nginx" ;;
      rss|rssadd)
        ratio=$(awk -v a="$hs" -v b="$ng" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "-" }')
        a=$(awk -v x="$hs" 'BEGIN{ printf "%.1f", x / 1024 }')
        b=$(awk -v x="$ng" 'BEGIN{ printf "%.1f", x / 1024 }')
        met=$ratio
        [ "${R_KIND[i]}" = rssadd ] && tg=$(target_cell "$tg" "$a" lt) || tg=-
        printf '| %s | - | %s MiB | - | - | - | %s MiB | - | - | - | %s | - | %s | %s |\n' "${R_NAME[i]}" "$a" "$b" "$met" "$tg" "${R_NOTE[i]}" ;;
    esac
  done
  echo
  echo "Targets are issue 5's (ratios to nginx at 256 B unless the row says otherwise). wrk shares the"
  echo "host's $(nproc) CPUs with the server it measures (about one CPU for wrk), so absolute req/s swing"
  echo "with the box and its load; compare ratios taken in one run."
}

fmt_ms() { # fmt_ms MICROS -> "1.23 ms" ("-" when not a number)
  awk -v x="$1" 'BEGIN{ if (x ~ /^[0-9.]+$/) printf "%.2f ms", x / 1000; else print "-" }'
}

p99_ratio() { # p99_ratio HS_P99 NGINX_P99 (microseconds) -> "2.1×", bold past issue 13's 3×
  awk -v a="$1" -v b="$2" 'BEGIN{ if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) {
      r = a / b; if (r > 3) printf "**%.1f×**", r; else printf "%.1f×", r } else print "-" }'
}

target_cell() { # target_cell TARGET VALUE ge|lt -> "≥ 0.3 (met)" etc.
  local t=$1 v=$2
  [ "$t" != - ] || { echo -; return; }
  local th=${t#>=}; th=${th#<}
  local sign="≥"; [ "$3" = lt ] && sign="<"
  [[ "$v" =~ ^[0-9.]+$ ]] || { echo "$sign $th"; return; }
  if awk -v v="$v" -v t="$th" -v op="$3" 'BEGIN{ exit !((op == "ge") ? (v >= t) : (v < t)) }'; then
    echo "$sign $th (met)"
  else
    echo "$sign $th (**not met**)"
  fi
}

# ---------------------------------------------------------------- main
declare -A PUT_ON_QPS GET_LOADED DEL_KEYS MQ_PUT_QPS
EXTRA_NOTE=""
start_nginx
log "nginx yardstick on $NG_URL (pid $NG_PID); huststore binary $BIN; wrk -t$THREADS -c$CONNS -d$DUR"
want put && phase_put_durable
{ want put || want get || want del; } && phase_kv
want mq && phase_mq
want scale && phase_scale
want rss && phase_rss
log "done"
report
