"""``toolprm eval-prm``: a PRM's loss, step, trajectory, ranking and answer-selection accuracy on a split."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from langchain_toolprm.data.rollouts import labelled_length
from langchain_toolprm.grammar import StepTag
from langchain_toolprm.prm.adapters import load_prm_model, prm_folder, prm_meta, prompt_version
from langchain_toolprm.prm.context_format import CONTEXT_PROMPT_VERSION
from langchain_toolprm.search.config import PATH_AGGREGATIONS
from langchain_toolprm.search.engine import aggregate
from langchain_toolprm.train.config import MAX_CONTEXT_TOKENS
from langchain_toolprm.train.context_packing import pack_context_queries
from langchain_toolprm.train.model import judged_label_logits, label_logits, label_token_ids
from langchain_toolprm.train.packing import TAGGED, Packed, load_queries, pack_queries, sibling_groups

logger = logging.getLogger(__name__)

class EvalResult(BaseModel):
    """Reward-model accuracy on a test split, beside the "always +" baseline.

    ``ranking_accuracy`` is what a beam search needs most: among the labelled candidate steps of one
    state that has both right and wrong ones, how often the best-scored candidate is a right one
    (``random_ranking_accuracy``: the same for a random pick).

    ``selection_accuracy`` is what the search's final ranking needs: among the complete answers of one
    query that has both right and wrong ones, how often the best answer by each aggregation of step
    scores is a right one. Answers differ in length ("no call" is one step, a call six or more), so
    this is where aggregations part; it lets the search's aggregation be chosen on held-out PRM data
    rather than on evaluation cases.

    ``focus`` is step accuracy on the decisions small policies get wrong (`_focus`): ending the list
    of a parallel answer, stopping after the one call a single-call query asks for (the same
    decision the other way: a PRM that likes going on does well on the first and fails here), the
    first step of a query whose answer is no call, the first step after tool results; each beside
    "always +".
    """

    model: str
    queries: int
    query_ids: list[str] = Field(default_factory=list)
    steps: int
    trajectories: int
    loss: float
    step_accuracy: float
    trajectory_accuracy: float
    always_positive_step_accuracy: float
    always_positive_trajectory_accuracy: float
    ranking_groups: int = 0
    ranking_accuracy: float = 0.0
    random_ranking_accuracy: float = 0.0
    selection_groups: int = 0
    selection_accuracy: dict[str, float] = Field(default_factory=dict)
    random_selection_accuracy: float = 0.0
    per_tag: dict[str, dict[str, float]]
    focus: dict[str, dict[str, float]] = Field(default_factory=dict)
    aggregation: str
    seconds: float


def _only(packed: Packed, nodes: set[int]) -> Packed:
    """The packed query with targets kept on ``nodes`` only (the labelled steps)."""
    return replace(packed, targets=[t if i in nodes else None for i, t in enumerate(packed.targets)])


def _iter_scores(logits_of: Callable[[Packed], Any], data: Sequence[Packed], plus_id: int, minus_id: int
                 ) -> Iterator[tuple[Packed, list[float]]]:
    import torch

    with torch.inference_mode():
        for packed in data:
            logits = logits_of(packed)[:, [plus_id, minus_id]]
            yield packed, torch.softmax(logits, dim=-1)[:, 0].tolist()


def _scorer(model_ref: str | Path) -> tuple[Any, Callable[[Packed], Any], Callable[..., list[Packed]]]:
    """``(tokenizer, label logits of a packed query, packing function)`` for the PRM's prompt format.

    A policy-context PRM is scored as a search scores it: base weights for the tree, the adapter
    switched on for the suffixes; any other PRM is loaded merged and reads its own text.
    """
    import torch

    if prompt_version(model_ref) == CONTEXT_PROMPT_VERSION:
        from langchain_toolprm.prm.context import ContextPRM

        prm = ContextPRM.from_pretrained(model_ref, dtype=torch.float32)
        model, device = prm.lm.model, prm.lm.device
        return prm.lm.tokenizer, lambda packed: judged_label_logits(
            model, packed, device, plain=contextlib.nullcontext, adapted=prm.switch.active), pack_context_queries
    model, tokenizer = load_prm_model(model_ref, dtype=torch.float32)
    model.eval()
    device = next(model.parameters()).device
    return tokenizer, lambda packed: label_logits(model, packed, device), pack_queries


def answer_selection(answers: Sequence[tuple[Sequence[float], bool]]) -> dict[str, bool] | None:
    """Whether the best answer by each aggregation is a right one, as the search's final ranking picks.

    Args:
        answers: One query's complete answers: their step scores and whether the answer is right.

    Returns:
        Per aggregation, whether its pick is right; ``None`` when the answers are all right or all
        wrong (no choice to judge).

    """
    right = sum(correct for _, correct in answers)
    if not 0 < right < len(answers):
        return None
    return {how: max(answers, key=lambda a: aggregate(a[0], how))[1] for how in PATH_AGGREGATIONS}


def _first_per_source(packed_set: Sequence[Packed], n: int) -> list[Packed]:
    """The first ``n`` queries of each source, in file order."""
    taken: dict[str, int] = {}
    out = []
    for packed in packed_set:
        if taken.get(packed.source, 0) < n:
            taken[packed.source] = taken.get(packed.source, 0) + 1
            out.append(packed)
    return out


def _focus(packed: Packed, node: int) -> list[str]:
    """The decisions a step belongs to that the search gets wrong most (reported apart in `EvalResult`)."""
    tag = packed.tags[node]
    names = []
    parent = packed.node_parent[node]
    if tag is StepTag.TOTAL_FINISH and packed.reference_calls >= 2:
        names.append("TOTAL_FINISH of parallel queries")
    if packed.reference_calls == 1 and parent >= 0 and packed.tags[parent] is StepTag.FUNC_END:
        names.append("stop or go on after the one call asked for")
    if parent == -1 and packed.reference_calls == 0:
        names.append("first step of no-call queries")
    if parent == -1 and packed.source == "follow-up":
        names.append("first step after tool results")
    return names


def evaluate_prm(model_ref: str | Path, data: str | Path, *, split: str = "test", aggregation: str | None = None,
                 max_context_tokens: int = MAX_CONTEXT_TOKENS, max_tokens: int = 2048, limit: int | None = None,
                 per_source: int | None = None, progress: bool = True) -> EvalResult:
    """Loss, step accuracy and trajectory accuracy of one PRM on a build's split (see `evaluate_prms`)."""
    return evaluate_prms([model_ref], data, split=split, aggregation=aggregation,
                         max_context_tokens=max_context_tokens, max_tokens=max_tokens, limit=limit,
                         per_source=per_source, progress=progress)[0]


