# shellcheck shell=bash
# The `resilience` lane (.ci/lanes), sourced by .ci/lib.sh.

lane_resilience() {
  # The resilience suite's container cases (#14): backends in gauntlet-engine:dev containers
  # (built here by ci/image/build, nothing pulled), paused, unpaused, killed and restarted,
  # slowed by the fault proxy, and switched blue → green under 10,000 req/s; then a defective
  # frontend must fail them. GAUNTLET_REQUIRE_IMAGE=1: a missing image or Docker fails the
  # lane instead of skipping. No labelled container may outlive the lane.
  ci/image/build gauntlet-engine:dev
  GAUNTLET_REQUIRE_IMAGE=1 cargo test -p gauntlet-resilience --release --locked --test containers -- --nocapture
  local left
  left=$(docker ps --all --quiet --filter label=org.gauntlet.test=resilience)
  if [ -n "$left" ]; then
    docker rm --force $left >/dev/null
    echo "lane resilience: containers were left behind by the tests: $left" >&2
    return 1
  fi
}
