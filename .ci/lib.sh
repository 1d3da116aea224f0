# Shared by .ci/run and .ci/lane: step timing with budgets, and the slow lanes' fingerprints.
# shellcheck shell=bash

export CARGO_TERM_COLOR=never
export CARGO_INCREMENTAL=0
# A machine that keeps this directory between runs builds warm; a new machine starts empty.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME}/.cache/gauntlet/target}"
mkdir -p "$CARGO_TARGET_DIR"
# The workspace's own crates compile through Clippy and rustdoc's lints (.ci/lint-rustc). Set
# for every step and lane alike: cargo fingerprints the wrapper, so a step without it would
# rebuild them.
export RUSTC_WORKSPACE_WRAPPER="$PWD/.ci/lint-rustc"

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
# Markdown cannot change what a lane checks, so it is left out; of a Cargo.lock only the
# packages from a registry count (the workspace's own crates appear there as dependency edges,
# and a lane follows the workspace code it needs through its own paths).
lane_fingerprint() {
  local lane=$1 paths file
  paths=$(awk -v l="$lane" '$1 == l { $1 = ""; $2 = ""; print }' .ci/lanes)
  [ -n "$paths" ] || { echo "unknown lane: $lane (see .ci/lanes)" >&2; return 2; }
  # shellcheck disable=SC2086 # the paths are words
  git ls-files -z -- $paths ':(exclude)*.md' | sort -z |
    while IFS= read -r -d '' file; do
      if [ "${file##*/}" = Cargo.lock ]; then
        printf '%s  %s\n' "$(awk 'BEGIN { RS = "" } /\nsource = / { print; print "" }' "$file" |
          sha256sum | cut -d' ' -f1)" "$file"
      else
        sha256sum "$file"
      fi
    done | sha256sum | cut -c1-16
}

# A lane's budget in seconds (.ci/lanes).
lane_budget() {
  awk -v l="$1" '$1 == l { print $2 }' .ci/lanes
}

# The fingerprint the lane last passed with (.ci/lanes.passed), or nothing.
lane_passed() {
  awk -v l="$1" '$1 == l { print $2 }' .ci/lanes.passed 2>/dev/null
}

# The slow lanes: one file each in .ci/lane.d/NAME.sh defining lane_NAME, so a lane's
# fingerprint changes with its own file and not with another lane's.
for lane_file in "$(dirname "${BASH_SOURCE[0]}")"/lane.d/*.sh; do
  # shellcheck source=/dev/null
  source "$lane_file"
done
