"""`run_search`: one public entry point for every strategy."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage

from langchain_toolprm.components import load_policy, load_prm
from langchain_toolprm.formats import FormatError, parse_calls_lenient
from langchain_toolprm.grammar import Call, CallKey, Grammar, ToolChoice
from langchain_toolprm.messages import ChatMessage, calls_since_latest_user, to_chat_messages
from langchain_toolprm.policy.base import Policy
from langchain_toolprm.prm.base import PRM
from langchain_toolprm.search.beam import beam_search, greedy_search
from langchain_toolprm.search.config import SearchConfig
from langchain_toolprm.search.coverage import CoverageScorer
from langchain_toolprm.search.engine import SearchContext, StepListener
from langchain_toolprm.search.relevance import RelevanceScorer
from langchain_toolprm.search.results import SearchResult
from langchain_toolprm.search.sampling import best_of_n, majority_vote, unconstrained
from langchain_toolprm.tools import to_tool_specs

__all__ = ["run_search"]

_STRATEGIES: dict[str, Callable[[SearchContext], SearchResult]] = {
    "beam": beam_search,
    "greedy": greedy_search,
    "unconstrained": unconstrained,
    "best_of_n": best_of_n,
    "majority": majority_vote,
}
_USES_PRM = {"beam", "best_of_n"}


def run_search(
    messages: str | Sequence[BaseMessage | dict[str, Any]],
    tools: Sequence[Any],
    *,
    policy: Policy | str,
    prm: PRM | str | None = None,
    config: SearchConfig | None = None,
    tool_choice: Any = None,
    on_step: StepListener | None = None,
) -> SearchResult:
    """Decide one assistant turn's tool calls.

    Args:
        messages: The conversation: LangChain messages, ``{"role", "content"}`` dicts, or a user text.
        tools: Anything ``convert_to_openai_tool`` accepts, or BFCL function docs.
        policy: A policy or a model reference (hub id, folder, ``.gguf``, packaged name).
        prm: A PRM, a model reference for a generative PRM, ``"rules"``, or ``None`` (policy only).
        config: Strategy and budget; defaults to beam search with N=2, M=4.
        tool_choice: ``None``/``"auto"``, ``"none"`` (answer without the tools in the prompt),
            ``"any"``/``"required"``, or a tool name.
        on_step: Called after each search round with the explored nodes (progress, streaming).

    Returns:
        The chosen calls with score, alternatives, trace and cost.

    Raises:
        ToolSchemaError: A tool's schema cannot be used.
        ValueError: The messages or ``tool_choice`` are malformed, or ``tool_choice`` asks for a call
            with no tools.

    """
    config = config or SearchConfig()
    chat = to_chat_messages(messages)
    if not chat:
        raise ValueError("run_search needs at least one message.")
    specs = to_tool_specs(tools)
    choice = ToolChoice.parse(tool_choice, [s.name for s in specs])
    if choice.mode == "required" and not specs:
        raise ValueError(f"tool_choice={tool_choice!r} asks for a tool call, but no tools were given.")
    bound = bool(specs)
    if choice.mode == "none" and specs:
        # No call is allowed, so the tool list would only tempt a small model to write calls as text
        # (the packaged 0.5B repeats its last call as JSON); the turn is searched without it.
        specs, choice = [], ToolChoice.parse(None, [])
    answered = _answered(chat) if choice.mode == "auto" and not config.repeat_calls else frozenset()
    grammar = Grammar(specs, choice, max_calls=config.max_calls if config.parallel_tool_calls else 1,
                      answered=answered)
    policy_obj = load_policy(policy)
    prm_obj = load_prm(prm, policy_obj) if config.strategy in _USES_PRM else None
    started = time.perf_counter()  # loading a model is not the search's time; encoding the prompt is
    policy_session = policy_obj.session(chat, specs, seed=config.seed)
    prm_session = prm_obj.session_for(chat, specs, policy_session) if prm_obj is not None else None
    coverage = (CoverageScorer(policy_obj, chat, policy_session, config.seed)
                if config.coverage is not None and config.strategy == "beam" else None)
    relevance = (RelevanceScorer(policy_obj, chat, specs, config.relevance, policy_session, config.seed)
                 if config.relevance is not None and config.strategy == "beam" else None)
    ctx = SearchContext(chat, specs, grammar, policy_session, prm_session, config, on_step, started, coverage,
                        relevance)
    result = _STRATEGIES[config.strategy](ctx)
    if config.answer_in_text and result.finished and not result.calls and result.text is None:
        if ctx.out_of_time():
            result.text, result.truncated = "", True
        else:
            _text_answer(ctx, result, policy_obj, keep_calls_out=bound)
    result.timed_out = ctx.timed_out
    result.cost = ctx.cost()
    return result


def _answered(chat: Sequence[ChatMessage]) -> frozenset[CallKey]:
    """The calls the assistant made since the latest user message (their results follow them)."""
    return frozenset(Call.of(c["name"], c["arguments"]).key() for c in calls_since_latest_user(chat)
                     if isinstance(c["arguments"], Mapping))


def _text_answer(ctx: SearchContext, result: SearchResult, policy: Policy, keep_calls_out: bool) -> None:
    """The policy's own words when the search decided that no tool fits.

    The answer is written on the conversation without the tool list, as under ``tool_choice="none"``:
    the search has already decided against a call, and a small model that sees tools keeps wanting
    one (after a tool result the packaged 0.5B puts nearly all its mass on calling again, and what the
    mask leaves over is noise; docs/benchmarks.md, session 16). Its cost is counted with the policy's. With tools bound
    (``keep_calls_out``: under ``tool_choice="none"`` too, where the conversation's earlier calls
    still invite another) the call openings are masked (`PolicySession.sample_answer`). A model may
    still write a call later in the text, or a policy that cannot mask tokens may open with one
    (bare JSON, a fence, tags); returned as the answer, it would reach the user as JSON and the tool
    would never run. A call the grammar can write (bound tool, valid arguments, allowed by
    ``tool_choice``) becomes a tool call; one naming a bound tool with arguments that break its
    schema becomes ``partial`` (an invalid call, with the reason), so it is not passed off as an
    answer either.
    """
    openings = ctx.policy.format.openings() if keep_calls_out else ()
    session = policy.session(ctx.messages, [], seed=ctx.config.seed) if ctx.specs else ctx.policy
    sample = session.sample_answer(ctx.config.max_new_tokens, openings)
    if session is not ctx.policy:
        ctx.policy.usage.include(session.usage)
    names = {spec.name for spec in ctx.specs} if ctx.grammar.tool_choice.mode != "none" else set()
    calls = [c for c in parse_calls_lenient(sample.text) if c["name"] in names][: ctx.grammar.max_calls]
    if not calls:
        try:
            result.text = ctx.policy.native_format.parse(sample.text).text
        except FormatError:
            result.text = sample.text.strip()
        result.truncated = not sample.finished
    elif ctx.grammar.actions_for_calls(calls) is not None:
        result.calls = calls
    else:
        bad = next((c for c in calls if ctx.grammar.actions_for_calls([c]) is None), calls[0])
        errors = ctx.grammar.spec(bad["name"]).argument_errors(bad["arguments"])
        result.finished, result.partial = False, bad
        result.partial_error = ("The model wrote this call as text and it does not validate: "
                                + ("; ".join(errors) or "it repeats a call or breaks tool_choice") + ".")
