"""What every grammar-walking strategy shares: proposing steps, scoring them, ranking paths.

The policy proposes: finite choices are enumerated with their log-probabilities in one batched pass
over all states being expanded; free values are sampled (under their JSON schema where the policy can
constrain decoding, `langchain_toolprm.constrained`), read, validated and de-duplicated. The PRM
scores the proposals of one state together. Strategies only decide what to keep.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from langchain_toolprm.grammar import Action, Grammar, GrammarState, StepTag, canonical_json
from langchain_toolprm.lm import Sample, logsumexp
from langchain_toolprm.messages import ChatMessage
from langchain_toolprm.policy.base import PolicySession, SampleRequest
from langchain_toolprm.prm.base import PRMSession
from langchain_toolprm.search.config import SIBLING_AGGREGATIONS, Aggregation, SearchConfig
from langchain_toolprm.search.coverage import CoverageScorer
from langchain_toolprm.search.relevance import RelevanceScorer
from langchain_toolprm.search.results import Alternative, Cost, TraceNode
from langchain_toolprm.search.values import read_value, value_end
from langchain_toolprm.tools import ToolSpec

__all__ = [
    "Path",
    "Proposal",
    "SampleRounds",
    "SearchContext",
    "StepListener",
    "aggregate",
    "guided_scores",
    "relative_scores",
    "run_rounds",
]

Path = tuple[tuple[GrammarState, Action], ...]
StepListener = Callable[[int, list[TraceNode]], None]
"""Called after each search round with the round number and the nodes it explored (kept or pruned)."""
T = TypeVar("T")
SampleRound = tuple[list[SampleRequest], float]
SampleRounds = Generator[SampleRound, list[list[Sample]], T]
"""A computation that yields batches of sample requests (with their temperature), takes their samples
back, and returns its result; whoever drives it decides how the requests are decoded."""


@dataclass(frozen=True)
class Proposal:
    """A candidate step with the policy's log-probability of it."""

    action: Action
    logprob: float


def aggregate(scores: Sequence[float], how: Aggregation) -> float:
    """Combine step scores into a path score; an unscored path counts as perfect.

    ``relative`` and ``guided`` scores arrive already divided by the best score among each step's
    candidates (`relative_scores`), so they combine as a product.
    """
    if not scores:
        return 1.0
    if how == "last":
        return scores[-1]
    if how == "min":
        return min(scores)
    if how == "prod" or how in SIBLING_AGGREGATIONS:
        return math.prod(scores)
    return sum(scores) / len(scores)


def relative_scores(scores: Sequence[float | None], alive: Sequence[bool] | None = None) -> list[float | None]:
    """Each candidate's PRM score over the best one's among the candidates of the same state.

    A path that takes the PRM's preferred step at every decision then scores 1.0 whatever its
    length, and a path pays only where it passed over a step the PRM preferred: "one more call, or
    stop?" is decided by how the PRM compares the two at that state, not by how many steps (each
    judged below 1.0 by an imperfect PRM) the longer answer still has to take.

    Without a PRM there are no scores (``None``), and nothing to compare: they stay ``None``. With
    ``alive``, only the candidates marked alive set the best (`search.siblings`: a call that cannot be
    made no longer prices the end of the list beside it).
    """
    best = max((s for s, live in zip(scores, _mask(alive, len(scores)), strict=True) if s is not None and live),
               default=0.0)
    return [None if s is None else s / best if best > 0 else 1.0 for s in scores]


def guided_scores(scores: Sequence[float | None], logprobs: Sequence[float], weight: float,
                  alive: Sequence[bool] | None = None) -> list[float]:
    """`relative_scores` of the policy's probability times the PRM's odds to the power ``weight``.

    The policy's probability is the prior and the PRM's odds the evidence (`Guidance`); an unjudged
    candidate (``None``) keeps its prior. Odds, not the score itself: a PRM's 0.9 against 0.6 is
    evidence of 6 to 1.5, which a ratio of 1.5 would understate.
    """
    pooled = [lp + (weight * _logit(s) if s is not None and weight else 0.0)
              for s, lp in zip(scores, logprobs, strict=True)]
    best = max((v for v, live in zip(pooled, _mask(alive, len(pooled)), strict=True) if live), default=0.0)
    return [math.exp(v - best) for v in pooled]


def _mask(alive: Sequence[bool] | None, n: int) -> Sequence[bool]:
    """Which candidates set the best: those alive, or all of them when none is (or no mask is given)."""
    return alive if alive is not None and any(alive) else [True] * n


def _logit(score: float) -> float:
    score = min(max(score, 1e-6), 1.0 - 1e-6)
    return math.log(score / (1.0 - score))


