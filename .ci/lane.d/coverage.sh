# shellcheck shell=bash
# The `coverage` lane (.ci/lanes), sourced by .ci/lib.sh.

lane_coverage() {
  # `gauntlet coverage` for real (#15): cargo-llvm-cov builds gauntlet-engine instrumented, the
  # suites run against it by URL, lcov/cobertura/JSON and the report's section come out, and a
  # suite that never calls a module leaves it uncovered. llvm-tools comes with rustup;
  # cargo-llvm-cov is built from crates.io (about 2.5 min).
  rustup component add llvm-tools
  command -v cargo-llvm-cov >/dev/null || cargo install cargo-llvm-cov --locked
  GAUNTLET_REQUIRE_COVERAGE=1 cargo test -p gauntlet --release --locked --test coverage -- --ignored --nocapture
}
