"""`toolprm build-data`: queries -> rollouts -> labels -> masked train/test JSONL and a Table 1 of counts.

The build is resumable: every query's labelled trajectories are appended to ``rollouts.jsonl`` as soon
as they exist (unmasked, so a masking change needs no new rollouts), and a restarted build skips the
queries already there. Policy time is bounded by ``time_budget_s``: queries left when it is spent get
rule branches only, and the statistics say how many got which. The policy rollouts of ``rollout_batch``
queries decode together (`policy_trajectories_many`), which buys more policy queries per second.

Output folder:

- ``train.jsonl`` / ``test.jsonl``: one query a line (split by query group, never by step): masked
  tools, conversation and reference, and its trajectories as ``[tag, name, value_json]`` actions with
  0/1 labels.
- ``masks.jsonl``: per masked query, the mapping from original to masked names.
- ``stats.json`` and ``stats.md``: the Table 1 analogue, per split and per step tag.
- ``config.json``: the build settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from langchain_toolprm.data.compose import compose_parallel, compose_repeated, follow_ups, remove_reference_tools
from langchain_toolprm.data.masking import Mask, mask_actions, mask_example
from langchain_toolprm.data.policy_rollouts import policy_trajectories_many
from langchain_toolprm.data.rollouts import (
    Prepared,
    RolloutConfig,
    Trajectory,
    prepare,
    rule_trajectories,
)
from langchain_toolprm.data.sources import (
    BFCL_LIVE_CATEGORIES,
    Example,
    examples_from_bfcl,
    examples_from_glaive,
    load_xlam,
)
from langchain_toolprm.data.stats import format_table, step_counts
from langchain_toolprm.models.registry import DEFAULT_POLICY

__all__ = ["BuildConfig", "build_dataset", "default_bfcl_dir", "format_table", "split_of", "step_counts"]

logger = logging.getLogger(__name__)

_SHARED_BFCL = Path(__file__).resolve().parents[3] / "shared" / "data" / "bfcl_v4"


def default_bfcl_dir() -> Path | None:
    """BFCL data: the shared copy beside the checkout, else the data folder of an installed ``bfcl-eval``."""
    if _SHARED_BFCL.is_dir():
        return _SHARED_BFCL
    from langchain_toolprm.evaluation.readers import bfcl_data_dir

    return bfcl_data_dir()


DEFAULT_TIME_BUDGET_S = 2400.0
"""Policy seconds of one rollout policy, unless told otherwise."""


class BuildConfig(BaseModel):
    """Settings of one dataset build.

    Attributes mirror the ``toolprm build-data`` options; see the field descriptions.
    """

    model_config = ConfigDict(extra="forbid")

    out: Path = Field(description="Output folder.")
    bfcl_dir: Path | None = Field(None, description="BFCL data folder; the shared copy or bfcl-eval's by default.")
    bfcl_categories: list[str] = Field(default_factory=lambda: list(BFCL_LIVE_CATEGORIES))
    xlam: list[str] = Field(default_factory=list, description="xLAM-form files or hub dataset ids.")
    glaive: list[str] = Field(default_factory=list, description="ShareGPT/glaive tool-conversation files.")
    compose_parallel: int = Field(200, ge=0, description="Parallel queries composed from single-call ones.")
    compose_repeated: int = Field(
        0, ge=0, description="Parallel queries composed from single-call ones that call the same function.")
    max_parts: int = Field(2, ge=2, description="Most single-call queries in one composed parallel query.")
    removed_tool: int = Field(0, ge=0, description="Irrelevance: relevant queries with their called tools removed.")
    follow_ups: int = Field(0, ge=0, description="Conversations continued after the reference calls' tool results.")
    limit: int | None = Field(None, ge=1, description="At most this many queries per source (quick runs).")
    policies: list[str] = Field(
        default_factory=lambda: [DEFAULT_POLICY],
        description="Rollout policies, used in turn: each until its time budget is spent. Empty: rules only.")
    time_budgets_s: list[float | None] = Field(
        default_factory=lambda: list[float | None]([DEFAULT_TIME_BUDGET_S]),
        description="Policy seconds per policy (None: no limit); queries left after the last get rules only.")
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    threads: int | None = Field(None, ge=1, description="torch threads; 1 is fastest on a CPU shared with others.")
    rollout_batch: int = Field(8, ge=1, description="Queries whose policy rollouts decode together (CPU time).")
    max_prompt_tokens: int = Field(1536, ge=16, description="Longer policy prompts get rule branches (cost).")
    mask_ratio: float = Field(1.0, ge=0.0, le=1.0, description="Fraction of queries with masked names.")
    equivalence: bool = Field(False, description="Label values by BFCL acceptable-value rules, not exact match.")
    test_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="Share of query groups in the test split.")
    seed: int = 0


def split_of(group: str, seed: int, test_fraction: float) -> str:
    """``"train"`` or ``"test"``, from a hash of the query group: stable across runs and sources."""
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_fraction else "train"


def _load_examples(config: BuildConfig) -> tuple[list[Example], list[str]]:
    examples: list[Example] = []
    skipped: list[str] = []
    bfcl_dir = config.bfcl_dir or default_bfcl_dir()
    if config.bfcl_categories:
        if bfcl_dir is None:
            raise FileNotFoundError("No BFCL data folder: pass --bfcl-dir or install bfcl-eval.")
        found, bad = examples_from_bfcl(bfcl_dir, config.bfcl_categories, limit=config.limit)
        examples += found
        skipped += bad
    for source in config.xlam:
        found, bad = load_xlam(source, limit=config.limit)
        examples += found
        skipped += bad
    for source in config.glaive:
        found, bad = examples_from_glaive(source, limit=config.limit)
        examples += found
        skipped += bad
    seen: set[str] = set()
    unique = []
    for example in examples:
        if example.id in seen:
            skipped.append(f"{example.id}: duplicate id")
            continue
        seen.add(example.id)
        unique.append(example)
    for example in unique:
        example.meta["split"] = split_of(example.group, config.seed, config.test_fraction)
    def composed(pool: Sequence[Example], n: int, seed: int) -> list[Example]:
        return compose_parallel(pool, n, seed, config.max_parts)

    def repeated(pool: Sequence[Example], n: int, seed: int) -> list[Example]:
        return compose_repeated(pool, n, seed, config.max_parts)

    made: list[tuple[int, Callable[[Sequence[Example], int, int], list[Example]]]] = [
        (config.compose_parallel, composed),
        (config.compose_repeated, repeated),
        (config.removed_tool, remove_reference_tools),
        (config.follow_ups, follow_ups),
    ]
    for total, make in made:  # in this order: follow-ups also continue composed queries
        n_test = round(total * config.test_fraction)
        for split, n in (("train", total - n_test), ("test", n_test)):
            pool = [e for e in unique if e.meta["split"] == split]
            for example in make(pool, n, config.seed + (split == "test")) if n else []:
                example.meta["split"] = split
                unique.append(example)
    return unique, skipped


def _read_done(path: Path) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    item = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by an interrupted run: that query is redone
                done[item["id"]] = item
    return done


def _mask_query(example: Example, trajectories: list[Trajectory], seed: int, masked: bool
                ) -> tuple[Example, list[Trajectory], Mask | None]:
    if not masked:
        return example, trajectories, None
    example, mask = mask_example(example, seed)
    out = []
    for trajectory in trajectories:
        t = Trajectory(mask_actions(trajectory.actions, mask), list(trajectory.labels), trajectory.origin)
        out.append(t)
    return example, out, mask


def build_dataset(config: BuildConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run a build (resuming one left in ``config.out``) and return its statistics.

    Raises:
        FileNotFoundError: No BFCL data folder when BFCL categories are asked for.

    """
    started = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(config.model_dump_json(indent=2), encoding="utf-8")
    examples, skipped = _load_examples(config)
    prepared: list[Prepared] = []
    for example in examples:
        try:
            ready = prepare(example, equivalence=config.equivalence)
        except Exception as exc:  # a tool the grammar rejects: drop the query, say why
            skipped.append(f"{example.id}: {exc}")
            continue
        if ready is None:
            skipped.append(f"{example.id}: the grammar cannot write the reference")
        else:
            prepared.append(ready)
    raw_path = out / "rollouts.jsonl"
    done = _read_done(raw_path)
    progress_path = out / "progress.json"
    spent: dict[str, float] = {}
    if progress_path.is_file() and done:
        spent = json.loads(progress_path.read_text())["policy_seconds"]
    if len(config.time_budgets_s) != len(config.policies):
        raise ValueError("Give one time budget per policy (policies and time_budgets_s differ in length).")
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    rng = random.Random(config.seed)
    order = list(prepared)
    rng.shuffle(order)
    todo = [p for p in order if p.example.id not in done]
    tiers = list(zip(config.policies, config.time_budgets_s, strict=True))
    loaded: dict[str, Any] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(order), initial=len(order) - len(todo), desc="rollouts", unit="query")
    with raw_path.open("a", encoding="utf-8") as raw:

        def record(ready: Prepared, trajectories: list[Trajectory], mode: str) -> None:
            item = {"id": ready.example.id, "mode": mode, "trajectories": [t.to_json() for t in trajectories]}
            raw.write(json.dumps(item, ensure_ascii=False) + "\n")
            raw.flush()
            done[ready.example.id] = item
            progress_path.write_text(json.dumps({"policy_seconds": spent}))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(policy_s=int(sum(spent.values())), mode=mode.split(":")[-1][:12])

        def roll_out(name: str, queries: list[Prepared]) -> None:
            tick = time.perf_counter()
            found = _policy_rollouts(loaded[name], name, queries, config)
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - tick
            for ready, (trajectories, mode) in zip(queries, found, strict=True):
                record(ready, trajectories, mode)

        # Policy queries wait in a batch until it is full (their rollouts decode together); budgets are
        # checked per query, so a policy's last batch may overrun its budget by up to a batch.
        batch: list[Prepared] = []
        batch_policy = ""
        for ready in todo:
            name = None if ready.example.irrelevant else _policy_with_budget(tiers, spent)
            if name is not None:
                policy = loaded.get(name) or loaded.setdefault(name, _load_policy(name))
                if _prompt_tokens(policy, ready) > config.max_prompt_tokens:
                    name = None
            if name is None:
                record(ready, rule_trajectories(ready, config.rollout, _query_rng(config, ready)), "rules")
                continue
            batch.append(ready)
            batch_policy = name  # the same for the whole batch: budgets change only when it runs
            if len(batch) >= config.rollout_batch:
                roll_out(batch_policy, batch)
                batch = []
        if batch:
            roll_out(batch_policy, batch)
    if bar is not None:
        bar.close()
    stats = _finalize(config, prepared, done, out)
    stats["skipped"] = len(skipped)
    stats["policies"] = config.policies
    stats["policy_seconds"] = {name: round(seconds, 1) for name, seconds in spent.items()}
    stats["build_seconds"] = round(time.perf_counter() - started, 1)
    (out / "skipped.txt").write_text("\n".join(skipped) + "\n", encoding="utf-8")
    (out / "stats.json").write_text(json.dumps(stats, indent=2), encoding="utf-8")
    (out / "stats.md").write_text(format_table(stats) + "\n", encoding="utf-8")
    return stats


