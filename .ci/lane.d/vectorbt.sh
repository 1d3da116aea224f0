# shellcheck shell=bash
# The `vectorbt` lane (.ci/lanes), sourced by .ci/lib.sh.

lane_vectorbt() {
  # The backtest's agreement with vectorbt's Portfolio.from_signals, and returns.parquet as
  # pyarrow reads it (suites/backtest/tests: the_units_model_agrees_with_vectorbt,
  # returns_parquet_reads_the_same_in_pyarrow). Wheels only, pinned; numba compiles
  # vectorbt's kernels on first use, most of this lane's time.
  python3 -m pip install --quiet --disable-pip-version-check --only-binary=:all: \
    vectorbt==1.2.0 pandas==3.1.1 numpy==2.4.6 numba==0.68.1 llvmlite==0.50.0 pyarrow==26.0.1
  GAUNTLET_REQUIRE_VECTORBT=1 cargo test -p gauntlet-backtest --release --locked --test backtest \
    -- --nocapture the_units_model_agrees_with_vectorbt returns_parquet_reads_the_same_in_pyarrow
}
