"""What the policy and the PRM each say at the decisions of held-out BFCL cases, step by step.

This walks each case's reference answer through the grammar and asks both models about the
candidates of every decision on the way: the policy's probability (as the search proposes it) and the
PRM's score. The call list's decisions come first: before each reference call and after the last,
every legal candidate ("call, or answer in text?" at a turn's first step, "one more call, or stop?"
after a call); a candidate is right if it ends the list when every reference call is made, or names
a function of a reference call still to make. With ``--inside``, the decisions inside each call too:
which argument next, or end the arguments (right: an argument the reference has and the call does
not yet; the end once every argument the reference requires is set), and each argument's value
(enumerated, or ``beam_width`` values sampled as the search samples them; right: a value BFCL's
checker accepts; a decision with no right candidate among those sampled is left out). One line per
decision, so ways of combining the two (`guided`'s PRM weight per decision, `SearchConfig.stop_bias`)
can be compared offline on the same decisions before a search runs; ``--report`` prints how many each
way gets right:

    python benchmarks/held_out.py --out held-out --per-category 40 --composed 30 \
        --categories live_simple live_multiple live_parallel live_parallel_multiple live_irrelevance
    python benchmarks/decisions.py --data held-out --output decisions.jsonl
    python benchmarks/decisions.py --data held-out --inside --output inside.jsonl
    python benchmarks/decisions.py --report decisions.jsonl inside.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from langchain_toolprm import load_policy
from langchain_toolprm.components import load_prm
from langchain_toolprm.data.sources import reference_calls
from langchain_toolprm.evaluation import load_bfcl
from langchain_toolprm.evaluation.bfcl_checker import check_argument
from langchain_toolprm.grammar import Action, Grammar, StepTag, ToolChoice
from langchain_toolprm.messages import to_chat_messages
from langchain_toolprm.search.config import SearchConfig
from langchain_toolprm.search.engine import SearchContext, guided_scores
from langchain_toolprm.tools import ToolSchemaError, to_tool_specs


def _bfcl_params(case: Any, name: str) -> dict[str, Any]:
    doc = next(f for f in case.functions if f["name"] == name)
    return dict(doc.get("parameters", {}).get("properties", {}))


def _right_inside(case: Any, state: Any, action: Action, accepted: dict[str, list[Any]]) -> bool:
    """Whether an argument name, the end of the arguments, or a value fits the reference call."""
    if action.tag is StepTag.ARG_NAME:
        return action.name in accepted and action.name not in state.filled
    if action.tag is StepTag.ARG_END:
        return all(p in state.filled for p, values in accepted.items() if "" not in values)
    spec = _bfcl_params(case, state.function)[state.param]
    try:
        return check_argument(state.param, action.value, spec, [v for v in accepted[state.param] if v != ""]).valid
    except (KeyError, ValueError):
        return False


def decisions(case: Any, policy: Any, prm: Any, inside: bool = False) -> list[dict[str, Any]]:
    """The decisions along the reference answer of one case, both models' view of each."""
    specs = to_tool_specs(case.functions)
    grammar = Grammar(specs, ToolChoice.parse(None, [s.name for s in specs]))
    calls = reference_calls(case.ground_truth or [], specs)
    path = grammar.actions_for_calls(calls)
    if path is None:
        raise ValueError("the grammar cannot write the reference answer")
    chat = to_chat_messages(case.messages)
    session = policy.session(chat, specs, seed=0)
    config = SearchConfig(stop_bias=0.0)  # the policy's own odds of ending: --report adds each bias itself
    ctx = SearchContext(chat, specs, grammar, session, prm.session_for(chat, specs, session), config)
    states = grammar.walk(path)
    rows = []
    for i, (state, action) in enumerate(zip(states, path, strict=False)):
        decision = grammar.decision(state)
        listing = action.tag is StepTag.FUNC_NAME or action == Action.finish()
        if decision.forced or listing == inside:
            continue
        made = len(state.calls)
        if listing:
            proposals = ctx.propose([state], 10_000, 0.0)[0]
            left = Counter(c["name"] for c in calls[made:])
            right = [(made == len(calls)) if p.action == Action.finish() else left[p.action.name] > 0
                     for p in proposals]
            kind = "list"
        else:
            proposals = ctx.propose([state], config.beam_width, config.temperature)[0]
            answer = case.ground_truth[made]
            accepted = next(iter(answer.values()))
            right = [_right_inside(case, state, p.action, accepted) for p in proposals]
            kind = decision.tag.value if decision.tag is not StepTag.ARG_VALUE or not decision.free else "FREE_VALUE"
            if len(proposals) < 2 or not any(right):
                continue
        scores = ctx.score(tuple(zip(states[:i], path[:i], strict=True)), state, [p.action for p in proposals])
        rows.append({
            "id": case.id, "category": case.category, "kind": kind, "made": made, "reference": len(calls),
            "candidates": [{"step": p.action.describe(), "finish": p.action == Action.finish(),
                            "logprob": round(p.logprob, 5), "prm": round(float(s), 5), "right": r}
                           for p, s, r in zip(proposals, scores, right, strict=True)],
        })
    return rows