def evaluate_prms(model_refs: Sequence[str | Path], data: str | Path, *, split: str = "test",
                  aggregation: str | None = None, max_context_tokens: int = MAX_CONTEXT_TOKENS,
                  max_tokens: int = 2048, limit: int | None = None, per_source: int | None = None,
                  progress: bool = True) -> list[EvalResult]:
    """Loss, step accuracy and trajectory accuracy of PRMs on a build's split, on the same queries.

    Steps are the distinct labelled steps of the split (up to each trajectory's first wrong step, as in
    the statistics); a step is predicted right when its score exceeds 0.5. A complete trajectory is
    predicted right when its aggregated score exceeds 0.5: the minimum over its steps for process
    models, the final step for an outcome model (``aggregation`` ``"min"`` or ``"last"``; read from
    each model's training metadata when not given). Histories are rendered all ``+``, as at inference.

    PRMs of different prompt formats see different context lengths, so ``max_context_tokens`` would
    leave out different queries for each, and a format with longer step texts keeps fewer of a query's
    trajectories within ``max_tokens``: only trajectories that every model kept are judged (so all
    models judge the same labelled steps), only queries with one are scored, and ``per_source`` and
    ``limit`` pick from those in file order. Each result lists its query ids.

    Raises:
        ValueError: No query of the split fits every model, or query ids repeat in the split.

    """
    queries = load_queries(data, split)
    repeated = sorted({i for i, n in Counter(q.get("id") for q in queries).items() if n > 1}, key=str)
    if repeated:
        raise ValueError(f"Query ids repeat in the {split} split of {data} ({', '.join(map(str, repeated[:5]))}): "
                         "the models could not be compared query by query.")
    scorers = [_scorer(ref) for ref in model_refs]
    packed_sets = [pack(queries, tokenizer, "eval", max_context_tokens, max_tokens) for tokenizer, _, pack in scorers]
    by_id = [{p.query_id: p for p in packed} for packed in packed_sets]
    fitting = set.intersection(*(set(model) for model in by_id))
    common = {i: set.intersection(*(set(model[i].kept) for model in by_id)) for i in fitting}
    chosen = [p for p in packed_sets[0] if common.get(p.query_id)]
    if per_source is not None:  # a split is written source by source: the first N would be one source
        chosen = _first_per_source(chosen, per_source)
    ids = [p.query_id for p in chosen[:limit]]
    if not ids:
        raise ValueError(f"No {split} query of {data} fits every model within max_context_tokens="
                         f"{max_context_tokens} and max_tokens={max_tokens}.")
    return [_evaluate(ref, tokenizer, logits_of, [_kept(model[i], common[i]) for i in ids],
                      aggregation or _default_aggregation(ref), progress)
            for ref, (tokenizer, logits_of, _), model in zip(model_refs, scorers, by_id, strict=True)]


