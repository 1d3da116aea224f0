#!/usr/bin/env bash
# HTTP figures of the reference engine: one core for the engine, one for the load generator.
#
# Starts the release `gauntlet-engine` pinned to CPU $ENGINE_CPU (default 0) serving
# fixtures/models and drives `POST /v2/models/{model}/infer` with the one-row OIP body of
# benches/http/body.json from a generator pinned to CPU $LOAD_CPU (default 1), over loopback.
#
#   cargo build --release -p gauntlet-engine
#   engine/benches/http-bench.sh throughput [MODEL...]  # wrk -t1 -c64 for $DURATION (10s)
#   engine/benches/http-bench.sh latency [MODEL...]     # oha at a constant $RATE (10000/s)
#   engine/benches/http-bench.sh soak [MODEL]           # oha at $RATE for $DURATION (5m),
#                                                       # engine VmRSS every $SAMPLE (30s)
#
# Environment: DURATION, CONNECTIONS (64), RATE, SAMPLE, ENGINE_ARGS (extra engine flags, e.g.
# "--inject-latency 1ms"), ENGINE_BIN, CARGO_TARGET_DIR, RUST_LOG (engine log level; the
# engine's default, info, when unset), NICE (e.g. -10, as root: run the engine and the
# generator at that niceness, so that on a machine shared with other work, such as builds,
# they get most of their cores, as they would on a dedicated one; default 0).
#
# Besides the generator's figures, every run prints the engine's CPU time over the run (from
# /proc/PID/stat) and `req/cpu-s`, requests per second of engine CPU time: the engine's
# one-core capacity even when other work shares its core (on a busy machine the generator's
# req/s is limited by the CPU time the engine gets; req/cpu-s is not).
# Every run stops by itself: the generator runs for DURATION, then the engine gets SIGTERM.
set -euo pipefail

mode=${1:-throughput}
shift || true
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
bin=${ENGINE_BIN:-$target/release/gauntlet-engine}
connections=${CONNECTIONS:-64}
rate=${RATE:-10000}
sample=${SAMPLE:-30}
engine_cpu=${ENGINE_CPU:-0}
load_cpu=${LOAD_CPU:-1}
body=$here/http/body.json
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(ref-ensemble ref-linear)
case $mode in
  throughput) duration=${DURATION:-10s}; need=wrk ;;
  latency) duration=${DURATION:-10s}; need=oha ;;
  soak) duration=${DURATION:-5m}; need=oha; models=("${models[0]}") ;;
  *) echo "usage: $0 throughput|latency|soak [MODEL...]" >&2; exit 2 ;;
esac
command -v "$need" >/dev/null || {
  echo "$need not found (apt-get install wrk; cargo install oha --version 1.16.0 --locked)" >&2
  exit 2
}
[ -x "$bin" ] || { echo "$bin not found: cargo build --release -p gauntlet-engine" >&2; exit 2; }

out=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$out"' EXIT
# shellcheck disable=SC2086 # ENGINE_ARGS is a list of flags.
nice -n "${NICE:-0}" taskset -c "$engine_cpu" "$bin" --listen 127.0.0.1:0 --model-dir "$root/fixtures/models" \
  ${ENGINE_ARGS:-} >"$out/stdout" 2>"$out/stderr" &
pid=$!
for _ in $(seq 100); do
  grep -q '^listening on ' "$out/stdout" 2>/dev/null && break
  sleep 0.05
