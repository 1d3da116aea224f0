# shellcheck shell=bash
# The `fuzz` lane (.ci/lanes), sourced by .ci/lib.sh.

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
