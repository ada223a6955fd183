"""The Table 1 analogue of a PRM data build: labelled steps and trajectories per split, tag and source."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from langchain_toolprm.data.rollouts import Trajectory, labelled_length
from langchain_toolprm.grammar import Action, StepTag

__all__ = ["format_table", "step_counts"]


def _tree_steps(trajectories: Iterable[Trajectory]) -> dict[tuple[Action, ...], tuple[StepTag, bool]]:
    """Unique labelled steps: one per distinct (prefix, step), up to each trajectory's first wrong step.

    (See `labelled_length`: the forced ``FUNC_END`` after a wrong step is counted too.)

    Trajectories of one query share prefixes (every branch starts on the reference path); counting
    each shared step once is what a prefix-packed training sequence trains on.
    """
    steps: dict[tuple[Action, ...], tuple[StepTag, bool]] = {}
    for trajectory in trajectories:
        for i in range(labelled_length(trajectory.actions, trajectory.labels)):
            steps[tuple(trajectory.actions[: i + 1])] = (trajectory.actions[i].tag, trajectory.labels[i])
    return steps


def step_counts(queries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Table 1 counts for one split: steps and trajectories, positive and negative, and steps per tag.

    Steps are distinct labelled steps (see `_tree_steps`). Trajectories are distinct labelled paths,
    whole answers and one-step branches alike (``+``: every step right); ``answers`` counts the
    complete ones only (``+``: the whole answer is right).
    """
    steps: Counter[Any] = Counter()
    trajectories: Counter[Any] = Counter()
    answers: Counter[Any] = Counter()
    tags: Counter[Any] = Counter()
    origins: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    source_steps: Counter[str] = Counter()
    modes: Counter[str] = Counter()
    for query in queries:
        sources[query["source"]] += 1
        modes[query.get("mode", "?")] += 1
        trajs = [Trajectory.from_json(t) for t in query["trajectories"]]
        for _, (tag, label) in _tree_steps(trajs).items():
            source_steps[query["source"]] += 1
            steps["positive" if label else "negative"] += 1
            tags[f"{tag.value}:{'positive' if label else 'negative'}"] += 1
        for trajectory in trajs:
            trajectories["positive" if all(trajectory.labels) else "negative"] += 1
            if trajectory.complete:
                answers["positive" if trajectory.correct else "negative"] += 1
            origins[trajectory.origin] += 1
    steps["total"] = steps["positive"] + steps["negative"]
    trajectories["total"] = trajectories["positive"] + trajectories["negative"]
    answers["total"] = answers["positive"] + answers["negative"]
    return {
        "queries": len(queries),
        "steps": dict(steps),
        "trajectories": dict(trajectories),
        "answers": dict(answers),
        "tags": {t.value: {"positive": tags[f"{t.value}:positive"], "negative": tags[f"{t.value}:negative"]}
                 for t in StepTag},
        "origins": dict(origins),
        "sources": dict(sources),
        "source_steps": dict(source_steps),
        "modes": dict(modes),
    }


def format_table(stats: dict[str, Any]) -> str:
    """The Table 1 analogue as Markdown: steps and trajectories per split, steps per tag, and their sources."""
    lines = [
        "| split | queries | steps + | steps - | steps total | trajectories + | trajectories - | trajectories total "
        "| answers + | answers - |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for split in ("train", "test"):
        s = stats["splits"].get(split)
        if not s:
            continue
        st, tr, an = s["steps"], s["trajectories"], s.get("answers", {})
        lines.append(
            f"| {split} | {s['queries']} | {st.get('positive', 0)} | {st.get('negative', 0)} | {st.get('total', 0)} "
            f"| {tr.get('positive', 0)} | {tr.get('negative', 0)} | {tr.get('total', 0)} "
            f"| {an.get('positive', 0)} | {an.get('negative', 0)} |"
        )
    lines += ["", "| step tag | train + | train - | test + | test - |", "|---|---:|---:|---:|---:|"]
    for tag in StepTag:
        row = [tag.value]
        for split in ("train", "test"):
            t = stats["splits"].get(split, {}).get("tags", {}).get(tag.value, {})
            row += [str(t.get("positive", 0)), str(t.get("negative", 0))]
        lines.append("| " + " | ".join(row) + " |")
    # Where the data came from: which queries got a policy, and which trajectories it proposed.
    splits = [stats["splits"].get(split, {}) for split in ("train", "test")]
    lines += ["", "| queries by rollout mode / trajectories by origin / by source | train | test |", "|---|---:|---:|"]
    for field, prefix in (("modes", "queries: "), ("origins", "trajectories: "), ("sources", "queries from "),
                          ("source_steps", "steps from ")):
        keys = sorted({k for s in splits for k in s.get(field, {})})
        lines += [f"| {prefix}{k} | " + " | ".join(str(s.get(field, {}).get(k, 0)) for s in splits) + " |"
                  for k in keys]
    return "\n".join(lines)