class SearchContext:
    """One search's model sessions, grammar and counters.

    Args:
        messages: The conversation.
        specs: The bound tools.
        grammar: Legal steps over the tools.
        policy: The policy session (prompt encoded).
        prm: The PRM session, or ``None`` to rank by the policy alone.
        config: Search settings.
        listener: Progress callback.
        started: When the search began (`time.perf_counter`), if before this context (prompt encoding);
            the time limit and the wall-clock cost count from it.
        coverage: Reads the request after call lists (`SearchConfig.coverage`), or ``None``.
        relevance: Reads the request after each tool's description (`SearchConfig.relevance`), or ``None``.

    """

    def __init__(self, messages: Sequence[ChatMessage], specs: Sequence[ToolSpec], grammar: Grammar,
                 policy: PolicySession, prm: PRMSession | None, config: SearchConfig,
                 listener: StepListener | None = None, started: float | None = None,
                 coverage: CoverageScorer | None = None, relevance: RelevanceScorer | None = None):
        self.messages = messages
        self.specs = specs
        self.grammar = grammar
        self.policy = policy
        self.prm = prm
        self.config = config
        self.listener = listener
        self.coverage = coverage
        self.relevance = relevance
        self.prm_candidates = 0
        self.invalid_values = 0
        self.started = time.perf_counter() if started is None else started
        self.timed_out = False

    def out_of_time(self) -> bool:
        """Whether the time limit has passed; once it has, `timed_out` records that it ended the search."""
        limit = self.config.time_limit
        if limit is not None and time.perf_counter() - self.started >= limit:
            self.timed_out = True
        return self.timed_out

    # -- text -----------------------------------------------------------------------------------
    def text(self, state: GrammarState) -> str:
        """The assistant text of a state in the session's call format."""
        return self.policy.format.render(state)

    # -- proposing ------------------------------------------------------------------------------
    def propose(self, states: Sequence[GrammarState], width: int, temperature: float, *, mode: bool = False,
                mode_only: Sequence[bool] = ()) -> list[list[Proposal]]:
        """Up to ``width`` proposals per state, best first by the policy's log-probability.

        Enumerated decisions of all states share one forward pass; free values of all states are
        sampled in one decoding batch. With ``mode``, the policy's most likely value (decoded at
        temperature 0, one batch more) is a candidate beside the samples: samples alone may miss it,
        and a search whose PRM has no say inside a call (`Guidance`) should not write a less likely
        value than greedy would. A state marked in ``mode_only`` takes that value alone, as greedy
        does, and is sampled only if it does not fit: where nothing but the policy ranks the values,
        a less likely sample can win only after the likeliest fails, and drawing M of them at every
        value would cost a beam more than greedy for that alone.
        """
        return self.propose_with(states, width, temperature, mode=mode, mode_only=mode_only)[0]

    def propose_with(self, states: Sequence[GrammarState], width: int, temperature: float,
                     extra: Sequence[SampleRequest] = (), *, mode: bool = False, mode_only: Sequence[bool] = ()
                     ) -> tuple[list[list[Proposal]], list[list[Sample]]]:
        """`propose`, with ``extra`` sample requests decoded in the same batch as the values.

        Rollouts use it to sample whole answers alongside the branch values, for the price of one.

        Returns:
            The proposals per state, and the samples per extra request.

        """
        return run_rounds(self.propose_rounds(states, width, temperature, extra, mode=mode, mode_only=mode_only),
                          self.policy.sample_many)

    def propose_rounds(self, states: Sequence[GrammarState], width: int, temperature: float,
                       extra: Sequence[SampleRequest] = (), *, mode: bool = False, mode_only: Sequence[bool] = ()
                       ) -> SampleRounds[tuple[list[list[Proposal]], list[list[Sample]]]]:
        """`propose_with` as a coroutine that hands its decoding out.

        It yields each batch of sample requests with its temperature and takes their samples back, so
        a caller running many searches (a data build) can decode the requests of all of them in one
        batch (`Policy.sample_across`); `run_rounds` drives it alone.
        """
        decisions = [self.grammar.decision(s) for s in states]
        enumerated = self._enumerate([(s, d.actions) for s, d in zip(states, decisions, strict=True) if not d.free])
        free = [(i, s, d.value_schema or {}) for i, (s, d) in enumerate(zip(states, decisions, strict=True)) if d.free]
        only = {i for i, flag in enumerate(mode_only) if flag}
        values, extra_samples = yield from self._sample_values(free, width, temperature, extra, mode, only)
        out = []
        for i in range(len(states)):
            found = values.pop(i) if i in values else enumerated.pop(0)
            out.append(sorted(found, key=lambda p: -p.logprob)[:width])
        return out, extra_samples

    def _enumerate(self, groups: list[tuple[GrammarState, Sequence[Action]]]) -> list[list[Proposal]]:
        """Log-probabilities of every enumerated action, all groups in one request to the policy."""
        plans = [self._plan(state, actions) for state, actions in groups]
        items = [item for plan in plans for item in plan.items]
        logprobs = self.policy.token_logprobs(items) if items else []
        out, offset = [], 0
        for plan in plans:
            out.append(plan.resolve(logprobs[offset : offset + len(plan.items)]))
            offset += len(plan.items)
        return out

    def _plan(self, state: GrammarState, actions: Sequence[Action]) -> _Plan:
        fmt, text = self.policy.format, self.text(state)
        calls = [a for a in actions if a.tag is StepTag.FUNC_NAME]
        if not calls:
            return _Plan(actions, [(text, fmt.continuation(state, a)) for a in actions])
        # "Call or finish?" and "which function?" are separate questions: the first is read off the
        # call opener, the second off the function names alone, so the fixed JSON around a name (which a
        # model may prefer pretty-printed) weighs on neither.
        index = len(state.calls)
        names = [(text + fmt.call_head(index), _json(a.name)) for a in calls]
        finish = Action.finish() in actions
        if index == 0:
            # Before any call, "finish" means answering in text, which has no text of its own to score:
            # it gets what the call openings leave over. Every opening counts (tags, a fence, bare JSON),
            # or a model that writes its calls another way than the format would be scored as answering.
            p_call = math.exp(self.policy.opening_logprob(text, fmt.openings()))
            # With a relevance check, calling where no tool explains the request costs log-odds, here where
            # answering in text is the alternative: before the M best are kept, so the answer stays in them.
            off = self.relevance.penalty() if self.relevance is not None and finish else 0.0
            first = (math.log(max(p_call, 1e-12)) + off, math.log(max(1.0 - p_call, 1e-12)) if finish else -math.inf)
            return _Plan(actions, names, calls=calls, finish=finish, first=first)
        items = [(text, fmt.branch(index)), *names]
        if finish:
            items.append((text, fmt.continuation(state, Action.finish())))
        return _Plan(actions, items, calls=calls, finish=finish, stop_bias=self.config.stop_bias)

    def _sample_values(self, free: list[tuple[int, GrammarState, Mapping[str, Any]]], width: int, temperature: float,
                       extra: Sequence[SampleRequest], mode: bool, only: set[int]
                       ) -> SampleRounds[tuple[dict[int, list[Proposal]], list[list[Sample]]]]:
        """Sampled, read, validated and de-duplicated values per free state (keyed by its index).

        With ``mode``, the value decoded at temperature 0 joins each state's samples (`propose`), decoded
        in the samples' batch; the states in ``only`` take it alone, and are sampled only if it does not
        fit. A state whose samples are all invalid gets one more batch at temperature 1 or more, where a
        too-confident model may find a value that fits the schema.
        """
        found: dict[int, list[Proposal]] = {}
        extra_samples: list[list[Sample]] = [[] for _ in extra]
        modes = [f for f in free if f[0] in only or (mode and temperature > 0)]
        pending = [f for f in free if f[0] not in only]
        n = 1 if temperature == 0 else width
        for attempt, attempt_temperature in enumerate((temperature, max(temperature, 1.0))):
            if not pending and not modes and (attempt or not extra):
                break
            greedy = [SampleRequest(self.text(state), 1, self.config.max_value_tokens, value_end, schema, greedy=True)
                      for _, state, schema in modes]
            requests = [SampleRequest(self.text(state), n, self.config.max_value_tokens, value_end, schema)
                        for _, state, schema in pending]
            riders = list(extra) if attempt == 0 else []
            batches = yield greedy + requests + riders, attempt_temperature
            decoded = {index: samples for (index, _, _), samples in zip(modes, batches, strict=False)}
            sampled = batches[len(greedy) : len(greedy) + len(requests)]
            if riders:
                extra_samples = batches[len(greedy) + len(requests) :]
            tried = [*((f, decoded[f[0]]) for f in modes if f[0] in only),
                     *((f, [*decoded.get(f[0], []), *samples]) for f, samples in zip(pending, sampled, strict=True))]
            retry = []
            for (index, state, schema), samples in tried:
                proposals = self._read_values(state, schema, samples)
                if proposals:
                    found[index] = proposals
                else:
                    retry.append((index, state, schema))
            modes, pending, n = [], retry, max(n, width)
        for index, *_ in pending:
            found[index] = []
        return found, extra_samples

    def _read_values(self, state: GrammarState, schema: Mapping[str, Any], samples: Sequence[Sample]
                     ) -> list[Proposal]:
        spec = self.grammar.spec(state.function or "")
        by_value: dict[str, dict[tuple[int, ...], float]] = {}
        for sample in samples:
            ok, value = read_value(sample.text.strip(), schema) if sample.finished else (False, None)
            if not ok or not spec.value_is_valid(state.param or "", value):
                self.invalid_values += 1
                continue
            action = Action.set_value(value)
            by_value.setdefault(action.value_json or "", {})[sample.token_ids] = sample.logprob
        return [Proposal(Action(StepTag.ARG_VALUE, value_json=v), logsumexp(list(seqs.values())))
                for v, seqs in by_value.items()]

    # -- scoring --------------------------------------------------------------------------------
    def score(self, path: Path, state: GrammarState, actions: Sequence[Action]) -> list[float | None]:
        """PRM scores of candidate steps (``None`` each without a PRM)."""
        return self.score_many([(path, state, actions)])[0]

    def score_many(self, requests: Sequence[tuple[Path, GrammarState, Sequence[Action]]]
                   ) -> list[list[float | None]]:
        """`score` for the states of every beam of a round, in one request to the PRM."""
        if self.prm is None:
            return [[None] * len(actions) for _, _, actions in requests]
        self.prm_candidates += sum(len(actions) for _, _, actions in requests)
        asked = [request for request in requests if request[2]]
        scores = iter(self.prm.score_many(asked) if asked else [])
        return [list(next(scores)) if actions else [] for _, _, actions in requests]

    def score_path(self, path: Path) -> list[float]:
        """PRM scores of every step of a complete path."""
        if self.prm is None or not path:
            return []
        self.prm_candidates += len(path)
        return self.prm.score_path(path)

    def notify(self, round_: int, nodes: list[TraceNode]) -> None:
        """Report a search round to the listener."""
        if self.listener is not None:
            self.listener(round_, nodes)

    def cost(self) -> Cost:
        """The counters so far."""
        return Cost.of(self.policy.usage, self.prm.usage if self.prm else None, self.prm_candidates,
                       time.perf_counter() - self.started)


