"""The training loop: weighted label loss plus a ranking loss among siblings, checkpoints, the saved PRM."""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_toolprm.grammar import StepTag
from langchain_toolprm.prm.adapters import META_FILE, prompt_version

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

from langchain_toolprm.train.config import TrainConfig
from langchain_toolprm.train.context_packing import pack_context_queries
from langchain_toolprm.train.model import label_logits, label_token_ids, model_for_training
from langchain_toolprm.train.packing import Packed, load_queries, pack_queries, sibling_groups

logger = logging.getLogger(__name__)

def _label_weights(data: Sequence[Packed], balance: bool) -> dict[tuple[StepTag, bool], float]:
    """Loss weight per (tag, label): with ``balance``, each tag's ``+`` and ``-`` weigh the same in total.

    The data is lopsided by construction (most alternatives at a function-name decision are wrong,
    most parameter-name steps right); unweighted, a small model first learns each tag's prior, which
    ranks "finish" above every call whatever the request says. Weights are scaled to average 1.
    """
    counts: dict[tuple[StepTag, bool], int] = {}
    for packed in data:
        for tag, target in zip(packed.tags, packed.targets, strict=True):
            if target is not None:
                counts[(tag, target)] = counts.get((tag, target), 0) + 1
    keys = [(tag, label) for tag in StepTag for label in (True, False)]
    if not balance:
        return dict.fromkeys(keys, 1.0)
    raw = {}
    for tag, label in keys:
        n_tag = counts.get((tag, True), 0) + counts.get((tag, False), 0)
        present = sum(counts.get((tag, x), 0) > 0 for x in (True, False))
        raw[(tag, label)] = n_tag / (present * counts[(tag, label)]) if counts.get((tag, label)) else 0.0
    total = sum(counts.values())
    mean = sum(raw[k] * n for k, n in counts.items()) / max(1, total)
    return {k: (v / mean if mean else 1.0) for k, v in raw.items()}


def _ranking_loss(logits: torch.Tensor, packed: Packed, plus_id: int, minus_id: int) -> torch.Tensor:
    """Each right candidate against the wrong candidates of the same state (softmax over margins).

    The margin ``logit(+) - logit(-)`` is the log-odds the search ranks by; the loss is summed over
    the query's sibling groups and averaged over each group's right candidates.
    """
    import torch

    margins = logits[:, plus_id] - logits[:, minus_id]
    total = margins.new_zeros(())
    for positives, negatives in sibling_groups(packed):
        neg = margins[torch.tensor(negatives)]
        for node in positives:
            both = torch.cat([margins[node: node + 1], neg])
            total = total - torch.log_softmax(both, dim=0)[0] / len(positives)
    return total


def _policy_first(data: list[Packed], n: int, seed: int, *, by_source: bool = False) -> list[Packed]:
    """``n`` queries, those whose negatives came from a policy first (they are what the search meets).

    With ``by_source`` the sources take turns, each giving its policy-rollout queries first.
    """
    rng = random.Random(seed)

    def ordered(items: list[Packed]) -> list[Packed]:
        policy = [p for p in items if p.mode.startswith("policy")]
        rest = [p for p in items if not p.mode.startswith("policy")]
        rng.shuffle(policy)
        rng.shuffle(rest)
        return policy + rest

    if not by_source:
        return ordered(data)[:n]
    queues = [ordered([p for p in data if p.source == s]) for s in sorted({p.source for p in data})]
    mixed = [q[i] for i in range(max(map(len, queues))) for q in queues if i < len(q)]
    return mixed[:n]


def _of_sources(queries: list[dict[str, Any]], sources: list[str] | None) -> list[dict[str, Any]]:
    """The queries of ``sources`` (all without), refusing a source the data does not hold.

    Raises:
        ValueError: A named source has no query in the data (a typo would otherwise train on less).

    """
    if sources is None:
        return queries
    present = {str(q.get("source", "")) for q in queries}
    missing = sorted(set(sources) - present)
    if missing:
        raise ValueError(f"No training query from source(s) {', '.join(missing)}; "
                         f"the data holds: {', '.join(sorted(present))}.")
    return [q for q in queries if q.get("source") in sources]


def _batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    order = list(range(n))
    random.Random(seed * 1000 + epoch).shuffle(order)
    return [order[i: i + batch_size] for i in range(0, n, batch_size)]


