"""Baselines that sample whole answers: the base model as people run it, best-of-n and majority vote.

They share the policy session and the cost counters with the grammar strategies, so comparisons are
made at known compute. Sampled answers are read leniently (any call-shaped JSON anywhere), which
credits the baselines with every call they wrote, whatever the format.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from langchain_toolprm.formats import FormatError, parse_calls_lenient
from langchain_toolprm.grammar import Action
from langchain_toolprm.lm import Sample
from langchain_toolprm.search.engine import SearchContext, aggregate, calls_key, distinct_alternatives
from langchain_toolprm.search.results import SearchResult, TraceNode

__all__ = ["best_of_n", "majority_vote", "unconstrained"]


def _add_path(ctx: SearchContext, parent: TraceNode, calls: list[dict[str, Any]], logprob: float | None,
              scores: list[float] | None, kept: bool) -> None:
    """Record a sampled answer in the trace as the steps the grammar would have taken to write it."""
    actions = ctx.grammar.actions_for_calls(calls)
    if actions is None:
        parent.add(TraceNode(None, f"unusable sample: {calls}", logprob, None, kept=False))
        return
    node = parent
    for i, action in enumerate(actions):
        score = scores[i] if scores else None
        node = node.add(TraceNode(action.tag, action.describe(), logprob if i == 0 else None, score, kept=kept))


def unconstrained(ctx: SearchContext) -> SearchResult:
    """Plain generation, parsed in the model's own tool-call format (strict) and leniently."""
    sample = ctx.policy.sample("", 1, temperature=0.0, max_new_tokens=ctx.config.max_new_tokens)[0]
    try:
        strict = ctx.policy.native_format.parse(sample.text)
        calls, text = strict.calls, strict.text
    except FormatError:
        calls, text = [], sample.text
    lenient = parse_calls_lenient(sample.text)
    root = TraceNode()
    _add_path(ctx, root, calls, sample.logprob, None, kept=True)
    ctx.notify(0, root.children)
    return SearchResult(calls, None, sample.logprob, [], root, ctx.cost(), "unconstrained",
                        finished=sample.finished, text=text, format=ctx.policy.native_format.name,
                        lenient_calls=lenient)


def _samples(ctx: SearchContext) -> list[tuple[Sample, list[dict[str, Any]], list[Action] | None]]:
    samples = ctx.policy.sample("", ctx.config.num_samples, temperature=ctx.config.temperature,
                                max_new_tokens=ctx.config.max_new_tokens)
    out = []
    for sample in samples:
        calls = parse_calls_lenient(sample.text) if sample.finished else []
        actions = ctx.grammar.actions_for_calls(calls) if sample.finished else None
        out.append((sample, calls, actions))
    return out


def best_of_n(ctx: SearchContext) -> SearchResult:
    """``num_samples`` complete answers; the best by the PRM's aggregated step scores (outcome ranking).

    Without a PRM the policy's log-probability ranks them. Answers the grammar cannot write (unknown
    tools, invalid values) rank last.
    """
    root = TraceNode()
    ranked = []
    for sample, calls, actions in _samples(ctx):
        if actions is None:
            _add_path(ctx, root, calls, sample.logprob, None, kept=False)
            continue
        path = tuple(zip(ctx.grammar.walk(actions), actions, strict=False))
        scores = ctx.score_path(path)
        score = aggregate(scores, ctx.config.aggregation) if ctx.prm is not None else None
        ranked.append(((score if score is not None else 0.0, sample.logprob), calls, score, sample, scores))
    ranked.sort(key=lambda r: r[0], reverse=True)
    for i, (_, calls, _, sample, scores) in enumerate(ranked):
        _add_path(ctx, root, calls, sample.logprob, scores, kept=i == 0)
    ctx.notify(0, root.children)
    if not ranked:
        return SearchResult([], None, None, [], root, ctx.cost(), "best_of_n", finished=False,
                            format=ctx.policy.native_format.name)
    table = [(calls, score, sample.logprob) for _, calls, score, sample, _ in ranked]
    return SearchResult(table[0][0], table[0][1], table[0][2], distinct_alternatives(table), root, ctx.cost(),
                        "best_of_n", format=ctx.policy.native_format.name)


def majority_vote(ctx: SearchContext) -> SearchResult:
    """``num_samples`` complete answers; the call list written most often (order-free), ties by log-prob."""
    root = TraceNode()
    groups: dict[tuple[str, ...], list[tuple[Sample, list[dict[str, Any]]]]] = defaultdict(list)
    for sample, calls, actions in _samples(ctx):
        if actions is None:
            _add_path(ctx, root, calls, sample.logprob, None, kept=False)
        else:
            groups[calls_key(calls)].append((sample, calls))
    ranked = sorted(groups.values(), key=lambda g: (len(g), max(s.logprob for s, _ in g)), reverse=True)
    for i, group in enumerate(ranked):
        sample, calls = group[0]
        _add_path(ctx, root, calls, sample.logprob, None, kept=i == 0)
    ctx.notify(0, root.children)
    if not ranked:
        return SearchResult([], None, None, [], root, ctx.cost(), "majority", finished=False,
                            format=ctx.policy.native_format.name)
    table = [(g[0][1], len(g) / ctx.config.num_samples, max(s.logprob for s, _ in g)) for g in ranked]
    return SearchResult(table[0][0], table[0][1], table[0][2], distinct_alternatives(table), root, ctx.cost(),
                        "majority", format=ctx.policy.native_format.name)