GROUPS = ("first step, calls asked for", "first step, no call asked for", "after a call, more asked for",
          "after a call, the list is complete")
WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 10.0)
BIASES = (-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0)


def _group(row: dict[str, Any]) -> str:
    if row["made"] == 0:
        return GROUPS[0] if row["reference"] else GROUPS[1]
    return GROUPS[3] if row["made"] == row["reference"] else GROUPS[2]


def _right(row: dict[str, Any], weight: float, bias: float) -> bool:
    """Whether the candidate `guided` ranks first (with ``bias`` on a list's end after a call) is right."""
    candidates = row["candidates"]
    logprobs = [c["logprob"] + (bias if c["finish"] and row["made"] else 0.0) for c in candidates]
    pooled = guided_scores([c["prm"] for c in candidates], logprobs, weight)
    return bool(candidates[pooled.index(max(pooled))]["right"])


def report(rows: list[dict[str, Any]]) -> None:
    """Decisions right per group, for each PRM weight and stop bias, at the first step and after a call."""
    inside = [r for r in rows if r.get("kind", "list") != "list"]
    rows = [r for r in rows if r.get("kind", "list") == "list"]
    if inside:
        kinds = sorted({r["kind"] for r in inside})
        sizes = Counter(r["kind"] for r in inside)
        print(f"| PRM weight | {' | '.join(kinds)} | right |\n|---:|{'---:|' * (len(kinds) + 1)}")
        for weight in WEIGHTS:
            right = Counter(r["kind"] for r in inside if _right(r, weight, 0.0))
            print(f"| {weight} | " + " | ".join(f"{right[k]}/{sizes[k]}" for k in kinds)
                  + f" | {sum(right.values())}/{len(inside)} |")
    if not rows:
        return
    sizes = Counter(_group(r) for r in rows)
    print("decisions: " + ", ".join(f"{g} {sizes[g]}" for g in GROUPS))
    for first, groups in ((True, GROUPS[:2]), (False, GROUPS[2:])):
        part = [r for r in rows if (r["made"] == 0) == first]
        print(f"\n| PRM weight | stop bias | {' | '.join(groups)} | right |\n|---:|---:|{'---:|' * (len(groups) + 1)}")
        for weight in WEIGHTS:
            for bias in BIASES if not first else (0.0,):
                right = Counter(_group(r) for r in part if _right(r, weight, bias))
                print(f"| {weight} | {bias if not first else '-'} | "
                      + " | ".join(f"{right[g]}/{sizes[g]}" for g in groups) + f" | {sum(right.values())} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="BFCL folder (with possible_answer/)")
    parser.add_argument("--categories", nargs="+", default=None)
    parser.add_argument("--policy", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--prm", default="default")
    parser.add_argument("--output", type=Path, help="JSON lines, one decision each (appended)")
    parser.add_argument("--inside", action="store_true", help="the decisions inside calls, not the list's")
    parser.add_argument("--report", type=Path, nargs="+", metavar="JSONL", help="print the tables of written decisions")
    args = parser.parse_args()
    if args.report:
        report([json.loads(line) for path in args.report for line in path.read_text(encoding="utf-8").splitlines()])
        return
    if args.data is None or args.output is None:
        parser.error("--data and --output are needed to write decisions (or --report to read them)")
    policy = load_policy(args.policy)
    prm = load_prm(args.prm, policy)
    done = set()
    if args.output.exists():
        done = {json.loads(line)["id"] for line in args.output.read_text(encoding="utf-8").splitlines() if line}
    cases = [c for c in load_bfcl(args.data, args.categories) if c.id not in done]
    with args.output.open("a", encoding="utf-8") as out:
        for n, case in enumerate(cases, 1):
            started = time.perf_counter()
            try:
                rows = decisions(case, policy, prm, args.inside)
            except (ToolSchemaError, ValueError) as error:
                print(f"[{n}/{len(cases)}] {case.id}: skipped ({error})", flush=True)
                continue
            for row in rows:
                out.write(json.dumps(row) + "\n")
            out.flush()
            print(f"[{n}/{len(cases)}] {case.id}: {len(rows)} decisions, {time.perf_counter() - started:.1f} s",
                  flush=True)


if __name__ == "__main__":
    main()
