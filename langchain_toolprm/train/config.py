"""`TrainConfig`: the settings of one PRM training run (the ``toolprm train`` options)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from langchain_toolprm.models.registry import DEFAULT_POLICY

if TYPE_CHECKING:
    pass


Objective = Literal["prm", "coarse", "outcome", "decisions"]
PromptFormat = Literal["prm", "policy"]

MAX_CONTEXT_TOKENS = 1024
"""Queries with a longer PRM context are left out of training and of `evaluate_prm`."""


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
    base: str = Field(DEFAULT_POLICY,
                      description="Backbone reference (packaged name, folder, hub id).")
    dtype: str = Field("float32", description="Weight dtype: float32 on CPU, bfloat16 on a GPU.")
    objective: Objective = "prm"
    prompt: PromptFormat = Field(
        "prm", description="What the PRM reads: 'prm', the tools and conversation in its own plain text "
        "(toolprm-prompt-v1, a model of its own); 'policy', the policy's own prompt and call text with a short "
        "judgement suffix (toolprm-context-v1: a LoRA on the policy's model that scores on the policy's cache, "
        "a few tokens per candidate).")
    init: str | None = Field(
        None, description="A trained LoRA PRM ('default' or a folder) to train further instead of a fresh "
        "adapter; its base and LoRA shape are used as they are. An adapter of the other prompt format starts "
        "this run's format from its weights (a warm start: a context PRM from the packaged one).")
    mix_sources: bool = Field(
        False, description="With max_queries: draw queries from every source in turn (policy rollouts first "
        "within each), so rare sources (composed, follow-ups) are not crowded out by the large ones.")
    sources: list[str] | None = Field(
        None, min_length=1, description="Train on the queries of these sources only, named as build-data's Table 1 "
        "names them ('composed', 'repeated', 'bfcl:live_simple'...): a stage that trains a few decisions.")
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
    warmup_ratio: float = Field(
        0.008, ge=0, lt=1, description="Share of the optimizer steps spent warming up linearly from a learning "
        "rate of 0, rounded to whole steps (none when it rounds to 0).")
    weight_decay: float = Field(1e-5, ge=0)
    max_context_tokens: int = Field(MAX_CONTEXT_TOKENS, ge=16,
                                    description="Queries with a longer PRM context are left out.")
    max_tokens: int = Field(1536, ge=32, description="Sequence cap; a query's later trajectories are dropped.")
    balance: bool = Field(True, description="Weigh + and - equally within each step tag.")
    rank_weight: float = Field(1.0, ge=0, description="Weight of the ranking loss among candidates of one state.")
    max_queries: int | None = Field(
        None, ge=1, description="Train on at most this many queries: those with policy rollouts first.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps.")
    time_budget_s: float | None = Field(None, gt=0, description="Stop (and save) after this many seconds.")
    stop_at_step: int | None = Field(
        None, ge=1, description="Stop (and save) at this optimizer step of the planned schedule, which stays the "
        "one of max_steps/epochs: models compared at the same point of one recipe, resumable to its end.")
    save_every: int = Field(25, ge=1, description="Checkpoint every N optimizer steps.")
    threads: int | None = Field(None, ge=1, description="torch threads (CPU).")
    seed: int = 0

    @model_validator(mode="after")
    def _policy_format_is_a_lora(self) -> TrainConfig:
        if self.prompt == "policy" and not self.lora:
            raise ValueError("prompt='policy' trains a LoRA adapter that runs on the policy's model; set lora=True.")
        return self

    @property
    def prompt_version(self) -> str:
        """The prompt format version the trained PRM is scored in."""
        from langchain_toolprm.prm.context_format import CONTEXT_PROMPT_VERSION
        from langchain_toolprm.prm.prompt import PROMPT_VERSION

        return CONTEXT_PROMPT_VERSION if self.prompt == "policy" else PROMPT_VERSION

    @field_validator("data", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | Path) else value
