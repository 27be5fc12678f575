#!/bin/bash
# Prefetch never changes a result (issue 14): every shared workload replays --cold without
# prefetch, with the cheap predictions only (--no-prefetch-run), and with the pre-run
# (--prefetch-run), and each file must reach one head.
# Usage: scripts/check_prefetch_roots.sh [SCRATCH_DIR]  (WORKLOADS=DIR to use other files).
# Replay itself rejects a block whose state root differs from its header's.
cd "$(dirname "$0")/.."; . .venv/bin/activate
out=${1:-/tmp/evmpipe-prefetch-roots}; mkdir -p $out
bad=0
for f in ${WORKLOADS:-../shared/workloads}/*.json.gz; do
  n=$(basename $f .json.gz)
  [ -f $out/$n.native ] || python -m evmpipe convert $f -o $out/$n.native > /dev/null 2>&1 || { echo "$n convert FAILED"; bad=1; continue; }
  heads=""
  for flags in "--cold --no-prefetch" "--cold --no-prefetch-run" "--cold --prefetch-run"; do
    rm -rf $out/dd; python -m evmpipe replay $out/$n.native --datadir $out/dd $flags --json $out/r.json > /dev/null 2> $out/err.txt
    rc=$?
    head=$(python -m evmpipe head --datadir $out/dd --json 2>/dev/null)
    last=$(python -c "import json;print(json.load(open('$out/r.json'))['last_block'])" 2>/dev/null)
    echo "$n [$flags] rc=$rc last=$last head=$head"
    [ $rc = 0 ] || { bad=1; tail -3 $out/err.txt; }
    heads="$heads$head"$'\n'
  done
  if [ "$(printf '%s' "$heads" | sort -u | wc -l)" = 1 ]; then echo "$n: same head in all 3 modes"; else echo "$n: HEADS DIFFER"; bad=1; fi
done
rm -rf $out/dd
[ $bad = 0 ] && echo "all files: same heads with and without prefetch" || echo "FAILED"
exit $bad