def _query_rng(config: BuildConfig, ready: Prepared) -> random.Random:
    """A query's own random source: its rollout seed and rule branches do not depend on the build order."""
    return random.Random(f"{config.seed}:{ready.example.id}")


def _policy_with_budget(tiers: Sequence[tuple[str, float | None]], spent: dict[str, float]) -> str | None:
    """The first policy whose time budget is not spent, or ``None`` (rule branches only)."""
    return next((name for name, budget in tiers if budget is None or spent.get(name, 0.0) < budget), None)


def _policy_rollouts(policy: Any, name: str, batch: list[Prepared], config: BuildConfig
                     ) -> list[tuple[list[Trajectory], str]]:
    """Trajectories and rollout mode per query of a batch whose policy rollouts decode together.

    A query whose rollout fails gets rule branches only (and the failure is logged): a policy failure
    costs those queries' branches, not the build.
    """
    rngs = [_query_rng(config, ready) for ready in batch]
    seeds = [rng.randrange(2**31) for rng in rngs]
    results = policy_trajectories_many(policy, batch, config.rollout, seeds)
    out = []
    for ready, rng, result in zip(batch, rngs, results, strict=True):
        if isinstance(result, Exception):
            logger.error("Rollout failed on %s; rule branches only", ready.example.id, exc_info=result)
            out.append((rule_trajectories(ready, config.rollout, rng), "rules"))
        else:
            # Rule alternatives the policy did not propose are added too: labels are free, and every
            # option of a closed-set decision is one a wider search may meet.
            out.append((_merge(result, rule_trajectories(ready, config.rollout, rng)), f"policy:{name}"))
    return out


