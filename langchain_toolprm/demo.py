"""The ``toolprm demo``: a small agent with real tools, its search drawn as a tree.

The agent is `create_toolprm_agent` with a calculator, a unit converter and date arithmetic. While it
runs, the search's rounds stream in through ``stream_mode="custom"``; after each model turn the
explored tree is printed (every candidate step with its tag, the policy's log-probability and the
PRM's score, pruned steps dimmed, the chosen path starred), then the tool results and the answer.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from pydantic import BaseModel, ConfigDict, Field

from langchain_toolprm.demo_tools import DEMO_TOOLS, add_days, calculator, convert_units, days_between
from langchain_toolprm.models.registry import DEFAULT_POLICY
from langchain_toolprm.prm.adapters import DEFAULT_PRM
from langchain_toolprm.search.config import SearchConfig

__all__ = [
    "DEFAULT_QUESTION",
    "DEMO_TOOLS",
    "DemoSettings",
    "add_days",
    "calculator",
    "convert_units",
    "days_between",
    "render_trace",
    "run_demo",
    "separation",
]

DEFAULT_QUESTION = "How many kilometers is a 26.2 mile marathon?"

# -- drawing the search --------------------------------------------------------------------------------

_TAG_STYLE = {
    "FUNC_NAME": "bold cyan", "ARG_NAME": "magenta", "ARG_VALUE": "yellow", "ARG_END": "blue",
    "FUNC_END": "blue", "TOTAL_FINISH": "bold green",
}


_AGGREGATIONS = {  # what a path score means under each `SearchConfig.aggregation`
    "min": "the lowest PRM step score on the path", "prod": "the product of the path's PRM step scores",
    "mean": "the mean PRM step score of the path", "last": "the PRM score of the path's last step",
    "relative": "the product of each step's PRM score over the best among its candidates",
    "guided": "the product of each step's policy probability times PRM odds (weighted per decision) over the"
              " best among its candidates",
}


def _score_style(score: float) -> str:
    return "green" if score >= 0.7 else "yellow" if score >= 0.4 else "red"


def chosen_path(calls: Sequence[dict[str, Any]], tools: Sequence[Any]) -> list[str]:
    """The step texts that write ``calls`` (what the winning path of the trace reads), for highlighting."""
    from langchain_toolprm.grammar import Grammar
    from langchain_toolprm.tools import to_tool_specs

    actions = Grammar(to_tool_specs(tools)).actions_for_calls(calls) or []
    return [a.describe() for a in actions]


def render_trace(trace: dict[str, Any], *, title: str, chosen: Sequence[str] = (), show_pruned: bool = True) -> Any:
    """A rich ``Tree`` of one search: candidates per step, scores, what was kept and what was pruned.

    Args:
        trace: ``TraceNode.to_dict()`` (``response_metadata["toolprm"]["trace"]``).
        title: The root label.
        chosen: Step texts of the winning path (see `chosen_path`); those nodes get a star.
        show_pruned: Draw pruned candidates (dimmed) or only count them.

    Returns:
        A ``rich.tree.Tree``.

    """
    from rich.text import Text
    from rich.tree import Tree

    root = Tree(Text.from_markup(title), guide_style="dim")

    def label(node: dict[str, Any], on_path: bool) -> Text:
        tag = node["tag"] or ""
        text = Text()
        text.append("★ " if on_path else "  ", style="bold green")
        text.append(f"{tag:<12}", style=_TAG_STYLE.get(tag, "") + ("" if node["kept"] else " dim"))
        text.append(" " + node["text"], style="bold" if on_path else ("" if node["kept"] else "dim"))
        if node["forced"]:
            text.append("  forced", style="dim italic")
        else:
            if node["logprob"] is not None:
                text.append(f"  logp {node['logprob']:.2f}", style="dim")
            if node["score"] is not None:
                text.append(f"  prm {node['score']:.2f}", style=_score_style(node["score"]))
        if not node["kept"]:
            text.append("  ✗ pruned", style="red dim")
        return text

    def add(parent: Any, node: dict[str, Any], depth: int, on_path: bool) -> None:
        children = node["children"]
        pruned = [c for c in children if not c["kept"]]
        for child in children:
            if not child["kept"] and not show_pruned:
                continue
            child_on_path = on_path and depth < len(chosen) and child["text"] == chosen[depth] and child["kept"]
            # A chain of forced steps (one legal move each) reads as one line: "end arguments → end call".
            merged, steps = child, 1
            while (merged["forced"] and len(merged["children"]) == 1 and merged["children"][0]["forced"]):
                nxt = merged["children"][0]
                on = child_on_path and depth + steps < len(chosen) and nxt["text"] == chosen[depth + steps]
                child_on_path = child_on_path and on
                merged = {**nxt, "tag": child["tag"], "text": f"{merged['text']} → {nxt['text']}"}
                steps += 1
            branch = parent.add(label(merged, child_on_path))
            add(branch, merged, depth + steps, child_on_path)
        if pruned and not show_pruned:
            parent.add(Text(f"  … {len(pruned)} pruned", style="red dim"))

    add(root, trace, 0, bool(chosen))
    return root


# -- running the agent ---------------------------------------------------------------------------------


class DemoSettings(BaseModel):
    """What ``toolprm demo`` runs.

    Attributes:
        question: The user's question.
        policy: The policy reference.
        prm: The PRM reference: the packaged trained PRM (``"default"``), ``"rules"``, a trained PRM's
            folder, or ``None`` (policy log-probabilities only).
        num_beams: N, beams kept per step.
        beam_width: M, candidates per beam and step.
        max_tool_turns: Tool-calling turns before the agent must answer in text.
        max_tokens: Token limit of the text answer.
        show_pruned: Draw pruned candidates in the tree.

    """

    model_config = ConfigDict(extra="forbid")

    question: str = DEFAULT_QUESTION
    policy: str = DEFAULT_POLICY
    prm: str | None = DEFAULT_PRM
    num_beams: int = Field(2, ge=1)
    beam_width: int = Field(4, ge=1)
    max_tool_turns: int = Field(1, ge=1)
    max_tokens: int = Field(96, ge=1)
    show_pruned: bool = True


def run_demo(settings: DemoSettings, console: Any = None) -> str:
    """Run the demo agent on one question and print its searches; returns the final answer.

    Args:
        settings: Question, models and budget.
        console: A ``rich.console.Console`` (a new one by default).

    Returns:
        The agent's final text answer.

    """
    from rich.console import Console
    from rich.panel import Panel
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from langchain_toolprm.graph import create_toolprm_agent

    console = console or Console()
    console.print(Panel.fit(
        f"[bold]{settings.question}[/]\n\n"
        f"policy [cyan]{settings.policy}[/] · PRM [cyan]{settings.prm or 'none (policy log-probabilities)'}[/]\n"
        f"beam search: keep N={settings.num_beams} beams, propose M={settings.beam_width} candidates per beam"
        f" and step\ntools: {', '.join(t.name for t in DEMO_TOOLS)}",
        title="toolprm demo", border_style="cyan",
    ))
    agent = create_toolprm_agent(
        settings.policy, DEMO_TOOLS, prm=settings.prm,
        system_prompt="You are a helpful assistant. Use the tools for arithmetic, unit conversions and dates,"
                      " then answer the question in one short sentence.",
        max_tool_turns=settings.max_tool_turns,
        num_beams=settings.num_beams, beam_width=settings.beam_width, max_tokens=settings.max_tokens,
        include_trace=True,
    )
    started = time.perf_counter()
    answer, turn = "", 0
    # A transient live line: drawn and redrawn on a terminal only, so a pipe or a log gets nothing from it.
    progress = Progress(SpinnerColumn(), TimeElapsedColumn(), TextColumn("{task.description}"), console=console,
                        transient=True)
    task = progress.add_task(f"loading {settings.policy} and the PRM (a first run converts the packaged model once,"
                             " about 2 minutes) …", total=None)
    with _quiet_library_bars(), progress:
        for mode, part in agent.stream({"messages": [("user", settings.question)]},
                                       stream_mode=["custom", "updates"]):
            if mode == "custom" and part.get("toolprm") == "step":
                progress.update(task, description=_step_line(turn + 1, part), refresh=True)
                continue
            if mode != "updates":
                continue
            for node, update in part.items():
                for message in (update or {}).get("messages", []):
                    if node == "agent":
                        turn += 1
                        answer = _print_turn(console, message, turn, settings.show_pruned) or answer
                        progress.reset(task, description="running the tools …")
                    else:
                        _print_tool(console, message)
                        progress.reset(task, description=f"turn {turn + 1} · searching or writing the answer …")
    table = Table.grid(padding=(0, 2))
    table.add_row("[dim]model turns[/]", str(turn))
    table.add_row("[dim]wall time[/]", f"{time.perf_counter() - started:.1f} s")
    console.print(Panel(answer or "[red](no text answer)[/]", title="answer", border_style="green"))
    console.print(table)
    return answer


def _step_line(turn: int, part: dict[str, Any]) -> str:
    """The live line for one search round: which step, how many candidates, how many beams survive."""
    tags = sorted({c["tag"] for c in part["candidates"] if c["tag"]})
    kind = f" ({', '.join(tags)})" if tags else ""
    scored = part["kept"] + part["pruned"]
    return (f"turn {turn} · search step {part['round'] + 1}{kind}: {scored} candidates scored,"
            f" {part['kept']} kept as beams")


@contextlib.contextmanager
def _quiet_library_bars() -> Iterator[None]:
    """Keep transformers' progress bars ("Loading weights", GGUF dequantisation) out of the demo's output.

    The demo's own live line says what is loading, and how long it has taken, instead. Both switches are
    put back afterwards: they belong to the process, not to the demo.
    """
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - the policy needs transformers anyway
        yield
        return
    enabled = hf_logging.is_progress_bar_enabled()
    gguf_globals = vars(gguf_utils)  # its module-level `tqdm` is replaced, not an attribute it exports
    gguf_tqdm = gguf_globals["tqdm"]  # a plain tqdm, which transformers' switch does not reach
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # transformers leaves it unannotated
    gguf_globals["tqdm"] = functools.partial(gguf_tqdm, disable=True)
    try:
        yield
    finally:
        gguf_globals["tqdm"] = gguf_tqdm
        if enabled:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]  # unannotated too


def _print_turn(console: Any, message: BaseMessage, turn: int, show_pruned: bool = True) -> str:
    from rich.table import Table

    assert isinstance(message, AIMessage)
    info = message.response_metadata.get("toolprm", {})
    calls = [{"name": c["name"], "arguments": c["args"]} for c in message.tool_calls]
    decided = "[red]no complete call[/]" if message.invalid_tool_calls and not calls else _calls_text(calls)
    cost = info.get("cost", {})
    score = info.get("score")
    aggregation = info.get("aggregation", SearchConfig.model_fields["aggregation"].default)
    title = (f"[bold]turn {turn}[/] · {info.get('strategy', '?')} search · decided: [bold green]{decided}[/]"
             + (f" · path score {score:.2f} ({aggregation}: {_AGGREGATIONS.get(aggregation, aggregation)})"
                if score is not None and cost.get("prm_candidates") else "")  # no scored step: nothing to say
             + f" · {cost.get('wall_seconds', 0):.1f} s, {cost.get('policy_forwards', 0)} policy forwards,"
               f" {cost.get('prm_candidates', 0)} PRM scores")
    if "trace" in info:
        console.print(render_trace(info["trace"], title=title, chosen=chosen_path(calls, DEMO_TOOLS),
                                   show_pruned=show_pruned))
    else:
        console.print(title)
    alternatives = info.get("alternatives") or []
    if alternatives:
        table = Table(title="runner-up decisions", title_style="dim", show_edge=False, header_style="dim")
        table.add_column("calls")
        table.add_column("path score", justify="right")
        table.add_column("logp", justify="right")
        for alt in alternatives:
            table.add_row(_calls_text(alt["calls"]), _num(alt["score"]), _num(alt["logprob"]))
        console.print(table)
        if "trace" in info:
            console.print(separation(info["trace"], calls, alternatives[0]["calls"], DEMO_TOOLS))
        runner_up = alternatives[0]
        if score is not None and score == runner_up["score"] and None not in (info.get("logprob"),
                                                                            runner_up["logprob"]):
            console.print(f"[dim]equal path scores: the policy's log-probability of the whole path broke the tie"
                          f" ({info['logprob']:.2f} over {runner_up['logprob']:.2f})[/]")
    for invalid in message.invalid_tool_calls:
        console.print(f"[red]unfinished call[/] {invalid['name']}{invalid['args']}: {invalid['error']}")
    if message.tool_calls:
        return ""
    return message.text if hasattr(message, "text") and isinstance(message.text, str) else str(message.content)


def separation(trace: dict[str, Any], winner: Sequence[dict[str, Any]], runner_up: Sequence[dict[str, Any]],
               tools: Sequence[Any]) -> str:
    """Say where the runner-up's path leaves the winner's, with what the PRM and the policy said of each step.

    Two paths can share their aggregated score (under ``min``, both may inherit the same weakest step),
    so the score alone does not show why one won; the first step where they differ does.

    Args:
        trace: The search's ``TraceNode.to_dict()``.
        winner: The chosen calls (``{"name", "arguments"}`` dicts).
        runner_up: The runner-up's calls.
        tools: The tools the search ran over.

    Returns:
        One line of rich markup.

    """
    from rich.markup import escape

    ours, theirs = chosen_path(winner, tools), chosen_path(runner_up, tools)
    node = trace
    for depth, (mine, other) in enumerate(zip(ours, theirs, strict=False)):
        children = {child["text"]: child for child in node["children"]}
        if mine != other:
            if mine not in children or other not in children:
                break
            a, b = children[mine], children[other]
            return (f"[dim]winner vs runner-up: the same {depth} steps, then {a['tag']}[/]"
                    f" [bold green]{escape(a['text'])}[/] [dim]({_said(a)}) over[/]"
                    f" [yellow]{escape(b['text'])}[/] [dim]({_said(b)})[/]")
        if mine not in children:
            break
        node = children[mine]
    return "[dim]winner vs runner-up: their paths part outside the drawn tree[/]"


def _said(node: dict[str, Any]) -> str:
    return f"prm {_num(node['score'])}, logp {_num(node['logprob'])}"


def _calls_text(calls: Sequence[dict[str, Any]]) -> str:
    return ", ".join(f"{c['name']}({_args(c['arguments'])})" for c in calls) or "answer in text"


def _print_tool(console: Any, message: BaseMessage) -> None:
    if isinstance(message, ToolMessage):
        style = "red" if message.status == "error" else "cyan"
        console.print(f"  [{style}]⚙ {message.name}[/] → {message.content}")


def _args(arguments: dict[str, Any]) -> str:
    import json

    return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in arguments.items())


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"
