#!/usr/bin/env bash
# Sluice benchmark harness: Sluice side by side with nginx, HAProxy and the bare upstream.
# See bench/README.md. Usage: bench/run.sh [options]   (bench/run.sh --help for the list)
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
ORIG_ARGS="$*"

# ---------------------------------------------------------------- options
CORES_PROXY=0          # CPUs for the proxy under test (taskset list: 0 / 0-3 / 0,2)
CORES_LOAD=1           # CPUs for the load generator and the upstream
WORKERS=""             # proxy workers/threads; default = number of CPUs in --cores-proxy
DURATION=10s           # per measured run
WARMUP=2s              # once per contender before round 1, not recorded
CONNECTIONS=64
ROUNDS=3               # ABAB... rounds; every contender runs once per round
ROUTES=10000           # route count for the sluice-10k scenario (and the top of the memory scale)
SWAPS=100              # route changes during each hot-swap run
PLUGIN_SWAPS=20        # Wasm plugin uploads during each plugin-swap run
H2_STREAMS=10          # concurrent streams per connection for the h2c (h2load) scenarios
LOW_CONNECTIONS=1      # connections for the low-load (added latency) runs
ONLY=""                # comma-separated scenario names to run (default: all available)
SKIP_INSTALL=0
SLUICE_BIN=""          # use this binary instead of building (e.g. to compare two builds)
UPSTREAM_BIN=""        # likewise for bench-upstream; with both given, no Rust toolchain is needed
SMOKE=0
OUT_NAME=latest        # report: RESULTS_DIR/OUT_NAME.md and .svg
RESULTS_DIR=           # default bench/results

usage() {
    sed -n '/^# ---- usage/,/^# ---- end/p' "$0" | sed '1d;$d;s/^# \{0,1\}//'
}
# ---- usage
# bench/run.sh [options]
#   --cores-proxy LIST   CPUs for the proxy under test          (default 0)
#   --cores-load LIST    CPUs for wrk/h2load and the upstream    (default 1)
#   --workers N          proxy workers/threads, all contenders   (default: CPUs in --cores-proxy)
#   --duration D         each measured run, wrk syntax (10s, 1m) (default 10s)
#   --warmup D           per contender before round 1            (default 2s)
#   --connections N      client connections                      (default 64)
#   --rounds N           alternating rounds                      (default 3)
#   --routes N           routes for the many-routes scenario     (default 10000)
#   --swaps N            route changes per hot-swap run          (default 100)
#   --plugin-swaps N     Wasm plugin uploads per plugin-swap run (default 20)
#   --h2-streams N       h2load streams per connection           (default 10)
#   --low-connections N  connections for the low-load latency runs (default 1)
#   --only a,b,...       run only these scenarios (names: --list; plus low-load, hot-swap,
#                        plugin-swap, memory-plugins)
#   --out NAME           write bench/results/NAME.md and NAME.svg (default latest)
#   --results-dir DIR    write the report and raw/ under DIR instead of bench/results
#   --list               print the scenario list and exit
#   --sluice-bin PATH    use a prebuilt sluice instead of building one
#   --upstream-bin PATH  use a prebuilt bench-upstream (with --sluice-bin: a machine without
#                        cargo can run the bench, e.g. a lent 16-core box with binaries carried over)
#   --skip-install       do not apt-get missing tools
#   --smoke              a few seconds in all: 1 round, 1s runs, 200 routes, 10 swaps
# ---- end

# Scenario list: name|protocol|status|description. status is "ok" or "todo:<why>"; todo
# scenarios are printed as skipped and listed in the report, never measured or faked.
SCENARIOS=(
    "direct|h1|ok|Direct to the upstream (physical limit)"
    "sluice|h1|ok|Sluice, plain proxy (1 route)"
    "nginx|h1|ok|nginx proxy_pass, upstream keepalive"
    "haproxy|h1|ok|HAProxy, http-reuse always"
    "sluice-10k|h1|ok|Sluice, ROUTES routes, traffic to one"
    "sluice-accesslog|h1|ok|Sluice plain, access log on (JSON lines to a file)"
    "sluice-accesslog-combined|h1|ok|Sluice plain, access log on (nginx combined format, to a file)"
    "sluice-bare|h1|ok|Sluice plain, metrics and access log off (their cost's baseline)"
    "sluice-noop-plugin|h1|ok|Sluice + no-op Wasm plugin (all phases)"
    "sluice-unique|h1|ok|Sluice plain, a distinct query string per request (baseline of the miss path)"
    "sluice-3plugins-miss|h1|ok|Sluice + key-auth, limit-count, proxy-cache (every request a miss)"
    "sluice-3plugins-hit|h1|ok|Sluice + key-auth, limit-count, proxy-cache (every request a hit)"
    "sluice-tls|h1|ok|Sluice, HTTPS keep-alive (wrk)"
    "nginx-tls|h1|ok|nginx, HTTPS keep-alive, same certificate"
    "sluice-tls-new|h1|ok|Sluice, HTTPS, a new connection (full TLS handshake) per request"
    "nginx-tls-new|h1|ok|nginx, HTTPS, a new connection (full TLS handshake) per request"
    "sluice-h2|h2|ok|Sluice, HTTP/2 over TLS (ALPN), h2load"
    "nginx-h2|h2|ok|nginx, HTTP/2 over TLS (ALPN), h2load"
    "sluice-h2c|h2c|ok|Sluice, h2c client side (h2load)"
    "nginx-h2c|h2c|ok|nginx http2 (h2c), h2load"
    "haproxy-h2c|h2c|ok|HAProxy proto h2 (h2c), h2load"
    "sluice-h2-upstream|h1|ok|Sluice, HTTP/2 (h2c, scheme grpc) to the upstream"
)
# Not scenarios but selectable with --only: low-load, hot-swap (route changes), plugin-swap (Wasm plugin
# uploads under load) and memory-plugins (memory scale with 3 Wasm plugins per route).

