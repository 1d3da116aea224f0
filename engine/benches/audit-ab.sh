#!/usr/bin/env bash
# Predict-path latency with the audit log and the controls on (B) against off (A), in one run:
# two release `gauntlet-engine` processes serving fixtures/models on loopback — A as shipped,
# B with `[audit]` (every prediction a record, group commit every flush-interval, four eyes on)
# — and `gauntlet load` at $RATE (10000/s) for $DURATION (10s) against each in turn, A B A B …
# $ROUNDS (8) times, so the host's noise falls on both alike. Prints each run's line, the p99
# and the engine's CPU time per request of every run, and the median p99 of each side with
# their ratio; the target (issue 13) is B's p99 within 10 % of A's. A single round's p99
# moves by ±50 % with the host's stalls here, so the medians are the figure.
#
#   cargo build --release -p gauntlet -p gauntlet-engine
#   engine/benches/audit-ab.sh
#
# Environment: RATE, DURATION, ROUNDS, CARGO_TARGET_DIR. Both engines stop on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=../../ci/ab.sh
source "$root/ci/ab.sh"
target=${CARGO_TARGET_DIR:-$root/target}
engine=$target/release/gauntlet-engine
gauntlet=$target/release/gauntlet
rate=${RATE:-10000}
duration=${DURATION:-10s}
rounds=${ROUNDS:-8}
for bin in "$engine" "$gauntlet"; do
  [ -x "$bin" ] || { echo "$bin not found: cargo build --release -p gauntlet -p gauntlet-engine" >&2; exit 2; }
done

out=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; rm -rf "$out"' EXIT
cat >"$out/audited.toml" <<EOF
[audit]
dir = "$out/audit-log"
signing-key-file = "$out/keys/signing.key"
pseudonym-key-file = "$out/keys/pseudonym.key"
four-eyes = true
EOF

start() { # name, extra flags… → sets addr
  local name=$1
  shift
  # The files exist before the engine starts: the background job opens them in its own time.
  : >"$out/$name.out"
  : >"$out/$name.err"
  "$engine" --listen 127.0.0.1:0 --model-dir "$root/fixtures/models" "$@" \
    >"$out/$name.out" 2>"$out/$name.err" &
  pids+=($!)
  addr=
  for _ in $(seq 100); do
    addr=$(sed -n 's/^listening on //p' "$out/$name.out")
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { cat "$out/$name.err" >&2; echo "engine $name did not start" >&2; exit 1; }
}
start off
off=$addr
off_pid=${pids[-1]}
start on --config "$out/audited.toml"
on=$addr
on_pid=${pids[-1]}
tick=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

echo "A (off) on $off; B (audit + controls) on $on; $rate req/s for $duration, $rounds rounds; $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A p99s=([off]="" [on]="")
declare -A cpus=([off]="" [on]="")
for round in $(seq "$rounds"); do
  for side in off on; do
    url=http://${!side}
    pid_var=${side}_pid
    c0=$(cpu_ticks "${!pid_var}")
    # The line is wanted whatever the verdict (a busy host makes a run invalid: exit 1).
    line=$(cd "$out" && { "$gauntlet" load --target "$url" --rate "$rate" --duration "$duration" 2>&1 >/dev/null || true; } | grep 'gauntlet load: shard' | tail -1)
    c1=$(cpu_ticks "${!pid_var}")
    # Engine CPU per request: what the audit costs, whatever share of a core the engine got.
    requests=$(printf '%s\n' "$line" | grep -o '[0-9]* ok' | grep -o '[0-9]*' || echo 0)
    us=$(awk -v t=$((c1 - c0)) -v hz="$tick" -v n="${requests:-0}" 'BEGIN { printf "%.1f", (n > 0 ? t / hz * 1e6 / n : 0) }')
    cpus[$side]="${cpus[$side]} $us"
    echo "round $round $side: $line; engine ${us} µs CPU/request"
    p99=$(printf '%s\n' "$line" | tr ';' '\n' | awk '$1 == "p50" { for (i = 1; i < NF; i++) if ($i == "p99") print $(i + 1) }')
    p99s[$side]="${p99s[$side]} ${p99:-?}"
  done
done
echo "p99 (ms) off:${p99s[off]}  on:${p99s[on]}"
m_off=$(printf '%s' "${p99s[off]}" | median)
m_on=$(printf '%s' "${p99s[on]}" | median)
echo "median p99 (ms) off $m_off, on $m_on: on/off $(awk -v a="$m_on" -v b="$m_off" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "undefined" }') (target ≤ 1.10)"
echo "engine CPU per request (µs) off:${cpus[off]}  on:${cpus[on]}"
records=$(du -sh "$out/audit-log" | cut -f1)
echo "B's audit log after the runs: $records; load average $(cut -d' ' -f1-3 /proc/loadavg)"
