# shellcheck shell=bash
# The `image` lane (.ci/lanes), sourced by .ci/lib.sh.

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
