"""Queries packed as prefix trees: one training sequence per query, every distinct step a line of it."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from langchain_toolprm.data.rollouts import Trajectory
from langchain_toolprm.grammar import Action, Grammar, StepTag
from langchain_toolprm.prm.prompt import LABEL_POSITIVE, render_context, step_text
from langchain_toolprm.tools import ToolSchemaError, to_tool_specs

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

from langchain_toolprm.train.config import Objective

logger = logging.getLogger(__name__)

_LINE_END = "\n"


def load_queries(path: str | Path, split: str = "train") -> list[dict[str, Any]]:
    """Queries of a build: ``path/<split>.jsonl`` for a folder, the file itself otherwise."""
    file = Path(path)
    if file.is_dir():
        file = file / f"{split}.jsonl"
    with file.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@dataclass
class Packed:
    """One query as one training sequence.

    Attributes:
        ids: Token ids: the context, then every node's line.
        positions: Position ids (along each node's own path).
        context_len: How many of ``ids`` are the context.
        node_spans: Per node, ``(start, end)`` of its tokens in ``ids``.
        node_parent: Per node, its parent node (``-1`` under the context).
        label_at: Per node, the index of the token whose next-token logits give the label.
        targets: Per node, ``True``/``False`` (a loss there) or ``None`` (history only).
        tags: Per node, its step tag.
        trajectories: Per kept trajectory, its node indices, whether it is complete and correct.
        mode: How the query's trajectories were made (``"policy:<name>"`` or ``"rules"``).
        source: Where the query came from (``"bfcl:live_simple"``, ``"composed"``, ``"follow-up"``...).
        reference_calls: How many calls the reference answer makes (0: answer in text).
        query_id: The query's ``id`` in its build (so that PRMs of different prompt formats can be
            compared on the same queries).
        kept: Per packed trajectory, its place among the query's selected trajectories: a format whose
            steps are longer keeps fewer within ``max_tokens``, and a comparison keeps those all kept.

    """

    ids: list[int]
    positions: list[int]
    context_len: int
    node_spans: list[tuple[int, int]]
    node_parent: list[int]
    label_at: list[int]
    targets: list[bool | None]
    tags: list[StepTag]
    trajectories: list[tuple[list[int], bool, bool]]
    mode: str = "rules"
    source: str = ""
    reference_calls: int = 0
    query_id: str = ""
    kept: list[int] = field(default_factory=list)

    def attention_mask(self) -> torch.Tensor:
        """``[1, 1, L, L]`` additive mask: the context causally, each line its path and itself causally."""
        import torch

        n = len(self.ids)
        allowed = torch.zeros(n, n, dtype=torch.bool)
        c = self.context_len
        allowed[:c, :c] = torch.tril(torch.ones(c, c, dtype=torch.bool))
        for node, (start, end) in enumerate(self.node_spans):
            rows = slice(start, end)
            allowed[rows, :c] = True
            parent = self.node_parent[node]
            while parent >= 0:
                p_start, p_end = self.node_spans[parent]
                allowed[rows, p_start:p_end] = True
                parent = self.node_parent[parent]
            allowed[rows, start:end] = torch.tril(torch.ones(end - start, end - start, dtype=torch.bool))
        mask = torch.zeros(n, n)
        mask.masked_fill_(~allowed, torch.finfo(torch.float32).min)
        return mask[None, None]


TAGGED = {tag: Action(tag) for tag in StepTag}  # stand-ins: `labelled_length` reads the tags only
ORIGIN_ORDER = {"reference": 0, "sample": 1, "branch": 2, "rule": 3, "perturbed": 3, "completed": 4}


def select_steps(trajectories: list[Trajectory], objective: Objective | Literal["eval"]
            ) -> list[tuple[Trajectory, int, list[bool | None]]]:
    """Per trajectory, how many steps enter the sequence and the targets of those steps."""
    out: list[tuple[Trajectory, int, list[bool | None]]] = []
    for t in trajectories:
        if objective == "eval":
            out.append((t, len(t.actions), list(t.labels)))
        elif objective == "outcome":
            if t.complete:
                out.append((t, len(t.actions), [None] * (len(t.actions) - 1) + [all(t.labels)]))
        else:
            targets = _decision_targets(t) if objective == "decisions" else _step_targets(t, objective)
            while targets and targets[-1] is None:
                targets.pop()
            if targets:
                out.append((t, len(targets), targets))
    return out


def _step_targets(t: Trajectory, objective: Objective) -> list[bool | None]:
    """``prm`` and ``coarse``: every (non-value) step up to the first wrong one."""
    targets: list[bool | None] = []
    for i, (action, label) in enumerate(zip(t.actions, t.labels, strict=True)):
        labelled = objective == "prm" or action.tag is not StepTag.ARG_VALUE
        targets.append(label if labelled else None)
        if labelled and not label:
            if i + 1 < len(t.actions) and t.actions[i + 1].tag is StepTag.FUNC_END:
                targets.append(False)  # forced: the closing call's label (see `labelled_length`)
            break
    return targets


def _decision_targets(t: Trajectory) -> list[bool | None]:
    """``decisions``: the list-level steps only, the steps inside a call as history.

    A trajectory ends before a wrong step inside a call: a list-level step after it would be labelled
    wrong for that earlier mistake, which is not the decision it stands for.
    """
    targets: list[bool | None] = []
    for i, label in enumerate(t.labels):
        if not list_level(t.actions, i):
            if not label:
                break
            targets.append(None)
            continue
        targets.append(label)
        if not label:
            break
    return targets


def list_level(actions: Sequence[Action], i: int) -> bool:
    """Whether step ``i`` is taken at the call list's level: a turn's first step, or the one after a call ends.

    These are the decisions "call or answer in text?", "which function?" and "one more call, or stop?".
    """
    return i == 0 or actions[i - 1].tag is StepTag.FUNC_END


def pack_query(query: dict[str, Any], tokenizer: PreTrainedTokenizerBase, objective: Objective | Literal["eval"],
               *, max_context_tokens: int = 1024, max_tokens: int = 1536) -> Packed | None:
    """Pack one query's trajectories into one sequence, or ``None`` when it cannot be used.

    Steps shared by several trajectories become one node; a node's target is the same whichever
    trajectory reaches it (labels depend on the path only). Trajectories are added reference first,
    then samples, branches and rule branches, until ``max_tokens``. A query is left out when its
    context is too long or its tools are refused at bind time (a build written by an older version
    may hold tools the search now refuses: training on them would teach steps no search takes).
    """
    try:
        specs = to_tool_specs(query["tools"])
    except ToolSchemaError as exc:
        logger.warning("Query %s left out: %s", query.get("id"), exc)
        return None
    grammar = Grammar(specs, max_calls=max(8, len(query["reference"])))
    context_ids = encode_text(tokenizer, render_context(query["messages"], specs))
    if len(context_ids) > max_context_tokens:
        return None
    plus = encode_text(tokenizer, LABEL_POSITIVE)
    newline = encode_text(tokenizer, _LINE_END)
    trajectories = sorted((Trajectory.from_json(t) for t in query["trajectories"]),
                          key=lambda t: ORIGIN_ORDER.get(t.origin, 9))
    ids, positions = list(context_ids), list(range(len(context_ids)))
    nodes: dict[tuple[Any, ...], int] = {}
    packed = Packed(ids, positions, len(context_ids), [], [], [], [], [], [], str(query.get("mode", "rules")),
                    str(query.get("source", "")), len(query["reference"]), str(query.get("id", "")))
    for index, (trajectory, length, targets) in enumerate(select_steps(trajectories, objective)):
        actions = trajectory.actions
        shared = 0
        while shared < length and tuple(actions[: shared + 1]) in nodes:
            shared += 1
        states = grammar.walk(actions[:length])
        lines = [encode_text(tokenizer, step_text(states[i], actions[i])) for i in range(shared, length)]
        if len(ids) + sum(len(line) + len(plus) + len(newline) for line in lines) > max_tokens:
            continue
        path_nodes = [nodes[tuple(actions[: i + 1])] for i in range(shared)]
        for i, node in enumerate(path_nodes):
            if packed.targets[node] is None:
                packed.targets[node] = targets[i]
        parent = path_nodes[-1] if path_nodes else -1
        for i, step_ids in zip(range(shared, length), lines, strict=True):
            start = len(ids)
            base = positions[packed.node_spans[parent][1] - 1] + 1 if parent >= 0 else len(context_ids)
            line = step_ids + plus + newline
            ids.extend(line)
            positions.extend(range(base, base + len(line)))
            node = len(packed.node_spans)
            packed.node_spans.append((start, start + len(line)))
            packed.node_parent.append(parent)
            packed.label_at.append(start + len(step_ids) - 1)
            packed.targets.append(targets[i])
            packed.tags.append(actions[i].tag)
            nodes[tuple(actions[: i + 1])] = node
            path_nodes.append(node)
            parent = node
        packed.trajectories.append((path_nodes, trajectory.complete, trajectory.correct))
        packed.kept.append(index)
    return packed


def encode_text(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of ``text`` alone, as `GenerativePRM` encodes each piece."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def pack_queries(queries: Sequence[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, objective: Objective | str,
                 max_context_tokens: int, max_tokens: int) -> list[Packed]:
    """Every query that fits, packed; for training, only those with a labelled step."""
    return usable([pack_query(query, tokenizer, objective,  # type: ignore[arg-type]
                              max_context_tokens=max_context_tokens, max_tokens=max_tokens) for query in queries],
                  objective)


def usable(packed: Sequence[Packed | None], objective: Objective | str) -> list[Packed]:
    """The packed queries a run can use: all that fit for evaluation, those with a labelled step for training."""
    return [p for p in packed if p is not None and (objective == "eval" or any(t is not None for t in p.targets))]


def sibling_groups(packed: Packed) -> list[tuple[list[int], list[int]]]:
    """Candidates of one state with labels of both kinds: ``(positive nodes, negative nodes)``.

    Siblings in the tree are exactly what the search compares: the candidate steps from one state.
    """
    by_parent: dict[int, tuple[list[int], list[int]]] = {}
    for node, (parent, target) in enumerate(zip(packed.node_parent, packed.targets, strict=True)):
        if target is not None:
            by_parent.setdefault(parent, ([], []))[0 if target else 1].append(node)
    return [(pos, neg) for pos, neg in by_parent.values() if pos and neg]
