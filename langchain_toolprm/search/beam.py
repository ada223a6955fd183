"""Step-level beam search over the grammar, and its one-beam policy-only special case (greedy)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace

from langchain_toolprm.grammar import GrammarState, StepTag
from langchain_toolprm.messages import answers_tool_results
from langchain_toolprm.search.budget import in_doubt, retained
from langchain_toolprm.search.config import SIBLING_AGGREGATIONS, Guidance
from langchain_toolprm.search.engine import Path, Proposal, SearchContext, aggregate, distinct_alternatives
from langchain_toolprm.search.results import SearchResult, TraceNode
from langchain_toolprm.search.siblings import Ledger, Siblings, Step

__all__ = ["beam_search", "greedy_search"]


@dataclass(frozen=True)
class Beam:
    """A partial path with what the policy and the PRM said of it (``steps``: its decisions, not forced moves)."""

    state: GrammarState
    path: Path
    steps: tuple[Step, ...]
    logprob: float
    node: TraceNode

    def extend(self, ctx: SearchContext, proposal: Proposal, step: Step | None, node: TraceNode) -> Beam:
        return Beam(
            state=ctx.grammar.apply(self.state, proposal.action),
            path=(*self.path, (self.state, proposal.action)),
            steps=self.steps if step is None else (*self.steps, step),
            logprob=self.logprob + proposal.logprob,
            node=node,
        )


def _force(ctx: SearchContext, beam: Beam) -> Beam:
    """Take forced moves (a single legal action) without asking the policy or the PRM."""
    while not beam.state.done:
        decision = ctx.grammar.decision(beam.state)
        if not decision.forced:
            break
        action = decision.actions[0]
        node = beam.node.add(TraceNode(action.tag, action.describe(), forced=True))
        beam = replace(beam.extend(ctx, Proposal(action, 0.0), None, node))
    return beam


def _key(ctx: SearchContext, ledger: Ledger, beam: Beam) -> tuple[float, float]:
    """The PRM decides; the policy breaks its ties (and decides alone without a PRM)."""
    return aggregate(ledger.scores(beam.steps), ctx.config.aggregation), beam.logprob


def _covered_keys(ctx: SearchContext, ledger: Ledger, finished: list[Beam]) -> list[tuple[float, float]]:
    """`_key` of each finished beam, its score discounted where its calls leave the request less explained.

    A call list whose request reads ``margin`` nats or more less likely than after the best-explaining
    rival (`SearchConfig.coverage`: a longer finished list under ``count_only``, else any) pays
    ``exp(-weight * shortfall)``; an answer in text pays nothing. So a list that leaves out a part of the
    request loses to one that makes it, whatever the policy's preference for stopping, and a call that
    explains nothing new does not win a list over the one without it. Under ``count_only`` the call lists
    are then scaled so that the best of them keeps the score the best had before: the check reorders call
    lists and leaves "call or answer in text?" where it was; lists of one length read nothing.
    """
    keys = [_key(ctx, ledger, b) for b in finished]
    settings = ctx.config.coverage
    if ctx.coverage is None or settings is None:
        return keys
    listed = [i for i, b in enumerate(finished) if b.state.calls]
    counts = [len(finished[i].state.calls) for i in listed]
    if settings.count_only and len(set(counts)) < 2:
        return keys
    read = ctx.coverage.scores([finished[i].state.call_dicts() for i in listed])
    plain = max((keys[i][0] for i in listed), default=0.0)
    for i, count, value in zip(listed, counts, read, strict=True):
        rivals = [v for c, v in zip(counts, read, strict=True) if c > count] if settings.count_only else read
        shortfall = max(0.0, max(rivals, default=value) - value - settings.margin)
        keys[i] = (keys[i][0] * math.exp(-settings.weight * shortfall), keys[i][1])
    top = max((keys[i][0] for i in listed), default=0.0)
    if settings.count_only and top > 0:
        for i in listed:
            keys[i] = (keys[i][0] * plain / top, keys[i][1])
    return keys


def _result(ctx: SearchContext, ledger: Ledger, finished: list[Beam], unfinished: list[Beam], root: TraceNode
            ) -> SearchResult:
    if finished:
        keyed = sorted(zip(_covered_keys(ctx, ledger, finished), finished, strict=True), key=lambda kb: kb[0],
                       reverse=True)
        finished = [b for _, b in keyed]
        ranked = [(b.state.call_dicts(), key[0] if ctx.prm is not None else None, b.logprob) for key, b in keyed]
        best = finished[0]
        return SearchResult(ranked[0][0], ranked[0][1], best.logprob, distinct_alternatives(ranked), root,
                            ctx.cost(), ctx.config.strategy, format=ctx.policy.format.name)
    best_partial = max(unfinished, key=lambda b: _key(ctx, ledger, b)) if unfinished else None
    partial = None
    if best_partial is not None and best_partial.state.function is not None:
        state = best_partial.state
        partial = {"name": state.function, "arguments": {p: json.loads(v) for p, v in state.arguments}}
    calls = best_partial.state.call_dicts() if best_partial else []
    return SearchResult(calls, None, None, [], root, ctx.cost(), ctx.config.strategy, finished=False,
                        format=ctx.policy.format.name, partial=partial)


def _weight(guidance: Guidance, state: GrammarState, after_results: bool) -> float:
    """The PRM's weight under ``guided`` at the decision ``state`` is in (`Guidance`)."""
    if state.function is not None:
        return guidance.call
    if state.calls:
        return guidance.more
    return guidance.after_results if after_results else guidance.answer