done
addr=$(awk '/^listening on /{print $3}' "$out/stdout")
[ -n "$addr" ] || { echo "engine did not start:" >&2; cat "$out/stderr" >&2; exit 1; }
tick=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
rss_kib() { awk '/^VmRSS/{print $2}' "/proc/$pid/status"; }
# requests, engine CPU ticks → "engine cpu Xs  N req/cpu-s  U us/req"
cpu_line() {
  awk -v n="$1" -v t="$2" -v hz="$tick" 'BEGIN {
    cpu = t / hz
    printf "engine cpu %.2fs  %.0f req/cpu-s  %.1f us/req", cpu, (cpu > 0 ? n / cpu : 0), (n > 0 ? cpu * 1e6 / n : 0)
  }'
}
oha_run() { # url → oha JSON in $out/oha.json
  nice -n "${NICE:-0}" taskset -c "$load_cpu" oha -z "$duration" -q "$rate" --latency-correction -c "$connections" \
    --no-tui --output-format json -m POST -D "$body" -H 'content-type: application/json' \
    "$1" >"$out/oha.json"
}
oha_line() { # model → one line of figures from $out/oha.json
  python3 - "$1" "$out/oha.json" <<'PY'
import json, sys
model, path = sys.argv[1], sys.argv[2]
d = json.load(open(path))
s, p = d["summary"], d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
ok = codes.get("200", 0)
other = {k: v for k, v in codes.items() if k != "200"}
ms = lambda x: "%.3fms" % (x * 1000) if x is not None else "-"
print("%-13s %9.1f req/s  p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  200: %d  other: %s  errors: %s"
      % (model, s["requestsPerSec"], ms(p["p50"]), ms(p["p90"]), ms(p["p99"]), ms(p["p99.9"]),
         ms(s["slowest"]), ok, other or "none", d.get("errorDistribution") or "none"))
PY
}

echo "engine $bin (pid $pid) on $addr, CPU $engine_cpu; $need on CPU $load_cpu; $(nproc) CPUs:$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
echo "engine args: ${ENGINE_ARGS:-none}; RUST_LOG=${RUST_LOG:-unset}; nice ${NICE:-0}; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for model in "${models[@]}"; do
  url="http://$addr/v2/models/$model/infer"
  c0=$(cpu_ticks)
  case $mode in
    throughput)
      nice -n "${NICE:-0}" taskset -c "$load_cpu" wrk -t1 -c"$connections" -d"$duration" --latency \
        -s "$here/http/post.lua" "$url" >"$out/wrk.txt"
      c1=$(cpu_ticks)
      requests=$(awk '/requests in/{print $1}' "$out/wrk.txt")
      awk -v m="$model" '
        /^Requests\/sec/ {rps = $2} $1 == "50%" {p50 = $2} $1 == "99%" {p99 = $2}
        /^non-2xx/ {split($0, a, /[:,]/); bad = a[2] + 0}
        END {printf "%-13s %9s req/s  p50 %8s  p99 %8s  non-2xx %d  ", m, rps, p50, p99, bad}' \
        "$out/wrk.txt"
      echo "$(cpu_line "$requests" $((c1 - c0)))"
      ;;
    latency)
      oha_run "$url"
      c1=$(cpu_ticks)
      requests=$(python3 -c 'import json,sys; print(sum(json.load(open(sys.argv[1]))["statusCodeDistribution"].values()))' "$out/oha.json")
      echo "$(oha_line "$model")  $(cpu_line "$requests" $((c1 - c0)))"
      ;;
    soak)
      echo "t=0s VmRSS $(rss_kib) KiB"
      oha_run "$url" &
      gen=$!
      start=$(date +%s)
      while kill -0 "$gen" 2>/dev/null; do
        for _ in $(seq "$sample"); do kill -0 "$gen" 2>/dev/null && sleep 1; done
        echo "t=$(( $(date +%s) - start ))s VmRSS $(rss_kib) KiB"
      done
      wait "$gen"
      c1=$(cpu_ticks)
      requests=$(python3 -c 'import json,sys; print(sum(json.load(open(sys.argv[1]))["statusCodeDistribution"].values()))' "$out/oha.json")
      echo "$(oha_line "$model")  $(cpu_line "$requests" $((c1 - c0)))"
      echo "end VmRSS $(rss_kib) KiB, VmHWM $(awk '/^VmHWM/{print $2}' "/proc/$pid/status") KiB"
      ;;
  esac
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
kill -TERM "$pid"
wait "$pid" || true
pid=