while [[ $# -gt 0 ]]; do
    case "$1" in
        --cores-proxy) CORES_PROXY=$2; shift 2 ;;
        --cores-load) CORES_LOAD=$2; shift 2 ;;
        --workers) WORKERS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --connections) CONNECTIONS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --routes) ROUTES=$2; shift 2 ;;
        --swaps) SWAPS=$2; shift 2 ;;
        --plugin-swaps) PLUGIN_SWAPS=$2; shift 2 ;;
        --out) OUT_NAME=$2; shift 2 ;;
        --results-dir) RESULTS_DIR=$2; shift 2 ;;
        --h2-streams) H2_STREAMS=$2; shift 2 ;;
        --low-connections) LOW_CONNECTIONS=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        --sluice-bin) SLUICE_BIN=$2; shift 2 ;;
        --upstream-bin) UPSTREAM_BIN=$2; shift 2 ;;
        --skip-install) SKIP_INSTALL=1; shift ;;
        --smoke) SMOKE=1; shift ;;
        --list) for s in "${SCENARIOS[@]}"; do IFS='|' read -r n p st d <<<"$s"; printf '%-22s %-4s %-5s %s\n' "$n" "$p" "${st%%:*}" "$d"; done; exit 0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
    esac
done
if [[ $SMOKE == 1 ]]; then
    DURATION=1s WARMUP=1s ROUNDS=1 ROUTES=200 SWAPS=10 PLUGIN_SWAPS=4
fi

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

cpu_count() { # taskset list -> number of CPUs
    python3 - "$1" <<'EOF'
import sys
n = 0
for part in sys.argv[1].split(","):
    a, _, b = part.partition("-")
    n += int(b or a) - int(a) + 1
print(n)
EOF
}
seconds() { # wrk duration (10, 10s, 2m, 1h) -> seconds
    local d=$1
    case "$d" in
        *s) echo "${d%s}" ;; *m) echo $(( ${d%m} * 60 )) ;; *h) echo $(( ${d%h} * 3600 )) ;; *) echo "$d" ;;
    esac
}

PROXY_CPUS=$(cpu_count "$CORES_PROXY")
LOAD_CPUS=$(cpu_count "$CORES_LOAD")
WORKERS=${WORKERS:-$PROXY_CPUS}
LOAD_THREADS=$LOAD_CPUS
(( CONNECTIONS >= LOAD_THREADS )) || die "--connections must be at least the number of load CPUs"
(( ROUTES >= 2 )) || die "--routes must be at least 2"
DURATION_S=$(seconds "$DURATION")

