"""Queries packed in the policy-context format: the policy's prompt and call text as a tree, suffixes apart.

The counterpart of `langchain_toolprm.train.packing` for PRMs that read the policy's own context
(`langchain_toolprm.prm.context_format`). One query is one `JudgedTree`: its root is the policy's
prompt (the chat template with the tools, as the policy renders it), every step of every kept
trajectory is a row (the policy's call text up to and including that step), and each row carries
the judgement suffix of its step. The first pass runs the tree on the plain weights, the second the
suffixes with the adapter (`langchain_toolprm.train.model.label_logits`), as at inference.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from langchain_toolprm.data.rollouts import Trajectory
from langchain_toolprm.grammar import Grammar
from langchain_toolprm.lm.judged_tree import JudgedTree
from langchain_toolprm.lm.tokenized import TokenizedLM
from langchain_toolprm.policy.template import TemplatePolicy
from langchain_toolprm.prm.context_format import candidate_text, judgement_suffix
from langchain_toolprm.tools import ToolSchemaError, to_tool_specs
from langchain_toolprm.train.config import Objective
from langchain_toolprm.train.packing import ORIGIN_ORDER, Packed, select_steps, usable

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from langchain_toolprm.policy.base import PolicySession
    from langchain_toolprm.tools import ToolSpec

__all__ = ["ContextPacked", "PolicyRenderer", "pack_context_queries", "pack_context_query"]

logger = logging.getLogger(__name__)


class PolicyRenderer(TemplatePolicy[TokenizedLM]):
    """The policy's prompt and call format from its tokenizer alone: what the PRM is trained to read.

    Training renders each query exactly as `TransformersPolicy` renders it for the search (chat
    template, tools, the template's own call format), without loading a second model for it.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, name: str = "policy"):
        lm = TokenizedLM(tokenizer)
        lm.name = name
        super().__init__(lm, format="template")

    def session(self, messages: Sequence[Any], specs: Sequence[ToolSpec], *, seed: int | None = None
                ) -> PolicySession:
        raise TypeError("PolicyRenderer renders prompts for training; load a TransformersPolicy to search.")


@dataclass
class ContextPacked(Packed):
    """One query as a `JudgedTree` (see the module docstring); node ``i`` is the tree's row ``i``.

    ``ids`` and ``positions`` are the tree's tokens and their positions, ``node_spans`` and
    ``label_at`` are unused (the suffixes are apart from the tree).
    """

    tree: JudgedTree = field(default_factory=JudgedTree)


def pack_context_query(query: dict[str, Any], renderer: PolicyRenderer,
                       objective: Objective | Literal["eval"], *, max_context_tokens: int = 1024,
                       max_tokens: int = 1536) -> ContextPacked | None:
    """One query's trajectories as one tree, or ``None`` when its tools are refused or its prompt is too long.

    Trajectories are added reference first, then samples, branches and rule branches, while the tree
    and its suffixes stay within ``max_tokens`` beyond the prompt.
    """
    try:
        specs = to_tool_specs(query["tools"])
    except ToolSchemaError as exc:
        logger.warning("Query %s left out: %s", query.get("id"), exc)
        return None
    lm, fmt = renderer.lm, renderer.native_format
    context = lm.encode(renderer.render_prompt(query["messages"], specs, fmt))
    if len(context) > max_context_tokens:
        return None
    grammar = Grammar(specs, max_calls=max(8, len(query["reference"])))
    packed = ContextPacked([], [], len(context), [], [], [], [], [], [], str(query.get("mode", "rules")),
                           str(query.get("source", "")), len(query["reference"]), str(query.get("id", "")))
    tree = packed.tree
    nodes: dict[tuple[Any, ...], int] = {}
    trajectories = sorted((Trajectory.from_json(t) for t in query["trajectories"]),
                          key=lambda t: ORIGIN_ORDER.get(t.origin, 9))
    for index, (trajectory, length, targets) in enumerate(select_steps(trajectories, objective)):
        actions = trajectory.actions
        states = grammar.walk(actions[:length])
        new = [i for i in range(length) if tuple(actions[: i + 1]) not in nodes]
        texts = {i: context + lm.encode(candidate_text(fmt, states[i], actions[i])) for i in new}
        suffixes = {i: lm.encode(judgement_suffix(actions[i].tag)) for i in new}
        used = max(len(tree.tokens) - len(context), 0) + sum(map(len, tree.suffixes))
        if used + sum(tree.new_tokens(texts[i]) + len(suffixes[i]) for i in new) > max_tokens:
            continue
        path_nodes: list[int] = []
        for i in range(length):
            key = tuple(actions[: i + 1])
            if key in nodes:
                node = nodes[key]
                if packed.targets[node] is None:
                    packed.targets[node] = targets[i]
            else:
                node = nodes[key] = tree.add(texts[i], suffixes[i])
                packed.node_parent.append(path_nodes[-1] if path_nodes else -1)
                packed.targets.append(targets[i])
                packed.tags.append(actions[i].tag)
            path_nodes.append(node)
        packed.trajectories.append((path_nodes, trajectory.complete, trajectory.correct))
        packed.kept.append(index)
    packed.ids, packed.positions = packed.tree.tokens, packed.tree.depths
    return packed


def pack_context_queries(queries: Sequence[dict[str, Any]], tokenizer: PreTrainedTokenizerBase,
                         objective: Objective | str, max_context_tokens: int, max_tokens: int) -> list[Packed]:
    """Every query that fits, packed; for training, only those with a labelled step."""
    renderer = PolicyRenderer(tokenizer)
    return usable([pack_context_query(query, renderer, objective,  # type: ignore[arg-type]
                                      max_context_tokens=max_context_tokens, max_tokens=max_tokens)
                   for query in queries], objective)
