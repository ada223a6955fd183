"""How well a PRM judges the first decision of a query: answer in text ("no call") or call a tool.

Beam search can only answer in text when the PRM's score for the first step ``TOTAL_FINISH no call``
separates the queries that need no call from those that do; this reads that score on a build's
split, per source, and prints its range, its AUC, and the accuracy of the best single threshold
fitted on one split and applied to another (Platt scaling), beside "always call":

    python benchmarks/first_step.py --data toolprm-data-v2 --fit-split train --fit-per-source 12 \
        --test-split test --test-per-source 6
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

from langchain_toolprm.grammar import StepTag
from langchain_toolprm.prm.adapters import load_prm_model
from langchain_toolprm.train.model import label_logits, label_token_ids
from langchain_toolprm.train.packing import load_queries, pack_queries


def first_steps(model: object, tokenizer: object, data: Path, split: str, per_source: int, seed: int
                ) -> list[tuple[str, float, bool]]:
    """``(source, P(+), no call is right)`` for the first ``TOTAL_FINISH`` of ``per_source`` queries a source."""
    import torch

    plus, minus = label_token_ids(tokenizer)
    packed = pack_queries(load_queries(data, split), tokenizer, "eval", 768, 2048)
    random.Random(seed).shuffle(packed)
    taken: dict[str, int] = {}
    out = []
    with torch.inference_mode():
        for query in packed:
            nodes = [n for n, parent in enumerate(query.node_parent)
                     if parent == -1 and query.tags[n] is StepTag.TOTAL_FINISH and query.targets[n] is not None]
            if not nodes or taken.get(query.source, 0) >= per_source:
                continue
            taken[query.source] = taken.get(query.source, 0) + 1
            logits = label_logits(model, query, torch.device("cpu"))[:, [plus, minus]]
            score = torch.softmax(logits[nodes[0]], dim=-1)[0].item()
            out.append((query.source, score, bool(query.targets[nodes[0]])))
            print(f"{split}: {len(out)} queries", end="\r", flush=True)
    print()
    return out


def _logit(p: float) -> float:
    p = min(max(p, 1e-7), 1 - 1e-7)
    return math.log(p / (1 - p))


def platt(rows: list[tuple[str, float, bool]], l2: float = 1e-2) -> tuple[float, float]:
    """``(a, b)`` of ``sigmoid(a * logit(score) + b)`` by Newton's method on the log-loss."""
    a, b = 1.0, 0.0
    for _ in range(100):
        ga, gb, haa, hab, hbb = 2 * l2 * (a - 1), 2 * l2 * b, 2 * l2, 0.0, 2 * l2
        for _, score, label in rows:
            m = _logit(score)
            p = 1 / (1 + math.exp(-(a * m + b)))
            ga, gb = ga + (p - label) * m, gb + (p - label)
            haa, hab, hbb = haa + p * (1 - p) * m * m, hab + p * (1 - p) * m, hbb + p * (1 - p)
        det = haa * hbb - hab * hab
        da, db = (hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det
        a, b = a - da, b - db
        if abs(da) + abs(db) < 1e-10:
            break
    return a, b


def auc(rows: list[tuple[str, float, bool]]) -> float:
    """P(a no-call query's score > a call query's score)."""
    pos = [s for _, s, y in rows if y]
    neg = [s for _, s, y in rows if not y]
    pairs = [(p > n) + 0.5 * (p == n) for p in pos for n in neg]
    return sum(pairs) / len(pairs) if pairs else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prm", default="default")
    parser.add_argument("--data", type=Path, required=True, help="a `toolprm build-data` folder")
    parser.add_argument("--fit-split", default="train")
    parser.add_argument("--fit-per-source", type=int, default=12)
    parser.add_argument("--test-split", default="test")
    parser.add_argument("--test-per-source", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="JSON with every query's score")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    model, tokenizer = load_prm_model(args.prm, dtype=torch.float32)
    model.eval()
    fit = first_steps(model, tokenizer, args.data, args.fit_split, args.fit_per_source, args.seed)
    test = first_steps(model, tokenizer, args.data, args.test_split, args.test_per_source, args.seed)
    a, b = platt(fit)
    report = {"prm": args.prm, "platt": [a, b], "splits": {}}
    for name, rows in (("fit", fit), ("test", test)):
        hits = [(1 / (1 + math.exp(-(a * _logit(s) + b))) > 0.5) == y for _, s, y in rows]
        per_source: dict[str, list[int]] = {}
        for (source, _, _), hit in zip(rows, hits, strict=True):
            per_source.setdefault(source, [0, 0])
            per_source[source][0] += hit
            per_source[source][1] += 1
        split = {"queries": len(rows), "no_call_share": sum(y for *_, y in rows) / len(rows),
                 "score_range": [min(s for _, s, _ in rows), max(s for _, s, _ in rows)], "auc": auc(rows),
                 "threshold_accuracy": sum(hits) / len(hits),
                 "always_call_accuracy": sum(not y for *_, y in rows) / len(rows),
                 "per_source": {s: f"{h}/{n}" for s, (h, n) in sorted(per_source.items())},
                 "rows": rows}
        report["splits"][name] = split
        print(f"{name}: {len(rows)} queries, no-call share {split['no_call_share']:.2f}, score range "
              f"{split['score_range'][0]:.2f}-{split['score_range'][1]:.2f}, AUC {split['auc']:.3f}, "
              f"threshold acc {split['threshold_accuracy']:.3f} (always call {split['always_call_accuracy']:.3f})")
        print("   ", split["per_source"])
    if args.out:
        args.out.write_text(json.dumps(report, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
