# Helpers of the A/B benchmark scripts (engine/benches/audit-ab.sh, ci/image/load-ab.sh):
# source it.

# The median of the numbers on standard input (separated by spaces or newlines); "?" for none.
median() {
  tr ' ' '\n' | grep -v '^$' | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print "?"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
