#!/usr/bin/env bash
# The container target's overhead on a 10,000 req/s run (issue 14), A/B in one run: the same
# static gauntlet-engine (ci/image/build's binary) started three ways, and `gauntlet load`
# against each in turn, $ROUNDS (6) times, so the host's noise falls on all alike:
#   url        the binary on the host, `--target http://127.0.0.1:PORT`
#   published  `--target container:IMAGE` (Docker's bridge; the port published on 127.0.0.1,
#              so every byte goes through Docker's userland proxy, docker-proxy)
#   host       `--target container:IMAGE?network=host` (the host's network namespace)
# Prints each run's line, then the achieved rate and p99 of every run and each side's median
# p99 with its ratio to `url`; the target is within 5 %.
#
#   ci/image/build && cargo build --release -p gauntlet && ci/image/load-ab.sh
#
# Environment: RATE (10000), DURATION (10s), ROUNDS (6), IMAGE (gauntlet-engine:dev),
# CARGO_TARGET_DIR. The engine it starts stops on exit; the containers go with their runs.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=../ab.sh
source "$root/ci/ab.sh"
target=${CARGO_TARGET_DIR:-$root/target}
engine=$target/x86_64-unknown-linux-gnu/release/gauntlet-engine
gauntlet=$target/release/gauntlet
image=${IMAGE:-gauntlet-engine:dev}
rate=${RATE:-10000}
duration=${DURATION:-10s}
rounds=${ROUNDS:-6}
for bin in "$engine" "$gauntlet"; do
  [ -x "$bin" ] || { echo "$bin not found: ci/image/build, then cargo build --release -p gauntlet" >&2; exit 2; }
done
out=$(mktemp -d)
"$engine" --listen 127.0.0.1:0 --model-dir "$root/fixtures/models" >"$out/engine.out" 2>"$out/engine.err" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true; rm -rf "$out"' EXIT
addr=
for _ in $(seq 100); do
  addr=$(sed -n 's/^listening on //p' "$out/engine.out")
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { cat "$out/engine.err" >&2; echo "the engine did not start" >&2; exit 1; }
declare -A targets=([url]="http://$addr" [published]="container:$image" [host]="container:$image?network=host")
declare -A p99s=() rates=()
echo "$rate req/s for $duration, $rounds rounds of url · published · host; $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$rounds"); do
  for side in url published host; do
    line=$(cd "$out" && { "$gauntlet" load --target "${targets[$side]}" --rate "$rate" --duration "$duration" 2>&1 >/dev/null || true; } | grep 'gauntlet load: shard' | tail -1)
    echo "round $round $side: $line"
    p99s[$side]="${p99s[$side]:-} $(printf '%s\n' "$line" | grep -o 'p99 [0-9.]* ms' | awk '{print $2}')"
    rates[$side]="${rates[$side]:-} $(printf '%s\n' "$line" | grep -o 'achieved [0-9]*' | awk '{print $2}')"
  done
done
m_url=$(printf '%s' "${p99s[url]}" | median)
for side in url published host; do
  m=$(printf '%s' "${p99s[$side]}" | median)
  echo "$side: achieved req/s${rates[$side]}; p99 ms${p99s[$side]}; median p99 $m ms = $(awk -v a="$m" -v b="$m_url" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "undefined" }')× url"
done
echo "load average $(cut -d' ' -f1-3 /proc/loadavg)"
