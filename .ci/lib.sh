# Shared by .ci/run and .ci/lane: step timing with budgets, and the slow lanes' fingerprints.
# shellcheck shell=bash

export CARGO_TERM_COLOR=never
export CARGO_INCREMENTAL=0
# A machine that keeps this directory between runs builds warm; a new machine starts empty.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME}/.cache/gauntlet/target}"
mkdir -p "$CARGO_TARGET_DIR"

ci_started=$(date +%s)
step_name=""
step_started=0
step_budget=0
steps_table=()
over_budget=()

# Closes the step under way: prints its time and marks it when it went over its budget.
end_step() {
  [ -n "$step_name" ] || return 0
  local took=$(( $(date +%s) - step_started ))
  local mark=""
  if [ "$took" -gt "$step_budget" ]; then
    mark="  OVER BUDGET"
    over_budget+=("$step_name: ${took}s > ${step_budget}s")
    printf '\n!!! CI BUDGET: step "%s" took %ss, over its budget of %ss. Find what grew (the\n' \
      "$step_name" "$took" "$step_budget"
    printf '!!! step table in ci/README.md has the last measured figures) before raising the budget.\n'
  fi
  steps_table+=("$(printf '%-58s %6ss %8ss%s' "$step_name" "$took" "$step_budget" "$mark")")
  printf '=== %s: %ss (budget %ss)\n' "$step_name" "$took" "$step_budget"
  step_name=""
}

# step NAME BUDGET_SECONDS: starts a step; its budget is for a cold machine.
step() {
  end_step
  step_name=$1
  step_budget=$2
  step_started=$(date +%s)
  printf '\n=== %s (%s UTC, budget %ss)\n' "$step_name" "$(date -u +%H:%M:%S)" "$step_budget"
}

# Prints the step table and the total; fails the run when a step went over its budget.
# The run's exit status is $1 when given (a trap that ran other commands first), else $?.
ci_summary() {
  local status=${1:-$?}
  [ -z "${ci_summary_done:-}" ] || exit "$status"
  ci_summary_done=1
  end_step
  local total=$(( $(date +%s) - ci_started ))
  printf '\n=== CI steps (seconds)\n%-58s %7s %9s\n' "step" "took" "budget"
  printf '%s\n' "${steps_table[@]}"
  printf '%-58s %6ss\n' "total" "$total"
  if [ "$total" -gt 1800 ]; then
    printf '!!! the run took more than the 30 minutes CI aims at from a cold machine\n'
  fi
  if [ "$status" -eq 0 ] && [ ${#over_budget[@]} -gt 0 ]; then
    printf '\n!!! CI FAILED ON ITS TIME BUDGET: %s\n' "${over_budget[*]}"
    exit 1
  fi
  exit "$status"
}

# The fingerprint of a lane's files (see .ci/lanes): their paths and contents as checked out.
lane_fingerprint() {
  local lane=$1 paths
  paths=$(awk -v l="$lane" '$1 == l { $1 = ""; $2 = ""; print }' .ci/lanes)
  [ -n "$paths" ] || { echo "unknown lane: $lane (see .ci/lanes)" >&2; return 2; }
  # shellcheck disable=SC2086 # the paths are words
  git ls-files -z -- $paths | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16
}

# A lane's budget in seconds (.ci/lanes).
lane_budget() {
  awk -v l="$1" '$1 == l { print $2 }' .ci/lanes
}

# The fingerprint the lane last passed with (.ci/lanes.passed), or nothing.
lane_passed() {
  awk -v l="$1" '$1 == l { print $2 }' .ci/lanes.passed 2>/dev/null
}

# The slow lanes: each a function, run by .ci/run when its files changed and by .ci/lane.
lane_goose() {
  # Off in the workspace build: goose turns on reqwest's TLS stack (aws-lc, a C build) for every
  # crate. Built, linted and tested here on its own so the feature cannot rot.
  cargo clippy -p gauntlet-load --features goose --all-targets --locked -- -D warnings
  cargo test -p gauntlet-load --features goose --test goose --release --locked
}

lane_vectorbt() {
  # The backtest's agreement with vectorbt's Portfolio.from_signals (suites/backtest/tests:
  # the_units_model_agrees_with_vectorbt). Wheels only, pinned; numba compiles vectorbt's
  # kernels on first use, most of this lane's time.
  python3 -m pip install --quiet --disable-pip-version-check --only-binary=:all: \
    vectorbt==1.2.0 pandas==3.1.1 numpy==2.4.6 numba==0.68.1 llvmlite==0.50.0
  GAUNTLET_REQUIRE_VECTORBT=1 cargo test -p gauntlet-backtest --release --locked --test backtest \
    the_units_model_agrees_with_vectorbt -- --nocapture
}

lane_image() {
  # The engine's container image (#14): a static gauntlet-engine FROM scratch, built offline by
  # ci/image/build, then started by the test through 127.0.0.1 and the mapped port; it must
  # serve the conformance suite and stop on SIGTERM. No container may outlive the lane.
  ci/image/build gauntlet-engine:dev
  GAUNTLET_REQUIRE_IMAGE=1 cargo test -p gauntlet --release --locked --test image -- --nocapture
  local left
  left=$(docker ps --all --quiet --filter label=org.gauntlet.test=image)
  if [ -n "$left" ]; then
    docker rm --force $left >/dev/null
    echo "lane image: containers were left running by the test" >&2
    return 1
  fi
}

lane_mlserver() {
  # Conformance against a third-party OIP server (#17): MLServer from PyPI, in a venv of its own,
  # serving a scikit-learn model the test trains (its own input name and width). The test starts
  # MLServer on loopback under `timeout` and stops it; none may outlive the lane.
  local venv=${GAUNTLET_MLSERVER_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/gauntlet/mlserver-venv}
  [ -x "$venv/bin/mlserver" ] || {
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      mlserver==1.7.1 mlserver-sklearn==1.7.1 scikit-learn
  }
  GAUNTLET_MLSERVER_VENV=$venv GAUNTLET_REQUIRE_MLSERVER=1 \
    cargo test -p gauntlet --release --locked --test mlserver -- --nocapture
  if pgrep -f "$venv/bin/mlserver" >/dev/null; then
    echo "lane mlserver: an MLServer was left running by the test" >&2
    return 1
  fi
}

lane_fuzz() {
  # The engine's parsers of untrusted input under libFuzzer and AddressSanitizer (#12): each
  # target 30 s from the checked-in seeds, new inputs kept in a scratch corpus. Stable rustc
  # takes cargo-fuzz's -Z flags with RUSTC_BOOTSTRAP=1 (its ASan runtime ships with std).
  command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
  local work target
  work=$(mktemp -d)
  for target in infer_request artifact signature; do
    mkdir -p "$work/$target"
    (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "$work/$target" "corpus/$target" \
      -- -max_total_time=30 -rss_limit_mb=4096 -print_final_stats=1 2>&1 | tail -n 12)
    # `tail` would hide cargo fuzz's exit status: a crash leaves an input in artifacts/.
    if compgen -G "fuzz/artifacts/$target/*" >/dev/null; then
      echo "lane fuzz: $target crashed; inputs in fuzz/artifacts/$target/" >&2
      return 1
    fi
  done
  rm -rf "$work"
}