def train_prm(config: TrainConfig, *, progress: bool = True) -> dict[str, Any]:
    """Fine-tune a generative PRM; resume from ``config.out/checkpoint`` when one is there.

    Returns:
        A summary: examples, optimizer steps, seconds, final training loss.

    """
    import torch
    from transformers import get_cosine_schedule_with_warmup

    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = model_for_training(config)
    plus_id, minus_id = label_token_ids(tokenizer)
    queries = _of_sources([query for path in config.data for query in load_queries(path, "train")], config.sources)
    pack = pack_context_queries if config.prompt == "policy" else pack_queries
    data = pack(queries, tokenizer, config.objective, config.max_context_tokens, config.max_tokens)
    if config.max_queries is not None and len(data) > config.max_queries:
        data = _policy_first(data, config.max_queries, config.seed, by_source=config.mix_sources)
    if not data:
        raise ValueError(f"No trainable query in {', '.join(map(str, config.data))} "
                         "(all contexts longer than max_context_tokens?).")
    weights = _label_weights(data, config.balance)
    per_epoch = math.ceil(len(data) / config.batch_size)
    total_steps = max(1, math.ceil(per_epoch * config.epochs))
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    # Linear warmup from 0, then cosine decay to 0 (transformers' schedule, as its Trainer and TRL use it). The
    # first warmup step runs at a learning rate of 0, so the warmup is rounded, never raised to one step: a
    # ratio too small for a whole step (the default one, in runs under 63 steps) means no warmup, and a short
    # CPU run trains from its first step.
    warmup = round(config.warmup_ratio * total_steps)
    scheduler = get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
    state: dict[str, Any] = {"step": 0, "seconds": 0.0, "losses": []}
    checkpoint = out / "checkpoint"
    if (checkpoint / "state.json").is_file():
        state = json.loads((checkpoint / "state.json").read_text())
        trainable = torch.load(checkpoint / "trainable.pt", weights_only=True)
        model.load_state_dict(trainable, strict=False)
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
        scheduler.load_state_dict(torch.load(checkpoint / "scheduler.pt", weights_only=True))
        logger.info("Resuming at step %d", state["step"])
    device = next(model.parameters()).device
    model.train()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=state["step"], desc=f"train {config.objective}", unit="step")
    started = time.perf_counter() - state["seconds"]
    last = min(total_steps, config.stop_at_step or total_steps)
    while state["step"] < last:
        step = state["step"]
        epoch, index = divmod(step, per_epoch)
        batch = [data[i] for i in _batches(len(data), config.batch_size, config.seed, epoch)[index]]
        labels_in_batch = sum(sum(t is not None for t in p.targets) for p in batch)
        groups_in_batch = sum(len(sibling_groups(p)) for p in batch)
        optimizer.zero_grad(set_to_none=True)
        batch_loss = 0.0
        for packed in batch:
            keep = [i for i, t in enumerate(packed.targets) if t is not None]
            if not keep:
                continue
            all_logits = label_logits(model, packed, device)
            logits = all_logits[torch.tensor(keep)]
            target = torch.tensor([plus_id if packed.targets[i] else minus_id for i in keep], device=device)
            weight = torch.tensor([weights[(packed.tags[i], bool(packed.targets[i]))] for i in keep], device=device)
            pointwise = torch.nn.functional.cross_entropy(logits, target, reduction="none")
            loss = (pointwise * weight).sum() / labels_in_batch
            if config.rank_weight > 0 and groups_in_batch:
                ranking = _ranking_loss(all_logits, packed, plus_id, minus_id)
                loss = loss + config.rank_weight * ranking / groups_in_batch
            loss.backward()
            batch_loss += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        state["step"] = step + 1
        state["seconds"] = time.perf_counter() - started
        state["losses"].append(round(batch_loss, 5))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{batch_loss:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        budget_hit = ((config.time_budget_s is not None and state["seconds"] >= config.time_budget_s)
                      or state["step"] == config.stop_at_step)
        if state["step"] % config.save_every == 0 or budget_hit:
            _save_checkpoint(model, optimizer, scheduler, state, checkpoint)
        if budget_hit:
            break
    if bar is not None:
        bar.close()
    summary = {
        "objective": config.objective,
        "base": config.base,
        "prompt_version": config.prompt_version,
        "train_queries": len(data),
        "train_labels": sum(sum(t is not None for t in p.targets) for p in data),
        "train_tokens_per_epoch": sum(len(p.ids) for p in data),
        "steps": state["step"],
        "planned_steps": total_steps,
        "stopped_by_time_budget": bool(state["step"] < total_steps and config.time_budget_s is not None
                                       and state["seconds"] >= config.time_budget_s),
        "stopped_at_step": state["step"] if state["step"] < total_steps else None,
        "seconds": round(state["seconds"], 1),
        "final_loss": float(sum(state["losses"][-10:]) / max(1, len(state["losses"][-10:]))),
        "config": json.loads(config.model_dump_json()),
    }
    if config.init is not None:
        summary["init_prompt_version"] = prompt_version(config.init)
    _save_model(model, tokenizer, config, summary, out)
    return summary


def _save_checkpoint(model: Any, optimizer: Any, scheduler: Any, state: dict[str, Any], folder: Path) -> None:
    """Trainable weights, optimizer and schedule, written to a temporary folder and renamed into place."""
    import shutil

    import torch

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    trainable = {k: v.detach().cpu() for k, v in model.named_parameters() if v.requires_grad}
    torch.save(trainable, tmp / "trainable.pt")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    (tmp / "state.json").write_text(json.dumps(state))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def _save_model(model: Any, tokenizer: PreTrainedTokenizerBase, config: TrainConfig, summary: dict[str, Any],
                out: Path) -> None:
    """The PRM: a LoRA adapter in half precision (a few MB) naming its base, or a full model folder."""
    import torch

    model.eval()
    if config.lora:
        model.save_pretrained(str(out))
        adapter_config = out / "adapter_config.json"
        data = json.loads(adapter_config.read_text(encoding="utf-8"))
        data["base_model_name_or_path"] = config.base
        adapter_config.write_text(json.dumps(data, indent=2), encoding="utf-8")
        weights = out / "adapter_model.safetensors"
        if weights.is_file():
            from safetensors.torch import load_file, save_file

            save_file({k: v.to(torch.float16) for k, v in load_file(str(weights)).items()}, str(weights))
    else:
        model.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
    (out / META_FILE).write_text(json.dumps({"base": config.base, **summary}, indent=2), encoding="utf-8")
