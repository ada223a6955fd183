"""`toolprm train` and `toolprm eval-prm`: fine-tune and measure a generative PRM.

One training sequence per *query*, not per step and not even per trajectory: the query's context
(tools and conversation, `render_context`) is encoded once, and every distinct step of every one of its
trajectories follows as one line (`step_text` + label), placed in a prefix tree. A tree attention mask
lets each line see the context, the lines of its own path and nothing else, with positions counted
along that path, so each step is read exactly as `GenerativePRM` reads it at inference
(``encode(context) + encode(history + step)``) and the label token after it is the target. A query
with 40 labelled steps costs one forward pass over its context plus its distinct lines.

Three objectives share the data, for the paper's comparison:

- ``prm``: every step labelled (prefix correctness), each trajectory cut after its first wrong step,
  so every history the model sees is all ``+``, as in the search.
- ``coarse``: no label on argument values (``ARG_VALUE``); a wrong value shows at the next labelled step.
- ``outcome``: complete answers only, one label on the final ``TOTAL_FINISH`` = whole answer right.

The loss is read at the label tokens only: the language-model loss of ``+``/``-`` there, weighed so
that each tag's right and wrong steps count alike, plus a ranking loss that sets each right candidate
against the wrong candidates of the same state (siblings in the tree), which is the comparison the
beam search makes. LoRA is optional (and what makes the packaged default PRM a few MB); training is
resumable from the checkpoint in the output folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from langchain_toolprm.data.rollouts import Trajectory, labelled_length
from langchain_toolprm.grammar import Action, Grammar, StepTag
from langchain_toolprm.prm.adapters import DEFAULT_PRM, META_FILE, default_prm_path, load_prm_model, prm_meta
from langchain_toolprm.prm.prompt import LABEL_NEGATIVE, LABEL_POSITIVE, PROMPT_VERSION, render_context, step_text
from langchain_toolprm.search.config import PATH_AGGREGATIONS
from langchain_toolprm.search.engine import aggregate
from langchain_toolprm.tools import ToolSchemaError, to_tool_specs

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "EvalResult",
    "Packed",
    "TrainConfig",
    "answer_selection",
    "default_prm_path",
    "evaluate_prm",
    "load_prm_model",
    "load_queries",
    "pack_query",
    "train_prm",
]

logger = logging.getLogger(__name__)

Objective = Literal["prm", "coarse", "outcome"]
_LINE_END = "\n"


class TrainConfig(BaseModel):
    """Settings of one PRM training run (the ``toolprm train`` options).

    The defaults are the CPU recipe's backbone and LoRA (Qwen2.5-Coder-0.5B, the packaged default
    PRM's; one epoch or a time budget); the paper's recipe is ``base=<3B>, epochs=5, batch_size=1024,
    lr=1e-3, warmup_ratio=0.008, weight_decay=1e-5``.
    """

    model_config = ConfigDict(extra="forbid")

    data: list[Path] = Field(
        min_length=1, description="Build-data folders (train.jsonl, test.jsonl) or train JSONL files; "
        "several builds train one PRM (a query in two builds counts twice: two maskings, two rollouts).")
    out: Path = Field(description="Output folder: the PRM (adapter or full model) and its checkpoint.")
    base: str = Field("qwen2.5-coder-0.5b-instruct",
                      description="Backbone reference (packaged name, folder, hub id).")
    dtype: str = Field("float32", description="Weight dtype: float32 on CPU, bfloat16 on a GPU.")
    objective: Objective = "prm"
    init: str | None = Field(
        None, description="A trained LoRA PRM ('default' or a folder) to train further instead of a fresh "
        "adapter; its base, LoRA shape and prompt version are used as they are.")
    mix_sources: bool = Field(
        False, description="With max_queries: draw queries from every source in turn (policy rollouts first "
        "within each), so rare sources (composed, follow-ups) are not crowded out by the large ones.")
    lora: bool = True
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    lora_targets: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    lora_layers: int | None = Field(None, ge=1, description="LoRA on the top N layers only (cheaper backward).")
    epochs: float = Field(1.0, gt=0)
    batch_size: int = Field(8, ge=1, description="Queries (packed sequences) per optimizer step.")
    lr: float = Field(1e-3, gt=0)
    warmup_ratio: float = Field(0.008, ge=0, lt=1)
    weight_decay: float = Field(1e-5, ge=0)
    max_context_tokens: int = Field(1024, ge=16, description="Queries with a longer PRM context are left out.")
    max_tokens: int = Field(1536, ge=32, description="Sequence cap; a query's later trajectories are dropped.")
    balance: bool = Field(True, description="Weigh + and - equally within each step tag.")
    rank_weight: float = Field(1.0, ge=0, description="Weight of the ranking loss among candidates of one state.")
    max_queries: int | None = Field(
        None, ge=1, description="Train on at most this many queries: those with policy rollouts first.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps.")
    time_budget_s: float | None = Field(None, gt=0, description="Stop (and save) after this many seconds.")
    save_every: int = Field(25, ge=1, description="Checkpoint every N optimizer steps.")
    threads: int | None = Field(None, ge=1, description="torch threads (CPU).")
    seed: int = 0

    @field_validator("data", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | Path) else value


# --------------------------------------------------------------------------------------------------
# Data: queries packed as prefix trees
# --------------------------------------------------------------------------------------------------


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


_TAGGED = {tag: Action(tag) for tag in StepTag}  # stand-ins: `labelled_length` reads the tags only
_ORIGIN_ORDER = {"reference": 0, "sample": 1, "branch": 2, "rule": 3, "perturbed": 3, "completed": 4}


def _select(trajectories: list[Trajectory], objective: Objective | Literal["eval"]
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
            targets: list[bool | None] = []
            for i, (action, label) in enumerate(zip(t.actions, t.labels, strict=True)):
                labelled = objective == "prm" or action.tag is not StepTag.ARG_VALUE
                targets.append(label if labelled else None)
                if labelled and not label:
                    if i + 1 < len(t.actions) and t.actions[i + 1].tag is StepTag.FUNC_END:
                        targets.append(False)  # forced: the closing call's label (see `labelled_length`)
                    break
            while targets and targets[-1] is None:
                targets.pop()
            if targets:
                out.append((t, len(targets), targets))
    return out


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
    context_ids = _encode(tokenizer, render_context(query["messages"], specs))
    if len(context_ids) > max_context_tokens:
        return None
    plus = _encode(tokenizer, LABEL_POSITIVE)
    newline = _encode(tokenizer, _LINE_END)
    trajectories = sorted((Trajectory.from_json(t) for t in query["trajectories"]),
                          key=lambda t: _ORIGIN_ORDER.get(t.origin, 9))
    ids, positions = list(context_ids), list(range(len(context_ids)))
    nodes: dict[tuple[Any, ...], int] = {}
    packed = Packed(ids, positions, len(context_ids), [], [], [], [], [], [], str(query.get("mode", "rules")),
                    str(query.get("source", "")), len(query["reference"]))
    for trajectory, length, targets in _select(trajectories, objective):
        actions = trajectory.actions
        shared = 0
        while shared < length and tuple(actions[: shared + 1]) in nodes:
            shared += 1
        states = grammar.walk(actions[:length])
        lines = [_encode(tokenizer, step_text(states[i], actions[i])) for i in range(shared, length)]
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
    return packed


def _encode(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------


def label_token_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[int, int]:
    """The ids of ``" +"`` and ``" -"``.

    Raises:
        ValueError: The tokenizer splits a label into several tokens.

    """
    ids = [_encode(tokenizer, label) for label in (LABEL_POSITIVE, LABEL_NEGATIVE)]
    if any(len(i) != 1 for i in ids):
        raise ValueError(f"The PRM labels must be single tokens; this tokenizer gives {ids}.")
    return ids[0][0], ids[1][0]


def _model_for_training(config: TrainConfig) -> tuple[Any, PreTrainedTokenizerBase]:
    from langchain_toolprm.models import load_causal_lm

    if config.init is not None:
        return _init_adapter(config)
    model, tokenizer = load_causal_lm(config.base, dtype=config.dtype)
    model.config.use_cache = False
    if config.lora:
        from peft import LoraConfig, get_peft_model

        layers = None
        if config.lora_layers is not None:
            total = int(model.config.num_hidden_layers)
            layers = list(range(max(total - config.lora_layers, 0), total))
        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=list(config.lora_targets), layers_to_transform=layers,
                          task_type="CAUSAL_LM")
        with _quiet_peft():
            model = get_peft_model(model, lora)
    return model, tokenizer


@contextlib.contextmanager
def _quiet_peft() -> Iterator[None]:
    """Peft 0.21 reads transformers' deprecated ``is_gradient_checkpointing``: not the user's concern."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        yield


