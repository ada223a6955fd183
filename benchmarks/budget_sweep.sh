#!/usr/bin/env bash
# The budget sweep of issue 18: greedy, beam at N in {1,2,4} (M=4) and M in {2,4,8} (N=2), the adaptive budget
# with caps N=2 M=8, and beam N=2 M=4 with greedy values (its own folder: run names do not carry search
# settings), on the first CASES cases of each of BFCL's five non-live categories, under the package defaults.
# Two chains of evals run at once (one per core, one torch thread each) and share the result folder.
# Usage: benchmarks/budget_sweep.sh [OUTPUT] [CASES]   (DATA=../shared/data/bfcl_v4 by default)
set -euo pipefail
out=${1:-benchmarks/results/sweep/guided_nonlive_6}
cases=${2:-6}
data=${DATA:-../shared/data/bfcl_v4}
eval=(toolprm eval --data "$data" --categories simple_python multiple parallel parallel_multiple irrelevance
      --limit "$cases" --threads 1 --no-progress)
mkdir -p "$out"
{
  "${eval[@]}" --output "$out" --strategies greedy beam --beams 2 --widths 4
  "${eval[@]}" --output "$out" --strategies beam --beams 4 --widths 4
  "${eval[@]}" --output "$out" --strategies beam --beams 2 --widths 2
} >"$out/log_a.txt" 2>&1 &
{
  "${eval[@]}" --output "$out" --strategies beam beam_adaptive --beams 2 --widths 8
  "${eval[@]}" --output "$out" --strategies beam --beams 1 --widths 4
  "${eval[@]}" --output "$out/greedy_values" --strategies beam --beams 2 --widths 4 --greedy-values
} >"$out/log_b.txt" 2>&1 &
wait
for x in total_tokens wall_seconds; do
  toolprm plot "$out" --x "$x" --output "$out/budget_$x.png"
done
