# shellcheck shell=bash
# The `mutants` lane (.ci/lanes), sourced by .ci/lib.sh.

lane_mutants() {
  # `gauntlet mutants` for real (#15), on a two-line diff of the engine's sanitiser: cargo-mutants
  # mutates those lines in place, the conformance suite runs in process after each, and both
  # mutants must be caught. A dev build of the workspace (cargo-mutants' default profile) and a
  # rebuild per mutant: minutes. cargo-mutants is built from crates.io (about 2 min).
  command -v cargo-mutants >/dev/null || cargo install cargo-mutants --locked
  cargo test -p gauntlet --release --locked --test mutants -- --ignored --nocapture
  git diff --exit-code -- engine/src >/dev/null || {
    echo "lane mutants: the engine's sources were left mutated" >&2
    return 1
  }
}