def _init_adapter(config: TrainConfig) -> tuple[Any, PreTrainedTokenizerBase]:
    """The base of a trained LoRA PRM with its adapter loaded trainable (continued fine-tuning).

    Raises:
        ValueError: ``init`` is not a LoRA adapter, names another base than ``base``, or was trained on
            another prompt version.

    """
    from peft import PeftModel

    from langchain_toolprm.models import load_causal_lm
    from langchain_toolprm.prm.adapters import DEFAULT_PRM, default_prm_path, is_adapter, prm_meta

    folder = default_prm_path() if config.init == DEFAULT_PRM else Path(config.init or "")
    if not is_adapter(folder):
        raise ValueError(f"init={config.init!r} is not a LoRA adapter folder (no adapter_config.json in {folder}).")
    meta = prm_meta(folder)
    if meta.get("prompt_version", PROMPT_VERSION) != PROMPT_VERSION:
        raise ValueError(f"init={config.init!r} was trained on prompt format {meta['prompt_version']!r}, "
                         f"this version writes {PROMPT_VERSION!r}.")
    if meta.get("base", config.base) != config.base:
        raise ValueError(f"init={config.init!r} adapts {meta['base']!r}, not base={config.base!r}.")
    model, tokenizer = load_causal_lm(config.base, dtype=config.dtype)
    model.config.use_cache = False
    with _quiet_peft():
        return PeftModel.from_pretrained(model, str(folder), is_trainable=True), tokenizer