def _asked_weight(weight: float, guidance: Guidance, proposals: list[Proposal]) -> float:
    """``weight``, or 0 (the PRM is not asked) where it is at most 1 and the policy is sure (`Guidance.policy_sure`).

    At a weight of 1 or less the PRM's odds overturn a choice the policy makes with probability p only
    where they favour another candidate by more than p to 1 - p (19 to 1 at 0.95). A higher weight lets the
    PRM decide (after tool results, where the policy is sure and wrong), and it is asked.
    """
    sure = guidance.policy_sure
    if sure is None or weight > 1.0 or not any(p.logprob >= math.log(sure) for p in proposals):
        return weight
    return 0.0


def _settled(ctx: SearchContext, ledger: Ledger, finished: list[Beam], active: list[Beam]) -> bool:
    """Whether no active beam can still overtake the best finished one.

    Under ``min``, ``prod``, ``relative`` and ``guided`` a path's score never rises as it grows, and
    its log-probability (the tie-break) never does either; so once the best finished beam ranks at or
    above every active one, further rounds would only spend compute (a PRM that likes "one more call"
    would otherwise let the beams run to the call limit). With ``forget_dead_calls`` a finished
    path's score can rise, once a call beside its end dies; an active path ends in no list's end, so
    its score cannot: a rise only settles the search sooner. With a coverage check a longer list can
    still overtake a finished one by explaining more of the request, so nothing settles early.
    """
    if (not finished or ctx.prm is None or ctx.coverage is not None
            or ctx.config.aggregation not in ("min", "prod", *SIBLING_AGGREGATIONS)):
        return False
    best = max(_key(ctx, ledger, b) for b in finished)
    return all(_key(ctx, ledger, b) <= best for b in active)


def _waits_aside(ctx: SearchContext, beam: Beam) -> bool:
    """Whether a finished beam leaves the beam for the final ranking (`SearchConfig.coverage`).

    So the beams go on past the point where the policy would stop, and a longer list can be read. An
    answer in text waits aside only where whole lists are compared: under ``count_only`` it competes for
    a beam's place at the first step, as without the check.
    """
    settings = ctx.config.coverage
    if ctx.coverage is None or settings is None or not beam.state.done:
        return False
    return bool(beam.state.calls) or not settings.count_only