def run_rounds(rounds: SampleRounds[T], sample_many: Callable[..., list[list[Sample]]]) -> T:
    """Drive a `SampleRounds` computation alone: each batch goes to ``sample_many(requests, temperature=t)``."""
    try:
        requests, temperature = next(rounds)
        while True:
            requests, temperature = rounds.send(sample_many(requests, temperature=temperature))
    except StopIteration as done:
        return cast(T, done.value)  # a `SampleRounds[T]` returns its T


def distinct_alternatives(ranked: Sequence[tuple[list[dict[str, Any]], float | None, float | None]],
                          limit: int = 4) -> list[Alternative]:
    """Runner-ups with call lists different from each other and from the winner (first entry)."""
    seen, out = set(), []
    for i, (calls, score, logprob) in enumerate(ranked):
        key = calls_key(calls)
        if key in seen:
            continue
        seen.add(key)
        if i > 0:
            out.append(Alternative(calls, score, logprob))
        if len(out) >= limit:
            break
    return out


def calls_key(calls: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    """An order-free identity of a call list (parallel calls may come in any order)."""
    return tuple(sorted(canonical_json(c) for c in calls))


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


@dataclass
class _Plan:
    """The texts to score for one state's enumerated actions, and how to read the scores back.

    ``first`` holds the log-probabilities of "call" and "answer in text" at the first call slot, read
    off the call openings (a call's less what the relevance check takes off, `search.relevance`); later
    slots score the format's own opener and the list's end among the items, and ``stop_bias``
    (`SearchConfig.stop_bias`) is added to the list's end there.
    """

    actions: Sequence[Action]
    items: list[tuple[str, str]]
    calls: list[Action] | None = None
    finish: bool = False
    first: tuple[float, float] | None = None
    stop_bias: float = 0.0

    def resolve(self, logprobs: list[list[float]]) -> list[Proposal]:
        if self.calls is None:
            return [Proposal(a, sum(lp)) for a, lp in zip(self.actions, logprobs, strict=True)]
        if self.first is not None:
            (call_lp, finish_lp), named = self.first, logprobs
        else:
            call_lp, named = sum(logprobs[0]), logprobs[1:]
            finish_lp = sum(logprobs[-1]) + self.stop_bias if self.finish else -math.inf
        names = [sum(lp) for lp in named[: len(self.calls)]]
        norm = logsumexp(names)
        out = [Proposal(a, call_lp + lp - norm) for a, lp in zip(self.calls, names, strict=True)]
        if self.finish:
            out.append(Proposal(Action.finish(), finish_lp))
        return out
