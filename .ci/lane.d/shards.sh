# shellcheck shell=bash
# The `shards` lane (.ci/lanes), sourced by .ci/lib.sh.

lane_shards() {
  # Load beyond one machine, rehearsed on one (#14): both images built offline (the engine,
  # and the static `gauntlet-load` worker FROM scratch), then N worker containers drive the
  # engine container over a Docker network of the test's own and `gauntlet report merge`
  # merges their shard files exactly. Then the Kubernetes manifests of ci/k8s/ are read
  # strictly into the API types by their own crate (k8s-openapi stays out of the workspace
  # and its lock). No labelled container or network may outlive the lane.
  ci/image/build gauntlet-engine:dev
  ci/image/build --load gauntlet-load:dev
  GAUNTLET_REQUIRE_SHARDS=1 cargo test -p gauntlet --release --locked --test shards -- --nocapture
  cargo clippy --locked --manifest-path ci/k8s/check/Cargo.toml --all-targets -- -D warnings
  cargo test --locked --manifest-path ci/k8s/check/Cargo.toml
  local left nets
  left=$(docker ps --all --quiet --filter label=org.gauntlet.test=shards)
  nets=$(docker network ls --quiet --filter label=org.gauntlet.test=shards)
  if [ -n "$left" ] || [ -n "$nets" ]; then
    [ -z "$left" ] || docker rm --force $left >/dev/null
    [ -z "$nets" ] || docker network rm $nets >/dev/null
    echo "lane shards: containers or networks were left by the test" >&2
    return 1
  fi
}
