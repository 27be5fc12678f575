#!/bin/bash
# Every shared workload replays to the same head with --cold, --cache-mb 1 --mmap-mb 0, and each
# trie layout (issue 13). Usage: scripts/check_state_flags.sh [SCRATCH_DIR]; compare the heads per file.
cd "$(dirname "$0")/.."; . .venv/bin/activate
out=${1:-/tmp/evmpipe-state-flags}; mkdir -p $out
for f in ${WORKLOADS:-../shared/workloads}/*.json.gz; do
  n=$(basename $f .json.gz)
  [ -f $out/$n.native ] || python -m evmpipe convert $f -o $out/$n.native > /dev/null 2>&1 || { echo "$n convert FAILED"; continue; }
  for flags in "--cold" "--cache-mb 1 --mmap-mb 0" "--layout trie" "--layout trie-pinned"; do
    rm -rf $out/dd; python -m evmpipe replay $out/$n.native --datadir $out/dd $flags --json $out/r.json > /dev/null 2> $out/err.txt
    rc=$?
    root=$(python -m evmpipe head --datadir $out/dd --json 2>/dev/null)
    echo "$n [$flags] rc=$rc last=$(python -c "import json;print(json.load(open('$out/r.json'))['last_block'])") head=$root"
  done
done
