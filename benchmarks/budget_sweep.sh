#!/usr/bin/env bash
# The budget sweep of issue 18: greedy, beam at N in {1,2,4} (M=4) and M in {2,4,8} (N=2), and the adaptive
# budget with caps N=2 M=8, on the first CASES cases of each of BFCL's five non-live categories.
# Two evals share one result folder (one per core, one torch thread each), each with its own runs.
# Usage: benchmarks/budget_sweep.sh [OUTPUT] [CASES]   (DATA=../shared/data/bfcl_v4 by default)
set -euo pipefail
out=${1:-benchmarks/results/sweep/bfcl_nonlive_6}
cases=${2:-6}
data=${DATA:-../shared/data/bfcl_v4}
eval=(toolprm eval --data "$data" --categories simple_python multiple parallel parallel_multiple irrelevance
      --limit "$cases" --output "$out" --threads 1)
mkdir -p "$out"
{
  "${eval[@]}" --strategies greedy beam --beams 2 --widths 4
  "${eval[@]}" --strategies beam --beams 4 --widths 4
  "${eval[@]}" --strategies beam --beams 2 --widths 2
} >"$out/log_a.txt" 2>&1 &
{
  "${eval[@]}" --strategies beam beam_adaptive --beams 2 --widths 8
  "${eval[@]}" --strategies beam --beams 1 --widths 4
} >"$out/log_b.txt" 2>&1 &
wait
toolprm plot "$out" --output "$out/budget.png"