# ---------------------------------------------------------------- tools
install_tools() {
    local missing=()
    command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
    command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]] || missing+=(haproxy)
    command -v wrk >/dev/null || missing+=(wrk)
    command -v h2load >/dev/null || missing+=(nghttp2-client)
    command -v curl >/dev/null || missing+=(curl)
    command -v python3 >/dev/null || missing+=(python3)
    command -v taskset >/dev/null || missing+=(util-linux)
    command -v openssl >/dev/null || missing+=(openssl)
    [[ ${#missing[@]} -eq 0 ]] && return
    [[ $SKIP_INSTALL == 1 ]] && die "missing tools (${missing[*]}) and --skip-install given"
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    log "installing ${missing[*]} from the distribution (apt-get)"
    $sudo apt-get update -qq
    # nginx/haproxy packages try to start their system services; keep them off.
    DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}
install_tools
export PATH="$PATH:/usr/sbin:/sbin"

# ---------------------------------------------------------------- build
if [[ -z $SLUICE_BIN || -z $UPSTREAM_BIN ]]; then
    TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
fi
if [[ -z $SLUICE_BIN ]]; then
    log "building sluice and bench-upstream (release)"
    (cd "$ROOT" && cargo build --release -q -p sluice -p bench-upstream)
    SLUICE_BIN=$TARGET_DIR/release/sluice
    UPSTREAM_BIN=${UPSTREAM_BIN:-$TARGET_DIR/release/bench-upstream}
elif [[ -z $UPSTREAM_BIN ]]; then
    log "building bench-upstream (release); sluice: $SLUICE_BIN"
    (cd "$ROOT" && cargo build --release -q -p bench-upstream)
    UPSTREAM_BIN=$TARGET_DIR/release/bench-upstream
else
    log "prebuilt binaries: sluice $SLUICE_BIN, bench-upstream $UPSTREAM_BIN"
fi
[[ -x $UPSTREAM_BIN ]] || die "no bench-upstream binary at $UPSTREAM_BIN"
[[ -x $SLUICE_BIN ]] || die "no sluice binary at $SLUICE_BIN"
PLUGIN_DIR=$ROOT/target/plugins # where scripts/build-plugins.sh puts the components

# ---------------------------------------------------------------- processes
RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
chmod 711 "$RUN_DIR" # nginx workers drop privileges and must reach their temp dirs
RESULTS=${RESULTS_DIR:-$BENCH_DIR/results}
RAW=$RESULTS/raw
rm -rf "$RAW"
mkdir -p "$RAW"
PIDS=()

cleanup() {
    local status=$?
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$RUN_DIR"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_bg NAME CPUS CMD... : run CMD pinned to CPUS in the background; sets BG_PID.
start_bg() {
    local name=$1 cpus=$2; shift 2
    # Append mode, so the access-log run can truncate its log between runs.
    taskset -c "$cpus" "$@" >>"$RUN_DIR/$name.out" 2>>"$RUN_DIR/$name.err" &
    BG_PID=$!
    PIDS+=("$BG_PID")
}

wait_http() { # URL [NAME PID]: wait up to 20 s for a 200; fail early if process PID died
    local url=$1 name=${2:-} pid=${3:-} got
    for _ in $(seq 200); do
        got=$(curl -sk -o /dev/null -w '%{http_code}' "$url" 2>/dev/null || true)
        [[ $got == 200 ]] && return 0
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            die "$name exited: $(tail -5 "$RUN_DIR/$name.err")"
        fi
        sleep 0.1
    done
    die "$url did not answer 200 (last: $got)"
}

# The process and its children (nginx master + workers); the others are one process.
proc_tree() { echo "$1"; pgrep -P "$1" 2>/dev/null || true; }
cpu_ticks() { # utime+stime of the process tree, in clock ticks
    local t=0 p v
    for p in $(proc_tree "$1"); do
        v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || continue
        t=$(( t + ${v:-0} ))
    done
    echo "$t"
}
status_kb() { # FIELD PID: sum of /proc/PID/status FIELD (kB) over the process tree
    local t=0 p v
    for p in $(proc_tree "$2"); do
        v=$(awk -v f="$1:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null) || continue
        t=$(( t + ${v:-0} ))
    done
    echo "$t"
}
CLK_TCK=$(getconf CLK_TCK)

# Free high ports, handed out by take_port.
read -r -a PORTS <<<"$(python3 "$BENCH_DIR/lib/admin.py" free-ports 96)"
take_port() { # VAR: set VAR to the next free port
    (( ${#PORTS[@]} > 0 )) || die "out of free ports"
    printf -v "$1" '%s' "${PORTS[0]}"
    PORTS=("${PORTS[@]:1}")
}
ADMIN_KEY=bench-$RANDOM$RANDOM

# Every scenario gets its own proxy process (so CPU and peak RSS are its own): PID[scenario],
# URL[scenario]; Sluice instances also ADMIN[scenario] and PORT[scenario].
declare -A PID URL ADMIN PORT TLS_PORT HDR UNIQ
PID[direct]="" # no proxy
# HDR[scenario]: one extra request header for the load generator; UNIQ[scenario]=1: a distinct query
# string per request (bench/lib/report.lua), so a URI-keyed cache misses every time.

take_port P_UP
log "upstream: 127.0.0.1:$P_UP, $LOAD_THREADS thread(s) on CPUs $CORES_LOAD"
start_bg upstream "$CORES_LOAD" "$UPSTREAM_BIN" --listen "127.0.0.1:$P_UP" --threads "$LOAD_THREADS"
UPSTREAM_PID=$BG_PID
wait_http "http://127.0.0.1:$P_UP/" upstream "$UPSTREAM_PID"
URL[direct]="http://127.0.0.1:$P_UP/bench"

# start_sluice NAME LOG_LEVEL [ACCESS_LOG [METRICS [FORMAT]]]: a fresh instance with an empty store, on
# free ports; the access log is off unless ACCESS_LOG names a file (in FORMAT, default json); metrics are
# on unless METRICS is `off`.
start_sluice() {
    local name=$1 level=$2 access=${3:-off} metrics_on=${4:-on} format=${5:-json} port admin tls metrics
    take_port port; take_port admin; take_port tls; take_port metrics
    [[ $metrics_on == off ]] && metrics=off || metrics="127.0.0.1:$metrics"
    log "$name: sluice on 127.0.0.1:$port, $WORKERS worker(s) on CPUs $CORES_PROXY, log level $level, access log $access, metrics $metrics"
    start_bg "$name" "$CORES_PROXY" "$SLUICE_BIN" serve --data-dir "$RUN_DIR/$name-data" \
        --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
        --tls-listen "127.0.0.1:$tls" --metrics-listen "$metrics" \
        --admin-key "$ADMIN_KEY" --workers "$WORKERS" --log-level "$level" --access-log "$access" \
        --access-log-format "$format"
    PID[$name]=$BG_PID
    PORT[$name]=$port
    TLS_PORT[$name]=$tls
    ADMIN[$name]="127.0.0.1:$admin"
    for _ in $(seq 200); do
        curl -s -o /dev/null "http://127.0.0.1:$admin/" 2>/dev/null && return 0
        kill -0 "$BG_PID" 2>/dev/null || die "$name exited: $(tail -5 "$RUN_DIR/$name.err")"
        sleep 0.1
    done
    die "$name admin API did not come up"
}
admin_put() { # NAME PATH JSON
    curl -fsS -o /dev/null -X PUT "http://${ADMIN[$1]}$2" -H "X-API-KEY: $ADMIN_KEY" -d "$3" ||
        die "admin PUT $2 on $1 failed"
}
upstream_json() { echo "{\"type\":\"roundrobin\",\"nodes\":{\"127.0.0.1:$P_UP\":1},\"keepalive_pool\":{\"size\":320}}"; }
# Plain config: two equivalent upstream objects (the hot swap alternates them) and one route.
start_sluice_plain() { # NAME LOG_LEVEL [ACCESS_LOG [METRICS [FORMAT]]]
    local name=$1 id
    start_sluice "$name" "$2" "${3:-off}" "${4:-on}" "${5:-json}"
    for id in bench-a bench-b; do
        admin_put "$name" "/apisix/admin/upstreams/$id" "$(upstream_json)"
    done
    admin_put "$name" /apisix/admin/routes/1 '{"uri":"/*","upstream_id":"bench-a"}'
    URL[$name]="http://127.0.0.1:${PORT[$name]}/bench"
    wait_http "${URL[$name]}" "$name" "${PID[$name]}"
}

want() { # is scenario $1 selected by --only?
    [[ -z $ONLY ]] && return 0
    [[ ",$ONLY," == *",$1,"* ]]
}
want_any() { local s; for s in "$@"; do want "$s" && return 0; done; return 1; }

# Wasm plugins (noop: every phase, does nothing; add-header: sets a request header), built by
# scripts/build-plugins.sh when missing.
if want_any sluice-noop-plugin plugin-swap; then
    if [[ ! -f $PLUGIN_DIR/noop.wasm || ! -f $PLUGIN_DIR/add-header.wasm ]]; then
        log "building the Wasm plugins (scripts/build-plugins.sh, log: raw/build-plugins.log)"
        "$ROOT/scripts/build-plugins.sh" >"$RAW/build-plugins.log" 2>&1 ||
            die "building the plugins failed: $(tail -5 "$RAW/build-plugins.log")"
    fi
fi
plugin_upload() { # NAME PLUGIN FILE: upload a Wasm component as plugin PLUGIN to instance NAME
    curl -fsS -o /dev/null -X PUT "http://${ADMIN[$1]}/apisix/admin/wasm_plugins/$2" \
        -H "X-API-KEY: $ADMIN_KEY" -H 'Content-Type: application/wasm' --data-binary "@$3" ||
        die "uploading plugin $2 to $1 failed"
}
# One upstream and one route /* with one Wasm plugin enabled (CONFIG: its JSON config).
start_sluice_plugin() { # NAME PLUGIN FILE CONFIG
    local name=$1 plugin=$2 file=$3 conf=$4
    start_sluice "$name" warn
    plugin_upload "$name" "$plugin" "$file"
    admin_put "$name" /apisix/admin/upstreams/bench-a "$(upstream_json)"
    admin_put "$name" /apisix/admin/routes/1 \
        "{\"uri\":\"/*\",\"upstream_id\":\"bench-a\",\"plugins\":{\"$plugin\":$conf}}"
    URL[$name]="http://127.0.0.1:${PORT[$name]}/bench"
    wait_http "${URL[$name]}" "$name" "${PID[$name]}"
}

# Built-in plugins (inside the binary, no upload): key-auth with one consumer, limit-count far above
# the load, proxy-cache with its defaults (key $host$request_uri, 300 s TTL, memory).
start_sluice_builtins() { # NAME
    local name=$1
    start_sluice "$name" warn
    admin_put "$name" /apisix/admin/upstreams/bench-a "$(upstream_json)"
    admin_put "$name" /apisix/admin/consumers/bench '{"username":"bench","plugins":{"key-auth":{"key":"bench-key"}}}'
    admin_put "$name" /apisix/admin/routes/1 '{"uri":"/*","upstream_id":"bench-a","plugins":{"key-auth":{},"limit-count":{"count":1000000000,"time_window":60,"rejected_code":429},"proxy-cache":{}}}'
    HDR[$name]="apikey: bench-key"
    URL[$name]="http://127.0.0.1:${PORT[$name]}/bench"
    curl -fsS -o /dev/null -H "${HDR[$name]}" "${URL[$name]}" || die "$name: the plugin route does not answer"
}

# HTTPS: one self-signed ECDSA P-256 certificate for "localhost", served by Sluice (an `ssls` object) and
# nginx alike; the load generators connect to https://localhost:PORT so both see the same SNI.
# Made on every run (nginx's config names it even for its plain listeners).
CERT=$RUN_DIR/bench-cert.pem KEY=$RUN_DIR/bench-key.pem
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$KEY" -out "$CERT" >"$RAW/openssl.log" 2>&1 || die "openssl: $(tail -3 "$RAW/openssl.log")"
chmod 644 "$KEY" # nginx workers read it after dropping privileges
start_sluice_tls() { # NAME: plain route, plus the certificate, URL on the HTTPS listener
    local name=$1
    start_sluice_plain "$name" warn
    admin_put "$name" /apisix/admin/ssls/1 "$(python3 -c 'import json,sys; print(json.dumps({"cert": open(sys.argv[1]).read(), "key": open(sys.argv[2]).read(), "snis": ["localhost"]}))' "$CERT" "$KEY")"
    URL[$name]="https://localhost:${TLS_PORT[$name]}/bench"
    wait_http "${URL[$name]}" "$name" "${PID[$name]}"
}
# HTTP/2 to the upstream: scheme grpc (h2c with prior knowledge), one multiplexed connection.
start_sluice_h2_upstream() { # NAME
    local name=$1
    start_sluice "$name" warn
    admin_put "$name" /apisix/admin/routes/1 "{\"uri\":\"/*\",\"upstream\":{\"scheme\":\"grpc\",\"type\":\"roundrobin\",\"nodes\":{\"127.0.0.1:$P_UP\":1}}}"
    URL[$name]="http://127.0.0.1:${PORT[$name]}/bench"
    wait_http "${URL[$name]}" "$name" "${PID[$name]}"
}

# The plain instance also takes the hot swap and the low-load runs.
if want_any sluice hot-swap; then start_sluice_plain sluice warn; fi
if want sluice-unique; then start_sluice_plain sluice-unique warn; UNIQ[sluice-unique]=1; fi
if want sluice-3plugins-miss; then start_sluice_builtins sluice-3plugins-miss; UNIQ[sluice-3plugins-miss]=1; fi
if want sluice-3plugins-hit; then start_sluice_builtins sluice-3plugins-hit; fi
if want sluice-h2c; then start_sluice_plain sluice-h2c warn; fi
if want sluice-tls; then start_sluice_tls sluice-tls; fi
if want sluice-tls-new; then start_sluice_tls sluice-tls-new; HDR[sluice-tls-new]="Connection: close"; fi
if want sluice-h2; then start_sluice_tls sluice-h2; fi
if want sluice-h2-upstream; then start_sluice_h2_upstream sluice-h2-upstream; fi
if want sluice-accesslog; then start_sluice_plain sluice-accesslog warn "$RUN_DIR/sluice-accesslog.access.log"; fi
if want sluice-accesslog-combined; then
    start_sluice_plain sluice-accesslog-combined warn "$RUN_DIR/sluice-accesslog-combined.access.log" on combined
fi
if want sluice-bare; then start_sluice_plain sluice-bare warn off off; fi
if want sluice-noop-plugin; then
    start_sluice_plugin sluice-noop-plugin noop "$PLUGIN_DIR/noop.wasm" '{}'
fi
# The plugin-swap instance: plugin "swap" starts as noop; both noop and add-header take this config.
if want plugin-swap; then
    start_sluice_plugin sluice-plugin-swap swap "$PLUGIN_DIR/noop.wasm" '{"name":"x-bench","value":"1"}'
fi

# grow_routes NAME OUT.jsonl TOP [--plugins]: adds routes to instance NAME in steps 1, 100, 1,000, ...
# up to TOP, writing its RSS after each step (and before the first) to OUT.jsonl.
grow_routes() {
    local name=$1 out=$2 top=$3 plugins=${4:-} have=0 n uri t0
    sleep 1
    printf '{"routes":0,"rss_kb":%d,"hwm_kb":%d}\n' "$(status_kb VmRSS "${PID[$name]}")" \
        "$(status_kb VmHWM "${PID[$name]}")" >>"$out"
    for n in 1 100 1000 10000 100000; do
        (( n <= top )) || n=$top
        (( n > have )) || break
        t0=$SECONDS
        python3 "$BENCH_DIR/lib/admin.py" routes --admin "${ADMIN[$name]}" --key "$ADMIN_KEY" \
            --upstream-port "$P_UP" --from "$have" --to "$n" $plugins || die "loading routes failed"
        # Settle: the newest route answers through the proxy.
        if (( (n - 1) % 2 == 0 )); then uri="/bench/e$((n - 1))"; else uri="/bench/p$((n - 1))/x"; fi
        wait_http "http://127.0.0.1:${PORT[$name]}$uri" "$name" "${PID[$name]}"
        sleep 1
        printf '{"routes":%d,"rss_kb":%d,"hwm_kb":%d,"load_s":%d}\n' "$n" \
            "$(status_kb VmRSS "${PID[$name]}")" "$(status_kb VmHWM "${PID[$name]}")" \
            $(( SECONDS - t0 )) >>"$out"
        log "  $n routes: RSS $(( $(status_kb VmRSS "${PID[$name]}") / 1024 )) MiB ($(( SECONDS - t0 )) s)"
        have=$n
    done
}

# Memory scale on a fresh instance, growing to ROUTES routes; that instance is sluice-10k.
memory_scale() {
    local name=sluice-10k target uri
    start_sluice "$name" warn
    log "$name: memory scale while loading $ROUTES routes"
    grow_routes "$name" "$RAW/memory.jsonl" "$ROUTES"
    target=$(( (ROUTES * 3 / 4) | 1 ))  # an odd id: a prefix route deep in the trie
    (( target < ROUTES )) || target=$(( ROUTES - 1 ))
    if (( target % 2 == 1 )); then uri="/bench/p$target/item"; else uri="/bench/e$target"; fi
    URL[$name]="http://127.0.0.1:${PORT[$name]}$uri"
    wait_http "${URL[$name]}" "$name" "${PID[$name]}"
}
if want sluice-10k; then memory_scale; fi
# The same growth, to 1,000 routes at most, each route with three built-in Wasm plugins configured its own
# way (admin.py --plugins): what a route costs once plugins are on it. Its own instance, stopped after.
if want memory-plugins; then
    start_sluice sluice-mem-plugins warn
    log "sluice-mem-plugins: memory scale with 3 Wasm plugins per route"
    grow_routes sluice-mem-plugins "$RAW/memory-plugins.jsonl" $(( ROUTES < 1000 ? ROUTES : 1000 )) --plugins
    kill -TERM "${PID[sluice-mem-plugins]}" 2>/dev/null || true
fi

render() { # TEMPLATE OUT KEY=VALUE...
    local tmpl=$1 out=$2 kv sed_args=(); shift 2
    for kv in "$@"; do sed_args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
    sed "${sed_args[@]}" "$tmpl" >"$out"
    ! grep -q '@[A-Z_0-9]*@' "$out" || die "unfilled placeholder in $out"
}

# nginx and HAProxy: one process per scenario. Each nginx config has every listener (HTTP/1.1, h2c,
# HTTPS); the scenario uses the one its KIND names: h1, h2c or tls (HTTPS, HTTP/1.1 or h2 by ALPN).
start_nginx() { # NAME KIND
    local name=$1 kind=$2 dir="$RUN_DIR/$1" h1 h2c tls
    take_port h1; take_port h2c; take_port tls
    mkdir -p "$dir"
    render "$BENCH_DIR/templates/nginx.conf.tmpl" "$dir/nginx.conf" \
        WORKERS="$WORKERS" DIR="$dir" UPSTREAM_PORT="$P_UP" PORT_H1="$h1" PORT_H2C="$h2c" \
        PORT_TLS="$tls" CERT="$CERT" KEY="$KEY"
    log "$name: nginx on 127.0.0.1:$h1 (h2c $h2c, https $tls), $WORKERS worker(s) on CPUs $CORES_PROXY"
    start_bg "$name" "$CORES_PROXY" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" -g 'daemon off;'
    PID[$name]=$BG_PID
    case $kind in
        h1) URL[$name]="http://127.0.0.1:$h1/bench" ;;
        h2c) URL[$name]="http://127.0.0.1:$h2c/bench" ;;
        tls) URL[$name]="https://localhost:$tls/bench" ;;
    esac
    # curl speaks HTTP/1.1 here: an h2c scenario is checked on the same process's HTTP/1.1 listener.
    if [[ $kind == tls ]]; then
        wait_http "${URL[$name]}" "$name" "$BG_PID"
    else
        wait_http "http://127.0.0.1:$h1/bench" "$name" "$BG_PID"
    fi
}
start_haproxy() { # NAME PROTO
    local name=$1 proto=$2 h1 h2c
    take_port h1; take_port h2c
    render "$BENCH_DIR/templates/haproxy.cfg.tmpl" "$RUN_DIR/$name.cfg" \
        WORKERS="$WORKERS" UPSTREAM_PORT="$P_UP" PORT_H1="$h1" PORT_H2C="$h2c"
    log "$name: haproxy on 127.0.0.1:$h1 (h2c $h2c), $WORKERS thread(s) on CPUs $CORES_PROXY"
    start_bg "$name" "$CORES_PROXY" haproxy -db -f "$RUN_DIR/$name.cfg"
    PID[$name]=$BG_PID
    if [[ $proto == h1 ]]; then URL[$name]="http://127.0.0.1:$h1/bench"; else URL[$name]="http://127.0.0.1:$h2c/bench"; fi
    wait_http "http://127.0.0.1:$h1/bench" "$name" "$BG_PID"
}
if want nginx; then start_nginx nginx h1; fi
if want nginx-h2c; then start_nginx nginx-h2c h2c; fi
if want nginx-tls; then start_nginx nginx-tls tls; fi
if want nginx-tls-new; then start_nginx nginx-tls-new tls; HDR[nginx-tls-new]="Connection: close"; fi
if want nginx-h2; then start_nginx nginx-h2 tls; fi
if want haproxy; then start_haproxy haproxy h1; fi
if want haproxy-h2c; then start_haproxy haproxy-h2c h2c; fi

# ---------------------------------------------------------------- measuring
reset_peak() { # make VmHWM restart from the current RSS, so each run reports its own peak
    local p
    for p in $(proc_tree "$1"); do echo 5 >"/proc/$p/clear_refs" 2>/dev/null || true; done
}

# measure SCENARIO PROTO LABEL FILE [CONNECTIONS]: one load run; appends a JSON line to runs.jsonl.
measure() {
    local sc=$1 proto=$2 label=$3 out=$4 conns=${5:-$CONNECTIONS} pid=${PID[$1]} c0 c1 u0 u1 rc=0
    local threads=$(( LOAD_THREADS < conns ? LOAD_THREADS : conns ))
    local hdr=() ; [[ -n ${HDR[$sc]:-} ]] && hdr=(-H "${HDR[$sc]}")
    c0=0 c1=0
    if [[ -n $pid ]]; then reset_peak "$pid"; c0=$(cpu_ticks "$pid"); fi
    u0=$(cpu_ticks "$UPSTREAM_PID")
    if [[ $proto == h1 ]]; then
        BENCH_UNIQUE_QUERY=${UNIQ[$sc]:-0} timeout $(( DURATION_S + 60 )) taskset -c "$CORES_LOAD" \
            wrk -t"$threads" -c"$conns" "${hdr[@]}" \
            -d"$DURATION" --latency -s "$BENCH_DIR/lib/report.lua" "${URL[$sc]}" >"$out" 2>&1 || rc=$?
    else
        timeout $(( DURATION_S + 60 )) taskset -c "$CORES_LOAD" h2load -t"$threads" -c"$conns" \
            -m"$H2_STREAMS" -D"$DURATION_S" "${URL[$sc]}" >"$out" 2>&1 || rc=$?
    fi
    [[ -n $pid ]] && c1=$(cpu_ticks "$pid")
    u1=$(cpu_ticks "$UPSTREAM_PID")
    printf '{"scenario":"%s","proto":"%s","label":"%s","raw":"%s","rc":%d,"proxy_cpu_ticks":%s,"upstream_cpu_ticks":%d,"clk_tck":%d,"proxy_hwm_kb":%s,"proxy_rss_kb":%s}\n' \
        "$sc" "$proto" "$label" "$(basename "$out")" "$rc" \
        "$([[ -n $pid ]] && echo $(( c1 - c0 )) || echo null)" $(( u1 - u0 )) "$CLK_TCK" \
        "$([[ -n $pid ]] && status_kb VmHWM "$pid" || echo null)" \
        "$([[ -n $pid ]] && status_kb VmRSS "$pid" || echo null)" >>"$RAW/runs.jsonl"
    if [[ $sc == sluice-accesslog* ]]; then : >"$RUN_DIR/$sc.access.log"; fi # bound the log's disk use
    [[ $rc == 0 ]] || log "  warning: $sc load generator exited $rc (see raw/$(basename "$out"))"
}

ACTIVE=()
for s in "${SCENARIOS[@]}"; do
    IFS='|' read -r name proto st desc <<<"$s"
    want "$name" || continue
    if [[ $st != ok ]]; then
        log "skip $name: not available yet (${st#todo:})"
        continue
    fi
    ACTIVE+=("$name|$proto")
done
[[ ${#ACTIVE[@]} -gt 0 ]] || want_any hot-swap plugin-swap memory-plugins || die "no scenario selected (see --list)"

log "warm-up: $WARMUP per contender"
for a in "${ACTIVE[@]}"; do
    IFS='|' read -r name proto <<<"$a"
    if [[ $proto == h1 ]]; then
        hdr=(); [[ -n ${HDR[$name]:-} ]] && hdr=(-H "${HDR[$name]}")
        taskset -c "$CORES_LOAD" wrk -t"$LOAD_THREADS" -c"$CONNECTIONS" "${hdr[@]}" -d"$WARMUP" "${URL[$name]}" >/dev/null 2>&1 || true
    else
        taskset -c "$CORES_LOAD" h2load -t"$LOAD_THREADS" -c"$CONNECTIONS" -m"$H2_STREAMS" \
            -D"$(seconds "$WARMUP")" "${URL[$name]}" >/dev/null 2>&1 || true
    fi
done

# Alternate: every round runs every contender once; the order rotates by one each round so
# no contender always follows the same neighbour.
n=${#ACTIVE[@]}
for (( r = 1; r <= ROUNDS; r++ )); do
    for (( i = 0; i < n; i++ )); do
        IFS='|' read -r name proto <<<"${ACTIVE[$(( (i + r - 1) % n ))]}"
        log "round $r/$ROUNDS: $name ($DURATION)"
        measure "$name" "$proto" main "$RAW/$name.r$r.txt"
    done
done

# ---------------------------------------------------------------- low load
# Added latency well below saturation: LOW_CONNECTIONS closed-loop connections (1 = one request
# in flight at a time), alternating direct / Sluice / nginx / HAProxy.
LOW=()
for name in direct sluice nginx haproxy; do want "$name" && LOW+=("$name"); done
if want low-load && [[ ${#LOW[@]} -gt 0 ]]; then
    for (( r = 1; r <= ROUNDS; r++ )); do
        for (( i = 0; i < ${#LOW[@]}; i++ )); do
            name=${LOW[$(( (i + r - 1) % ${#LOW[@]} ))]}
            log "low load round $r/$ROUNDS: $name ($LOW_CONNECTIONS connection(s), $DURATION)"
            measure "$name" h1 lowload "$RAW/lowload-$name.r$r.txt" "$LOW_CONNECTIONS"
        done
    done
fi

# ---------------------------------------------------------------- hot swap
# Against the plain Sluice: baseline and swap runs alternate; during a swap run the route is
# re-pointed between two equivalent upstream objects SWAPS times, spread over the run.
hot_swap() {
    local r swap_pid
    for (( r = 1; r <= ROUNDS; r++ )); do
        log "hot swap round $r/$ROUNDS: baseline"
        measure sluice h1 swap-baseline "$RAW/hotswap-baseline.r$r.txt"
        log "hot swap round $r/$ROUNDS: $SWAPS route changes under load"
        taskset -c "$CORES_LOAD" python3 "$BENCH_DIR/lib/admin.py" swap --admin "${ADMIN[sluice]}" \
            --key "$ADMIN_KEY" --route-id 1 --uri '/*' --upstreams bench-b,bench-a --count "$SWAPS" \
            --over "$(python3 -c "print(max($DURATION_S - 1, 0.5) * 0.9)")" \
            >"$RAW/hotswap-admin.r$r.json" 2>"$RAW/hotswap-admin.r$r.err" &
        swap_pid=$!
        PIDS+=("$swap_pid")
        measure sluice h1 swap-routes "$RAW/hotswap-routes.r$r.txt"
        wait "$swap_pid" || log "  warning: swap client failed (raw/hotswap-admin.r$r.err)"
    done
}
if want hot-swap; then hot_swap; fi

# Plugin hot swap: on its own instance (route /* with plugin "swap"), baseline runs alternate
# with runs during which "swap" is re-uploaded PLUGIN_SWAPS times, alternately add-header and
# noop (each upload a real change), spread over the run.
plugin_swap() {
    local r swap_pid name=sluice-plugin-swap
    taskset -c "$CORES_LOAD" wrk -t"$LOAD_THREADS" -c"$CONNECTIONS" -d"$WARMUP" "${URL[$name]}" >/dev/null 2>&1 || true
    for (( r = 1; r <= ROUNDS; r++ )); do
        log "plugin swap round $r/$ROUNDS: baseline"
        measure "$name" h1 plugin-baseline "$RAW/pluginswap-baseline.r$r.txt"
        log "plugin swap round $r/$ROUNDS: $PLUGIN_SWAPS uploads of plugin \"swap\" under load"
        taskset -c "$CORES_LOAD" python3 "$BENCH_DIR/lib/admin.py" plugin-swap --admin "${ADMIN[$name]}" \
            --key "$ADMIN_KEY" --name swap --files "$PLUGIN_DIR/add-header.wasm,$PLUGIN_DIR/noop.wasm" \
            --count "$PLUGIN_SWAPS" --over "$(python3 -c "print(max($DURATION_S - 1, 0.5) * 0.9)")" \
            >"$RAW/pluginswap-admin.r$r.json" 2>"$RAW/pluginswap-admin.r$r.err" &
        swap_pid=$!
        PIDS+=("$swap_pid")
        measure "$name" h1 plugin-swap "$RAW/pluginswap-uploads.r$r.txt"
        wait "$swap_pid" || log "  warning: plugin upload client failed (raw/pluginswap-admin.r$r.err)"
    done
}
if want plugin-swap; then plugin_swap; fi

# ---------------------------------------------------------------- report
{
    printf '{"date":"%s","command":"bench/run.sh %s",' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$ORIG_ARGS"
    printf '"cpu_model":"%s","nproc":%d,"kernel":"%s",' \
        "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)" "$(nproc --all)" "$(uname -r)"
    printf '"cores_proxy":"%s","cores_load":"%s","workers":%d,"load_threads":%d,' \
        "$CORES_PROXY" "$CORES_LOAD" "$WORKERS" "$LOAD_THREADS"
    printf '"low_connections":%d,' "$LOW_CONNECTIONS"
    printf '"duration":"%s","connections":%d,"rounds":%d,"routes":%d,"swaps":%d,"plugin_swaps":%d,"h2_streams":%d,' \
        "$DURATION" "$CONNECTIONS" "$ROUNDS" "$ROUTES" "$SWAPS" "$PLUGIN_SWAPS" "$H2_STREAMS"
    printf '"sluice_rev":"%s","nginx":"%s","haproxy":"%s","wrk":"%s","h2load":"%s","load_avg":"%s",' \
        "$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null)$(cd "$ROOT" && git diff --quiet HEAD -- gateway 2>/dev/null || echo '+dirty')" \
        "$(nginx -v 2>&1 | sed 's/.*\///')" "$(haproxy -v 2>/dev/null | awk 'NR==1 {print $3}')" \
        "$(wrk -v 2>&1 | awk 'NR==1 {print $2}')" "$(h2load --version 2>/dev/null | awk '{print $NF}')" \
        "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf '"scenarios":['
    first=1
    for s in "${SCENARIOS[@]}"; do
        IFS='|' read -r name proto st desc <<<"$s"
        desc=${desc//ROUTES/$ROUTES}
        [[ $first == 1 ]] || printf ','
        first=0
        printf '{"name":"%s","proto":"%s","status":"%s","desc":"%s","selected":%s}' \
            "$name" "$proto" "$st" "$desc" "$(want "$name" && echo true || echo false)"
    done
    printf ']}\n'
} >"$RAW/meta.json"

python3 "$BENCH_DIR/lib/report.py" "$RAW" "$RESULTS/$OUT_NAME.md" "$RESULTS/$OUT_NAME.svg"
log "wrote $RESULTS/$OUT_NAME.md and $RESULTS/$OUT_NAME.svg (raw outputs: $RAW)"