def _load_policy(name: str) -> Any:
    from langchain_toolprm.policy.transformers import TransformersPolicy

    return TransformersPolicy.from_pretrained(name)


def _prompt_tokens(policy: Any, ready: Prepared) -> int:
    return len(policy.lm.encode(policy.render_prompt(ready.example.messages, ready.specs)))


def _merge(first: list[Trajectory], second: list[Trajectory]) -> list[Trajectory]:
    seen = {t.key() for t in first}
    return first + [t for t in second if t.key() not in seen]


def _finalize(config: BuildConfig, prepared: list[Prepared], done: dict[str, dict[str, Any]], out: Path
              ) -> dict[str, Any]:
    """Mask, split and write the labelled queries; count them."""
    by_split: dict[str, list[dict[str, Any]]] = {"train": [], "test": []}
    files = {split: (out / f"{split}.jsonl").open("w", encoding="utf-8") for split in by_split}
    with (out / "masks.jsonl").open("w", encoding="utf-8") as masks:
        for ready in prepared:
            record = done.get(ready.example.id)
            if record is None:
                continue
            trajectories = [Trajectory.from_json(t) for t in record["trajectories"]]
            rng = random.Random(f"mask:{config.seed}:{ready.example.id}")
            example, trajectories, mask = _mask_query(ready.example, trajectories, config.seed,
                                                      rng.random() < config.mask_ratio)
            split = example.meta.get("split", "train")
            line = {
                "id": example.id,
                "source": example.source,
                "group": example.group,
                "split": split,
                "mode": record["mode"],
                "masked": mask is not None,
                "messages": example.messages,
                "tools": example.tools,
                "reference": example.reference,
                "trajectories": [t.to_json() for t in trajectories],
            }
            files[split].write(json.dumps(line, ensure_ascii=False) + "\n")
            by_split[split].append(line)
            if mask is not None:
                masks.write(json.dumps({"id": example.id, "mask": mask.to_json()}, ensure_ascii=False) + "\n")
    for handle in files.values():
        handle.close()
    return {"splits": {split: step_counts(queries) for split, queries in by_split.items()}}