def _causal_lm(model: Any) -> Any:
    """The ``*ForCausalLM`` module under a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _label_logits(model: Any, packed: Packed, device: Any) -> torch.Tensor:
    """Logits at every node's label position, ``[nodes, vocab]``; the head runs on those rows only."""
    import torch

    lm = _causal_lm(model)
    ids = torch.tensor([packed.ids], device=device)
    positions = torch.tensor([packed.positions], device=device)
    mask = packed.attention_mask().to(device)
    hidden = lm.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False).last_hidden_state
    rows = hidden[0, torch.tensor(packed.label_at, device=device)]
    return lm.get_output_embeddings()(rows).float()


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


def _packed_set(queries: Sequence[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, objective: Objective | str,
                max_context_tokens: int, max_tokens: int) -> list[Packed]:
    out = []
    for query in queries:
        packed = pack_query(query, tokenizer, objective,  # type: ignore[arg-type]
                            max_context_tokens=max_context_tokens, max_tokens=max_tokens)
        if packed is not None and (objective == "eval" or any(t is not None for t in packed.targets)):
            out.append(packed)
    return out


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


def _sibling_groups(packed: Packed) -> list[tuple[list[int], list[int]]]:
    """Candidates of one state with labels of both kinds: ``(positive nodes, negative nodes)``.

    Siblings in the tree are exactly what the search compares: the candidate steps from one state.
    """
    by_parent: dict[int, tuple[list[int], list[int]]] = {}
    for node, (parent, target) in enumerate(zip(packed.node_parent, packed.targets, strict=True)):
        if target is not None:
            by_parent.setdefault(parent, ([], []))[0 if target else 1].append(node)
    return [(pos, neg) for pos, neg in by_parent.values() if pos and neg]


def _ranking_loss(logits: torch.Tensor, packed: Packed, plus_id: int, minus_id: int) -> torch.Tensor:
    """Each right candidate against the wrong candidates of the same state (softmax over margins).

    The margin ``logit(+) - logit(-)`` is the log-odds the search ranks by; the loss is summed over
    the query's sibling groups and averaged over each group's right candidates.
    """
    import torch

    margins = logits[:, plus_id] - logits[:, minus_id]
    total = margins.new_zeros(())
    for positives, negatives in _sibling_groups(packed):
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

    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = _model_for_training(config)
    plus_id, minus_id = label_token_ids(tokenizer)
    queries = [query for path in config.data for query in load_queries(path, "train")]
    data = _packed_set(queries, tokenizer, config.objective, config.max_context_tokens, config.max_tokens)
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
    warmup = max(1, round(config.warmup_ratio * total_steps)) if config.warmup_ratio > 0 else 0

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup))))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    state = {"step": 0, "seconds": 0.0, "losses": []}
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
    stopped_early = False
    while state["step"] < total_steps:
        step = state["step"]
        epoch, index = divmod(step, per_epoch)
        batch = [data[i] for i in _batches(len(data), config.batch_size, config.seed, epoch)[index]]
        labels_in_batch = sum(sum(t is not None for t in p.targets) for p in batch)
        groups_in_batch = sum(len(_sibling_groups(p)) for p in batch)
        optimizer.zero_grad(set_to_none=True)
        batch_loss = 0.0
        for packed in batch:
            keep = [i for i, t in enumerate(packed.targets) if t is not None]
            if not keep:
                continue
            all_logits = _label_logits(model, packed, device)
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
        budget_hit = config.time_budget_s is not None and state["seconds"] >= config.time_budget_s
        if state["step"] % config.save_every == 0 or budget_hit:
            _save_checkpoint(model, optimizer, scheduler, state, checkpoint)
        if budget_hit:
            stopped_early = state["step"] < total_steps
            break
    if bar is not None:
        bar.close()
    summary = {
        "objective": config.objective,
        "base": config.base,
        "prompt_version": PROMPT_VERSION,
        "train_queries": len(data),
        "train_labels": sum(sum(t is not None for t in p.targets) for p in data),
        "train_tokens_per_epoch": sum(len(p.ids) for p in data),
        "steps": state["step"],
        "planned_steps": total_steps,
        "stopped_by_time_budget": stopped_early,
        "seconds": round(state["seconds"], 1),
        "final_loss": float(sum(state["losses"][-10:]) / max(1, len(state["losses"][-10:]))),
        "config": json.loads(config.model_dump_json()),
    }
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


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------


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
    of a parallel answer, the first step of a query whose answer is no call, the first step after
    tool results; each beside "always +".
    """

    model: str
    queries: int
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
    from dataclasses import replace

    return replace(packed, targets=[t if i in nodes else None for i, t in enumerate(packed.targets)])


def _iter_scores(model: Any, data: Sequence[Packed], plus_id: int, minus_id: int, device: Any
                 ) -> Iterator[tuple[Packed, list[float]]]:
    import torch

    with torch.inference_mode():
        for packed in data:
            logits = _label_logits(model, packed, device)[:, [plus_id, minus_id]]
            yield packed, torch.softmax(logits, dim=-1)[:, 0].tolist()


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
    return {how: max(answers, key=lambda a, how=how: aggregate(a[0], how))[1] for how in PATH_AGGREGATIONS}


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
    if tag is StepTag.TOTAL_FINISH and packed.reference_calls >= 2:
        names.append("TOTAL_FINISH of parallel queries")
    if packed.node_parent[node] == -1 and packed.reference_calls == 0:
        names.append("first step of no-call queries")
    if packed.node_parent[node] == -1 and packed.source == "follow-up":
        names.append("first step after tool results")
    return names


def evaluate_prm(model_ref: str | Path, data: str | Path, *, split: str = "test", aggregation: str | None = None,
                 max_context_tokens: int = 1024, max_tokens: int = 2048, limit: int | None = None,
                 per_source: int | None = None,
                 progress: bool = True) -> EvalResult:
    """Loss, step accuracy and trajectory accuracy of a PRM on a build's test split.

    Steps are the distinct labelled steps of the split (up to each trajectory's first wrong step, as in
    the statistics); a step is predicted right when its score exceeds 0.5. A complete trajectory is
    predicted right when its aggregated score exceeds 0.5: the minimum over its steps for process
    models, the final step for an outcome model (``aggregation`` ``"min"`` or ``"last"``; read from
    the model's training metadata when not given). Histories are rendered all ``+``, as at inference.
    """
    import torch

    started = time.perf_counter()
    model, tokenizer = load_prm_model(model_ref, dtype=torch.float32)
    model.eval()
    if aggregation is None:
        folder = default_prm_path() if str(model_ref) == DEFAULT_PRM else Path(model_ref)
        objective = prm_meta(folder).get("objective", "prm") if folder.is_dir() else "prm"
        aggregation = "last" if objective == "outcome" else "min"
    plus_id, minus_id = label_token_ids(tokenizer)
    # The same queries for every model: the split's first ``limit`` whose context fits, in file order.
    packed_set = _packed_set(load_queries(data, split), tokenizer, "eval", max_context_tokens, max_tokens)
    if per_source is not None:  # a split is written source by source: the first N would be one source
        packed_set = _first_per_source(packed_set, per_source)
    packed_set = packed_set[:limit]
    device = next(model.parameters()).device
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
    select_hits = dict.fromkeys(PATH_AGGREGATIONS, 0)
    select_groups = 0
    select_chance = 0.0
    iterator = _iter_scores(model, packed_set, plus_id, minus_id, device)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, total=len(packed_set), desc="eval-prm", unit="query")
    for packed, scores in iterator:
        labelled: set[int] = set()
        for nodes, _, _ in packed.trajectories:
            labels = [bool(packed.targets[n]) for n in nodes]
            labelled.update(nodes[: labelled_length([_TAGGED[packed.tags[n]] for n in nodes], labels)])
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
        for positives, negatives in _sibling_groups(_only(packed, labelled)):
            best = max(positives + negatives, key=lambda n: scores[n])
            rank_hits += best in positives
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