def _kept(packed: Packed, kept: set[int]) -> Packed:
    """The packed query with only the trajectories every compared model kept within ``max_tokens``."""
    pairs = [(t, k) for t, k in zip(packed.trajectories, packed.kept, strict=True) if k in kept]
    return replace(packed, trajectories=[t for t, _ in pairs], kept=[k for _, k in pairs])


def _default_aggregation(model_ref: str | Path) -> str:
    """``last`` for an outcome model, ``min`` for a process model (from the training metadata)."""
    folder = prm_folder(model_ref)
    objective = prm_meta(folder).get("objective", "prm") if folder.is_dir() else "prm"
    return "last" if objective == "outcome" else "min"


def _evaluate(model_ref: str | Path, tokenizer: Any, logits_of: Callable[[Packed], Any],
              packed_set: Sequence[Packed], aggregation: str, progress: bool) -> EvalResult:
    """One model's `EvalResult` on the chosen packed queries."""
    started = time.perf_counter()
    plus_id, minus_id = label_token_ids(tokenizer)
    step_hits = step_total = step_pos = 0
    loss_sum = 0.0
    traj_hits = traj_total = traj_pos = 0
    tags: dict[str, list[int]] = {}
    focus: dict[str, list[int]] = {}
    rank_hits = rank_groups = 0
    rank_chance = 0.0
    # No ``relative`` column: its factors need every state's candidates scored, and the data has them
    # only along the reference path (a detour's later steps are only children, so wrong answers would
    # pay nowhere but at their detour). Held-out searches (`benchmarks/held_out.py`) measure it.
    select_hits: dict[str, int] = dict.fromkeys(PATH_AGGREGATIONS, 0)
    select_groups = 0
    select_chance = 0.0
    iterator = _iter_scores(logits_of, packed_set, plus_id, minus_id)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, total=len(packed_set), desc="eval-prm", unit="query")
    for packed, scores in iterator:
        labelled: set[int] = set()
        for nodes, _, _ in packed.trajectories:
            labels = [bool(packed.targets[n]) for n in nodes]
            labelled.update(nodes[: labelled_length([TAGGED[packed.tags[n]] for n in nodes], labels)])
        for node in sorted(labelled):
            truth = bool(packed.targets[node])
            score = min(max(scores[node], 1e-7), 1 - 1e-7)
            hit = (score > 0.5) == truth
            step_hits += hit
            step_total += 1
            step_pos += truth
            loss_sum -= math.log(score if truth else 1 - score)
            entry = tags.setdefault(packed.tags[node].value, [0, 0])
            entry[0] += hit
            entry[1] += 1
            for name in _focus(packed, node):
                seen = focus.setdefault(name, [0, 0, 0])
                seen[0] += hit
                seen[1] += 1
                seen[2] += truth
        for positives, negatives in sibling_groups(_only(packed, labelled)):
            top = max(positives + negatives, key=lambda n: scores[n])
            rank_hits += top in positives
            rank_groups += 1
            rank_chance += len(positives) / (len(positives) + len(negatives))
        for nodes, complete, correct in packed.trajectories:
            if not complete:
                continue
            path_scores = [scores[n] for n in nodes]
            verdict = (path_scores[-1] if aggregation == "last" else min(path_scores)) > 0.5
            traj_hits += verdict == correct
            traj_total += 1
            traj_pos += correct
        answers = [([scores[n] for n in nodes], correct) for nodes, complete, correct in packed.trajectories
                   if complete]
        picks = answer_selection(answers)
        if picks is not None:
            select_groups += 1
            select_chance += sum(correct for _, correct in answers) / len(answers)
            for how, hit in picks.items():
                select_hits[how] += hit
    return EvalResult(
        model=str(model_ref),
        queries=len(packed_set),
        query_ids=[p.query_id for p in packed_set],
        steps=step_total,
        trajectories=traj_total,
        loss=loss_sum / max(1, step_total),
        step_accuracy=step_hits / max(1, step_total),
        trajectory_accuracy=traj_hits / max(1, traj_total),
        always_positive_step_accuracy=step_pos / max(1, step_total),
        always_positive_trajectory_accuracy=traj_pos / max(1, traj_total),
        ranking_groups=rank_groups,
        ranking_accuracy=rank_hits / max(1, rank_groups),
        random_ranking_accuracy=rank_chance / max(1, rank_groups),
        selection_groups=select_groups,
        selection_accuracy={how: hits / max(1, select_groups) for how, hits in select_hits.items()},
        random_selection_accuracy=select_chance / max(1, select_groups),
        per_tag={tag: {"accuracy": hits / max(1, n), "steps": n} for tag, (hits, n) in sorted(tags.items())},
        focus={name: {"accuracy": hits / max(1, n), "steps": n, "always_positive": pos / max(1, n)}
               for name, (hits, n, pos) in sorted(focus.items())},
        aggregation=aggregation,
        seconds=round(time.perf_counter() - started, 1),
    )
