# shellcheck shell=bash
# The `mlserver` lane (.ci/lanes), sourced by .ci/lib.sh.

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
