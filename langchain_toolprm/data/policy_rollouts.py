"""Policy rollouts for PRM training: complete samples and one-step branches off the reference path.

Both come from `SearchContext.propose`-style calls of the policy the search runs, many queries decoded
together (`policy_trajectories_many`), and are labelled by prefix correctness against the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from langchain_toolprm.grammar import Action, GrammarState, StepTag
from langchain_toolprm.lm import Sample
from langchain_toolprm.policy.base import PolicySession, SampleRequest

if TYPE_CHECKING:
    from langchain_toolprm.policy.base import Policy
    from langchain_toolprm.search.engine import Proposal, SampleRounds

from langchain_toolprm.data.rollouts import (
    Prepared,
    RolloutConfig,
    Trajectory,
    actions_from_calls,
    completed_branches,
    dedupe,
    labelled_trajectory,
)

__all__ = ["policy_trajectories", "policy_trajectories_many"]


def _branch_states(prepared: Prepared) -> list[tuple[int, GrammarState]]:
    states = prepared.grammar.walk(prepared.reference)
    return [
        (i, state)
        for i, state in enumerate(states[:-1])
        if not prepared.grammar.decision(state).forced
    ]


def policy_trajectories(policy: Policy, prepared: Prepared, config: RolloutConfig, seed: int) -> list[Trajectory]:
    """Reference path, K policy samples and policy branches off the reference path, labelled.

    One policy session per query: the prompt is encoded once; the enumerated decisions of every
    reference state are scored in one batch, and the K whole answers decode in the same batch as the
    branch values of every state (`SearchContext.propose_with`), so a query costs about one answer's
    decoding steps, not one per value. `policy_trajectories_many` does several queries at once.

    Raises:
        Exception: Whatever stopped the rollout (model, grammar or labelling errors).

    """
    (result,) = policy_trajectories_many(policy, [prepared], config, [seed])
    if isinstance(result, Exception):
        raise result
    return result


def policy_trajectories_many(policy: Policy, prepared: Sequence[Prepared], config: RolloutConfig,
                             seeds: Sequence[int]) -> list[list[Trajectory] | Exception]:
    """`policy_trajectories` for several queries, their samples decoded together.

    Decoding is most of a rollout's time, mostly steps with a few rows each, and a step's cost grows
    far slower than its rows (`Policy.sample_across`). Each query keeps its own session,
    seeded with its own seed, and its rows draw from that session's random generator only, so a
    query gets the samples it would get alone, whatever it is batched with (up to the rounding of
    batched arithmetic).

    Args:
        policy: The rollout policy.
        prepared: The queries.
        config: Rollout settings.
        seeds: One seed per query.

    Returns:
        Per query, its labelled trajectories, or the exception that stopped it: a query's own failure
        stops that query only, a failed joint decode stops the queries that were waiting for it.

    """
    results: dict[int, list[Trajectory] | Exception] = {}
    # Per running query: its session, its search's sample rounds, and the requests it waits on.
    running: dict[int, tuple[PolicySession, SampleRounds[list[Trajectory]], list[SampleRequest], float]] = {}

    def advance(i: int, session: PolicySession, rounds: SampleRounds[list[Trajectory]],
                samples: list[list[Sample]] | None) -> None:
        try:
            requests, temperature = next(rounds) if samples is None else rounds.send(samples)
        except StopIteration as done:
            results[i] = done.value
        except Exception as exc:  # one query's failure stops that query only
            results[i] = exc
        else:
            running[i] = (session, rounds, requests, temperature)
            return
        running.pop(i, None)

    for i, (ready, seed) in enumerate(zip(prepared, seeds, strict=True)):
        try:
            session = policy.session(ready.example.messages, ready.specs, seed=seed)
        except Exception as exc:
            results[i] = exc
            continue
        advance(i, session, _rollout_rounds(session, ready, config, seed), None)
    while running:
        by_temperature: dict[float, list[int]] = {}
        for i, (*_, temperature) in running.items():
            by_temperature.setdefault(temperature, []).append(i)
        for temperature, members in by_temperature.items():
            pairs = [(running[i][0], request) for i in members for request in running[i][2]]
            try:
                decoded = policy.sample_across(pairs, temperature=temperature)
            except Exception as exc:  # a failed joint decode stops the queries waiting on it
                for i in members:
                    results[i] = exc
                    del running[i]
                continue
            offset = 0
            for i in members:
                session, rounds, requests, _ = running[i]
                advance(i, session, rounds, decoded[offset : offset + len(requests)])
                offset += len(requests)
    return [results[i] for i in range(len(prepared))]


def _rollout_rounds(session: PolicySession, prepared: Prepared, config: RolloutConfig, seed: int
                    ) -> SampleRounds[list[Trajectory]]:
    """One query's rollout as sample rounds (`SearchContext.propose_rounds`), then its labelled trajectories."""
    from langchain_toolprm.search.config import SearchConfig
    from langchain_toolprm.search.engine import SearchContext

    branch_at = _branch_states(prepared) if config.branch_width > 0 else []
    answers = [SampleRequest("", config.samples, config.max_new_tokens)] if config.samples > 0 else []
    search = SearchConfig(temperature=config.temperature, max_value_tokens=config.max_value_tokens,
                          beam_width=max(config.branch_width, 1), seed=seed)
    ctx = SearchContext(prepared.example.messages, prepared.specs, prepared.grammar, session, None, search)
    proposals, samples = yield from ctx.propose_rounds([s for _, s in branch_at], config.branch_width,
                                                       config.temperature, extra=answers)
    return _label_rollout(prepared, branch_at, proposals, samples[0] if samples else [])


def _label_rollout(prepared: Prepared, branch_at: list[tuple[int, GrammarState]], proposals: list[list[Proposal]],
                   samples: Sequence[Sample]) -> list[Trajectory]:
    """The reference, the whole answers and the one-step branches of one rollout, labelled."""
    from langchain_toolprm.formats import parse_calls_lenient

    out = [labelled_trajectory(prepared, prepared.reference, "reference")]
    for sample in samples:
        calls = parse_calls_lenient(sample.text)
        actions = actions_from_calls(prepared.grammar, calls, sample.finished)
        out.append(labelled_trajectory(prepared, actions, "sample"))
    for (i, state), found in zip(branch_at, proposals, strict=True):
        actions = [p.action for p in found]
        finish = Action.finish()
        if prepared.grammar.decision(state).tag is StepTag.FUNC_NAME and finish not in actions and \
                prepared.grammar.is_legal(state, finish):
            actions.append(finish)
        for action in actions:
            if action != prepared.reference[i]:
                out.append(labelled_trajectory(prepared, [*prepared.reference[:i], action], "branch"))
    return dedupe(out + completed_branches(prepared, out))
