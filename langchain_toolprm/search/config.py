"""Search settings: one typed object shared by the API, the chat model and the CLI."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "PATH_AGGREGATIONS",
    "SIBLING_AGGREGATIONS",
    "AdaptiveBudget",
    "Aggregation",
    "Coverage",
    "Guidance",
    "Relevance",
    "SearchConfig",
    "Strategy",
]

Strategy = Literal["beam", "greedy", "unconstrained", "best_of_n", "majority"]
Aggregation = Literal["last", "min", "prod", "mean", "relative", "guided"]
PATH_AGGREGATIONS: tuple[Aggregation, ...] = ("last", "min", "prod", "mean")
"""Aggregations of one path's own step scores."""
SIBLING_AGGREGATIONS: tuple[Aggregation, ...] = ("relative", "guided")
"""Aggregations that score a step against its siblings (`search.engine.relative_scores`, `guided_scores`), then
multiply."""


class Guidance(BaseModel):
    """How much the PRM's judgement counts against the policy's probability under ``guided``, per decision.

    ``guided`` pools the two as a prior and evidence: a candidate's value is the policy's probability
    times the PRM's odds raised to a weight (log p + w * logit s). A weight of 1 takes the PRM's odds
    at face value, 0 leaves the decision to the policy and does not ask the PRM. The weights differ
    by decision because the two models' strengths do: on held-out ``live_*`` decisions the packaged
    PRM tells "call a tool, or answer in text?" better than the policy, and "one more call, or
    stop?" worse, where its odds only take right answers away (docs/benchmarks.md, session 18,
    ``benchmarks/decisions.py``). After tool results the packaged policy, shown tools, wants another
    call almost always, and the PRM tells the answer apart on held-out steps (`toolprm eval-prm`,
    "first step after tool results"): there the PRM decides. Where a weight of at most 1 meets a policy
    already sure of one candidate (``policy_sure``), the PRM's odds changed no held-out answer, so it is
    not asked: most turns then cost the PRM nothing.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    WEIGHTS: ClassVar[tuple[str, ...]] = ("answer", "after_results", "more", "call")
    """The fields that weigh the PRM at a decision (the CLI's ``--NAME-weight`` options)."""

    answer: float = Field(1.0, ge=0.0, description="PRM weight at a turn's first step: which tool to call, or"
                          " answer in text?")
    after_results: float = Field(10.0, ge=0.0, description="PRM weight at that step when tool results have come"
                                 " since the latest user message: call again, or answer from them?")
    more: float = Field(0.0, ge=0.0, description="PRM weight after a call: which tool to call next, or end the"
                        " list?")
    call: float = Field(0.0, ge=0.0, description="PRM weight inside a call: its arguments and their values.")
    policy_sure: float | None = Field(
        0.95, gt=0.5, le=1.0, description="At a decision whose weight is at most 1, the PRM is not asked where the"
        " policy already puts at least this probability on one candidate (None: always asked): its odds would have"
        " to favour another by more than 19 to 1 at 0.95 to change the choice. Chosen on held-out cases: at 0.9 one"
        " answer changed (the PRM's odds also price the path not taken), at 0.95 none. A turn that never asks the"
        " PRM does not encode the conversation for it (docs/benchmarks.md, session 21).")


class Coverage(BaseModel):
    """How beam search checks its finished call lists against the user's request (`search.coverage`).

    The policy is asked the other way round: how likely the request is, written after a list of calls.
    A list that leaves out a part of the request leaves its words unexplained, and one call too many
    explains nothing new. The packaged policy ends lists early, and the packaged PRM judges "one more
    call?" worse than the policy (docs/benchmarks.md, session 18); read backwards, the request tells a
    held-out reference list from its prefixes on 63 of 65 (session 22). Compared whole, lists would be
    weighed by their values too (one that copies the request's words reads it likelier, right or not),
    so by default a list is compared only with longer ones (``count_only``). With it a finished call
    list does not take a beam's place, and a beam goes on past the point where the policy would stop:
    more policy tokens (docs/benchmarks.md).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    weight: float = Field(1.0, gt=0.0, description="How much a list pays per nat by which its request reads less"
                          " likely than after the best-explaining finished list (beyond the margin): its score is"
                          " multiplied by exp(-weight * shortfall).")
    margin: float = Field(3.0, ge=0.0, description="Nats of the request's log-probability a list may fall short of"
                          " the best one without paying, and that a further call must add for its beam to go on: it"
                          " lies between what a missing call costs the request and what a repeated call adds, on"
                          " held-out requests (docs/benchmarks.md, session 22).")
    drop_on: Literal["gain", "words", "call_words"] = Field(
        "gain", description="What a beam's latest call must add for the beam to go on: \"gain\", the request read"
        " back likelier by the margin after it; \"words\", a word of the request that no earlier call copies as"
        " often in its function's name or its values (`search.copying`, words matched by their stems and counted;"
        " nothing is read for it); \"call_words\", words of the request that no one earlier call copies all of as"
        " often (a cross product's last call goes on). A first call always goes on.")
    count_only: bool = Field(True, description="Compare a finished call list only with the longer finished lists"
                             " (is a call missing?) and keep the best call list's score, so lists of one length are"
                             " ranked by the PRM and the policy, values included, and an answer in text neither waits"
                             " aside nor moves. Off: every list against the best-explaining one, answers in text"
                             " waiting aside too, which let values that copy the request's words win and moved calls"
                             " to text on BFCL (docs/benchmarks.md, sessions 22 and 24).")


class Relevance(BaseModel):
    """How beam search checks, at a turn's first decision, that a tool has to do with the request (`search.relevance`).

    The policy reads the user's latest request after each tool's description and after nothing; what
    the description adds to the request's log-probability (nats) is the tool's relevance, and the best
    tool's is the request's. Where that falls short of ``threshold``, calling any tool costs ``weight``
    log-odds per nat of shortfall, so the answer in text wins where the policy would call although no
    tool explains the request. It decides "call or answer?" only, never which tool; it acts only where
    answering in text is allowed (``tool_choice`` auto), and not after tool results.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: float = Field(0.0, description="Nats the best tool's description must add to the request's"
                             " log-probability before calling costs nothing.")
    weight: float = Field(1.0, gt=0.0, description="Log-odds taken off calling per nat the best tool's relevance"
                          " falls short of the threshold.")


class AdaptiveBudget(BaseModel):
    """How beam search spends less than its fixed budget where a decision is already clear.

    The paper fixes N and M by grid search for a whole dataset; most steps of a call are not in doubt
    (the policy puts nearly all its probability on one function name, or the PRM already ranks one
    beam far ahead), and a few are ("one more call, or stop?"). With this set, ``beam_width`` and
    ``num_beams`` are caps: each step the PRM judges only the candidates the policy leaves in doubt,
    and only the beams the PRM leaves in doubt are kept. A large M cap then costs little on clear
    steps and explores where it matters.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy_mass: float = Field(
        0.9, gt=0.0, le=1.0, description="Per state, the PRM judges the fewest candidates, best first, whose policy"
        " probabilities add up to this (at most M); a state left with one candidate takes it without the PRM. A state"
        " where ending the list is a candidate is always judged whole.")
    score_margin: float = Field(
        0.15, ge=0.0, description="Beams whose score trails the best beam's by more than this are not kept (at most"
        " N stay): where the PRM is sure, fewer beams go on.")


class SearchConfig(BaseModel):
    """How much compute to spend on one tool-call turn, and how.

    The paper's rule is "explore more, retain less": a large ``beam_width`` (M candidates per beam
    and step) with a small ``num_beams`` (N beams kept), because a wrong step in a structured call
    cannot be repaired later.

    ``aggregation`` ranks paths of different lengths against each other: a "no call" answer is one
    step, a call six or more. ``min`` and ``prod`` can only fall as a path grows, so an imperfect PRM
    (one that scores right steps below 1.0) makes them favour stopping early and argument-free
    functions; ``mean`` lets a long list of calls, each judged fine, outscore ending the list.
    ``relative`` divides each step's score by the best score among the candidates of its state: a
    path pays only where it passed over a step the PRM preferred, so "one more call, or stop?" is
    decided by the PRM's comparison of the two, not by path length. ``guided`` does the same with
    the policy's probability of each step times the PRM's odds, weighted per decision (`Guidance`):
    the PRM reweights what the policy would write, so the policy still decides where the PRM judges
    its candidates alike or is known to judge worse. Best-of-n, whose answers have no sibling
    candidates, ranks by the product of the PRM's scores under both. ``guided`` is the default: on
    held-out BFCL ``live_*`` decisions the packaged PRM adds to the policy only at a turn's first
    step, and every path aggregation lets it overrule the policy where it judges worse ("one more
    call?", argument values) and loses cases greedy answers right (docs/benchmarks.md, sessions 16
    and 18). ``relative`` leaves "call or answer?" and "stop?" to the PRM's one judgement, which
    answers irrelevance best and stops parallel requests after one call. ``max_calls`` bounds the
    list ``mean`` can grow. docs/benchmarks.md measures each.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy: Strategy = "beam"
    num_beams: int = Field(2, ge=1, description="N: beams kept after each step.")
    beam_width: int = Field(4, ge=1, description="M: candidate steps proposed per beam and step.")
    aggregation: Aggregation = Field(
        "guided", description="How step scores combine into a beam's score (see the class docstring).")
    num_samples: int = Field(8, ge=1, description="Complete samples for best_of_n and majority.")
    temperature: float = Field(0.8, ge=0.0, description="Sampling temperature for free values and samples.")
    guidance: Guidance = Field(default_factory=Guidance, description="``guided`` only: the PRM's weight per"
                               " decision (see Guidance).")
    stop_bias: float = Field(
        -1.0, description="Log-odds added to the policy's preference for ending the call list once it holds a"
        " call, in every strategy that walks the grammar. Negative: the policy must be surer before it stops"
        " (the packaged 0.5B ends lists early; the default is chosen on held-out decisions, docs/benchmarks.md).")
    forget_dead_calls: bool = Field(
        False, description="``relative`` and ``guided``: once every beam that followed a next call has died (each"
        " value it wrote repeats a call already made), price ending the list against the calls left, not against"
        " that one (`search.siblings`). Off: on held-out cases it won none and lost one answer in text to a list"
        " of calls run to its end, as greedy writes it (docs/benchmarks.md, session 19).")
    greedy_values: bool = Field(
        False, description="``guided``: a free value the PRM has no say in (weight 0) is the policy's likeliest"
        " one alone, as greedy writes it, sampled only if it does not fit its schema: beam then decodes less and"
        " sooner. Off, M samples are drawn beside it and the policy's probability of each whole value ranks them; on"
        " held-out cases a sample beat greedy's value once, and the option won none (docs/benchmarks.md, session 20).")
    max_calls: int = Field(8, ge=1, description="Most calls in one turn.")
    parallel_tool_calls: bool = Field(True, description="Allow several calls in one turn.")
    repeat_calls: bool = Field(
        False, description="When the model may choose (tool_choice auto), allow a call identical to one whose"
        " result the conversation already holds since its latest user message: for tools whose result changes"
        " between identical calls. Off, an agent cannot loop on one call.")
    max_value_tokens: int = Field(64, ge=1, description="Token limit for one sampled argument value.")
    max_new_tokens: int = Field(256, ge=1, description="Token limit for free text (answers, unconstrained).")
    max_steps: int = Field(256, ge=1, description="Search rounds before giving up on unfinished beams.")
    time_limit: float | None = Field(
        None, gt=0, description="Wall-clock seconds for one search, prompt encoding included; checked before each"
        " round, so a search ends at most one round late. The best finished answer is kept; with none, the"
        " half-built call is reported unfinished. A text answer is not started once the time is up.")
    coverage: Coverage | None = Field(
        None, description="Beam search only: rank finished call lists by how much of the user's request they explain"
        " too, as the policy reads it (see Coverage); None (the default) ranks them by the PRM and the policy alone."
        " Not the default: on held-out composed requests it wrote as many calls as asked more often and stopped lists"
        " that ran to the call limit, but on unseen BFCL parallel and parallel_multiple cases it won three and lost"
        " three against the defaults (22 of 40 each), at 1.7x their tokens (docs/benchmarks.md, sessions 22 and 24).")
    relevance: Relevance | None = Field(
        default_factory=Relevance, description="Beam search only: at a turn's first decision, calling costs log-odds"
        " where no tool's description makes the request likelier, as the policy reads it (see Relevance); None leaves"
        " \"call or answer in text?\" to the policy and the PRM. Chosen on held-out cases: 23 of 35 right against 17"
        " without it, all ten irrelevance cases answered in text, no right call lost; on BFCL irrelevance 15 of 20"
        " against 3, at about 110 more policy tokens a one-tool request (docs/benchmarks.md, session 23).")
    adaptive: AdaptiveBudget | None = Field(
        None, description="Beam search only: N and M become caps, chosen per step from the policy's and the"
        " PRM's certainty (see AdaptiveBudget); None keeps them fixed.")
    answer_in_text: bool = Field(False, description="When the turn has no call, let the policy write the answer.")
    seed: int | None = Field(0, description="Random seed for sampling; None for fresh randomness.")