def _explaining(ctx: SearchContext, ledger: Ledger, active: list[Beam], finished: list[Beam]) -> list[Beam]:
    """The active beams, less those whose latest call adds nothing to the request (`Coverage.drop_on`).

    It adds nothing where the request reads less than the margin likelier after it, or, by words, where
    it copies no word of the request more often than the calls before it had. Such a call is one too many (a
    repeat of a part already made, or a part the request does not have); the list without it is finished
    already, and the beam would only go on adding calls up to ``max_calls``. A first call is always kept:
    the list without it is no call at all. The dropped beam is a dead end (`search.siblings`): the end of
    the list it passed over is no longer priced against it.
    """
    settings = ctx.config.coverage
    if ctx.coverage is None or settings is None:
        return active
    grown = [b for b in active if b.state.function is None and len(b.state.calls) > 1]
    if not grown:
        return active
    if settings.drop_on != "gain":
        per_call = settings.drop_on == "call_words"
        short = {id(b) for b in grown if not ctx.coverage.adds_words(b.state.call_dicts(), per_call=per_call)}
    else:
        lists = [c for b in grown for c in (b.state.call_dicts(), b.state.call_dicts()[:-1])]
        read = ctx.coverage.scores(lists)
        short = {id(b) for b, after, before in zip(grown, read[::2], read[1::2], strict=True)
                 if after - before < settings.margin}
    if not short:
        return active
    for beam in active:
        if id(beam) in short:
            ledger.dead_end(beam.steps)
    kept = [b for b in active if id(b) not in short]
    ledger.live(b.steps for b in [*finished, *kept])
    return kept


def beam_search(ctx: SearchContext) -> SearchResult:
    """Keep N beams; expand each with M proposals; keep the N best by aggregated PRM score.

    Finished beams leave the beam and wait for the final ranking; the search ends when no beam is
    left. Beams that reach the same state merge (the better one stays). A beam with no legal step left
    dies; with ``forget_dead_calls`` a call that led only there stops pricing the end of the list
    (`search.siblings`). With an adaptive budget, M and N are caps: the PRM judges only the proposals
    the policy leaves in doubt (one left is taken unjudged, like a forced move), and only beams near
    the best one's score go on (`search.budget`). With a coverage check (`SearchConfig.coverage`) a
    finished call list waits aside instead of taking a beam's place (`_waits_aside`), a beam whose
    latest call explains nothing new of the request is dropped (`_explaining`), and the final ranking
    discounts the lists that explain less of it (`_covered_keys`).
    """
    config = ctx.config
    root = TraceNode()
    active = [Beam(ctx.grammar.initial(), (), (), 0.0, root)]
    finished: list[Beam] = []
    last: list[Beam] = active
    ledger = Ledger()
    follow_up = answers_tool_results(ctx.messages)
    for round_ in range(config.max_steps):
        active = [_force(ctx, b) for b in active]
        finished += [b for b in active if b.state.done]
        active = _explaining(ctx, ledger, [b for b in active if not b.state.done], finished)
        if not active or _settled(ctx, ledger, finished, active):
            break
        last = active
        if ctx.out_of_time():
            break
        guided = config.aggregation == "guided"
        weights = [_weight(config.guidance, b.state, follow_up) if guided else 1.0 for b in active]
        proposals = ctx.propose([b.state for b in active], config.beam_width, config.temperature, mode=True,
                                mode_only=[config.greedy_values and weight == 0 for weight in weights])
        children: dict[GrammarState, Beam] = {}
        nodes: list[TraceNode] = []
        if config.adaptive is not None:
            proposals = [in_doubt(props, config.adaptive) for props in proposals]
        if config.forget_dead_calls:
            for beam, props in zip(active, proposals, strict=True):
                if not props:
                    ledger.dead_end(beam.steps)
            ledger.live([*(b.steps for b, props in zip(active, proposals, strict=True) if props),
                         *(b.steps for b in finished)])
        # With an adaptive budget, a state left with one proposal takes it unjudged; under `guided`, a
        # decision whose PRM weight is 0, or where the policy is sure, is the policy's alone.
        if guided:
            weights = [_asked_weight(weight, config.guidance, props)
                       for weight, props in zip(weights, proposals, strict=True)]
        judged = [(config.adaptive is None or len(props) != 1) and weight > 0
                  for props, weight in zip(proposals, weights, strict=True)]
        asked = ctx.score_many([(beam.path, beam.state, [p.action for p in props])
                                for beam, props, judge in zip(active, proposals, judged, strict=True) if judge])
        for beam, props, judge, weight in zip(active, proposals, judged, weights, strict=True):
            scores: list[float | None] = asked.pop(0) if judge else [None] * len(props)
            end = next((i for i, p in enumerate(props) if p.action.tag is StepTag.TOTAL_FINISH), None)
            siblings = Siblings(config.aggregation, scores, [p.logprob for p in props], weight, end)
            for index, (proposal, score) in enumerate(zip(props, scores, strict=True)):
                action = proposal.action
                node = beam.node.add(TraceNode(action.tag, action.describe(), proposal.logprob, score, kept=False))
                nodes.append(node)
                child = beam.extend(ctx, proposal, (siblings, index), node)
                other = children.get(child.state)
                if other is None or _key(ctx, ledger, child) > _key(ctx, ledger, other):
                    children[child.state] = child
        ranked = sorted(children.values(), key=lambda b: _key(ctx, ledger, b), reverse=True)
        aside = [_waits_aside(ctx, b) for b in ranked]  # a finished list waits for the final ranking
        done = [b for b, waits in zip(ranked, aside, strict=True) if waits]
        ranked = [b for b, waits in zip(ranked, aside, strict=True) if not waits]
        active = done + (ranked[: config.num_beams] if config.adaptive is None
                         else retained(ranked, lambda b: _key(ctx, ledger, b)[0], config.num_beams, config.adaptive))
        for beam in active:
            beam.node.kept = True
        if config.forget_dead_calls or ctx.coverage is not None:
            ledger.live(b.steps for b in [*finished, *active])
        ctx.notify(round_, nodes)
    return _result(ctx, ledger, finished, last if not finished else [], root)


