# shellcheck shell=bash
# The `goose` lane (.ci/lanes), sourced by .ci/lib.sh.

lane_goose() {
  # Off in the workspace build: goose turns on reqwest's TLS stack (aws-lc, a C build) for every
  # crate. Built, linted and tested here on its own so the feature cannot rot.
  cargo clippy -p gauntlet-load --features goose --all-targets --locked -- -D warnings
  cargo test -p gauntlet-load --features goose --test goose --release --locked
}