def greedy_search(ctx: SearchContext) -> SearchResult:
    """The policy's argmax at every step of the same grammar: the constrained base model, no PRM.

    A dead end (no valid value, or only a duplicate call left) backtracks to the latest decision with
    an untried alternative, so greedy never fails where the grammar can still finish.
    """
    config = ctx.config
    root = TraceNode()
    beam = Beam(ctx.grammar.initial(), (), (), 0.0, root)
    untried: list[tuple[Beam, list[tuple[Proposal, TraceNode]]]] = []
    for round_ in range(config.max_steps):
        beam = _force(ctx, beam)
        if beam.state.done:
            return _result(ctx, Ledger(), [beam], [], root)
        if ctx.out_of_time():
            break
        proposals = ctx.propose([beam.state], config.beam_width, 0.0)[0]
        if not proposals and ctx.grammar.decision(beam.state).free:
            proposals = ctx.propose([beam.state], config.beam_width, config.temperature)[0]
        if not proposals:
            beam.node.kept = False
            while untried and not untried[-1][1]:
                untried.pop()
            if not untried:
                return _result(ctx, Ledger(), [], [beam], root)
            parent, alternatives = untried[-1]
            choice, node = alternatives.pop(0)
            node.kept = True
            beam = parent.extend(ctx, choice, None, node)
            continue
        nodes = [
            beam.node.add(TraceNode(p.action.tag, p.action.describe(), p.logprob, kept=i == 0))
            for i, p in enumerate(proposals)
        ]
        untried.append((beam, list(zip(proposals[1:], nodes[1:], strict=True))))
        beam = beam.extend(ctx, proposals[0], None, nodes[0])
        ctx.notify(round_, nodes)
    return _result(ctx, Ledger(), [], [beam], root)
