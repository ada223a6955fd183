"""What one ``toolprm eval`` runs: the settings (`EvalConfig`) and the (strategy, budget) runs they expand to."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from langchain_toolprm.evaluation.readers import (
    SINGLE_TURN_CATEGORIES,
)
from langchain_toolprm.models.registry import DEFAULT_POLICY
from langchain_toolprm.search.config import AdaptiveBudget, SearchConfig

if TYPE_CHECKING:
    pass


MANIFEST = "manifest.json"
SUMMARY = "summary.json"
RECORD_CATEGORY = "records"
"""The category of record-form cases (they carry none of their own)."""

EvalStrategy = Literal["unconstrained", "greedy", "beam", "beam_adaptive", "best_of_n", "majority"]
"""``beam_adaptive`` is beam search with `SearchConfig.adaptive` (its settings, or the defaults): each budget
of the grid is then a cap."""
STRATEGY_ORDER: tuple[str, ...] = ("unconstrained", "greedy", "majority", "best_of_n", "beam", "beam_adaptive")
"""Order of runs in files, tables and plots: baselines first, from cheapest to the PRM search."""
_BEAMS = {"beam", "beam_adaptive"}
_USES_PRM = {*_BEAMS, "best_of_n"}
_SAMPLED = {"best_of_n", "majority"}

DEFAULT_BFCL_CATEGORIES: tuple[str, ...] = tuple(
    c for c in SINGLE_TURN_CATEGORIES if not c.endswith(("_java", "_javascript"))
)
"""BFCL categories evaluated when none are named: the single-turn ones the Python checker grades."""

# Settings that change predictions: a resumed run must agree on all of them with the files it extends.
_FINGERPRINT_FIELDS = ("policy", "prm", "data", "answers", "categories", "limit")
# Search settings each run takes from `EvalConfig.search`; its strategy and budget come from the run.
_RUN_FIELDS = frozenset({"strategy", "num_beams", "beam_width", "num_samples"})
_SEARCH_FIELDS = tuple(name for name in SearchConfig.model_fields if name not in _RUN_FIELDS)


class EvalConfig(BaseModel):
    """Everything one ``toolprm eval`` needs; written to the manifest so a run can be reproduced.

    Attributes:
        data: A BFCL file or folder, or a record-form file (JSON array or JSON Lines). ``None``: the
            BFCL data inside the installed ``bfcl-eval`` package.
        answers: BFCL's ``possible_answer`` folder when it is not beside the data.
        categories: BFCL categories to load from a folder (default: `DEFAULT_BFCL_CATEGORIES`).
        limit: At most this many cases per category (the first ones), for subsets of stated size.
        output: The folder for prediction files, the manifest and the summary.
        policy: The policy reference (packaged name, hub id, folder, ``.gguf``).
        prm: The PRM reference (``"default"``, the packaged trained PRM; ``"rules"``; a model reference);
            used by ``beam`` and ``best_of_n`` only.
        strategies: Strategies to run.
        beams: The N values of the grid (beams kept).
        widths: The M values of the grid (candidates per beam and step).
        samples: ``num_samples`` for ``best_of_n``/``majority``; ``None`` derives ``N * M`` from the grid.
        search: The search settings of every run (seed, temperature, aggregation, token and step limits);
            each run sets its own strategy and budget. Its fields may also be given at the top level
            (``EvalConfig(seed=7)``). Every case starts from the same seed, so runs are repeatable case by
            case and a resumed run gives the predictions an uninterrupted one would have.
        progress: Show a progress bar on stderr.

    """

    model_config = ConfigDict(extra="forbid")

    data: str | None = None
    answers: str | None = None
    categories: list[str] | None = None
    limit: int | None = Field(None, ge=1)
    output: str = "toolprm-eval"
    policy: str = DEFAULT_POLICY
    prm: str = "default"
    strategies: list[EvalStrategy] = Field(default_factory=lambda: list[EvalStrategy](["greedy", "beam"]))
    beams: list[int] = Field(default_factory=lambda: [2])
    widths: list[int] = Field(default_factory=lambda: [4])
    samples: list[int] | None = None
    search: SearchConfig = Field(default_factory=SearchConfig)
    progress: bool = True

    @model_validator(mode="before")
    @classmethod
    def _gather_search_settings(cls, values: Any) -> Any:
        """Move search settings given at the top level into ``search``."""
        if not isinstance(values, dict):
            return values
        loose = {k: values[k] for k in values if k in _SEARCH_FIELDS}
        if not loose:
            return values
        base = values.get("search") or {}
        if isinstance(base, SearchConfig):
            base = base.model_dump(exclude_unset=True)
        rest = {k: v for k, v in values.items() if k not in loose}
        return {**rest, "search": {**base, **loose}}

    @field_validator("beams", "widths", "samples")
    @classmethod
    def _positive(cls, values: list[int] | None) -> list[int] | None:
        if values is not None and (not values or any(v < 1 for v in values)):
            raise ValueError("budget values must be a non-empty list of positive integers")
        return values

    @field_validator("strategies")
    @classmethod
    def _some_strategy(cls, values: list[str]) -> list[str]:
        if not values:
            raise ValueError("name at least one strategy")
        return values

    def runs(self) -> list[RunSpec]:
        """Expand strategies and the budget grid into runs, baselines first, without repeats."""
        runs: list[RunSpec] = []
        for strategy in sorted(set(self.strategies), key=STRATEGY_ORDER.index):
            if strategy in _BEAMS:
                runs += [RunSpec(strategy, n, m) for n in sorted(set(self.beams)) for m in sorted(set(self.widths))]
            elif strategy in _SAMPLED:
                counts = self.samples or [n * m for n in self.beams for m in self.widths]
                runs += [RunSpec(strategy, num_samples=k) for k in sorted(set(counts))]
            else:
                runs.append(RunSpec(strategy))
        return runs

    def fingerprint(self) -> dict[str, Any]:
        """The settings that must not change between a run and its resumption (paths made absolute)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in _FINGERPRINT_FIELDS}
        out |= self.search.model_dump(include=set(_SEARCH_FIELDS))
        for name in ("data", "answers"):
            if out[name] is not None:
                out[name] = str(Path(out[name]).resolve())
        return out


@dataclass(frozen=True)
class RunSpec:
    """One strategy at one budget.

    Attributes:
        strategy: The search strategy.
        num_beams: N, for ``beam``.
        beam_width: M, for ``beam``.
        num_samples: Complete samples, for ``best_of_n`` and ``majority``.

    """

    strategy: str
    num_beams: int | None = None
    beam_width: int | None = None
    num_samples: int | None = None

    @property
    def name(self) -> str:
        """The run's file stem, e.g. ``beam_N2_M4``, ``majority_n8``, ``greedy``."""
        if self.strategy in _BEAMS:
            return f"{self.strategy}_N{self.num_beams}_M{self.beam_width}"
        if self.num_samples is not None:
            return f"{self.strategy}_n{self.num_samples}"
        return self.strategy

    @property
    def uses_prm(self) -> bool:
        """Whether the PRM takes part (the others rank by the policy alone)."""
        return self.strategy in _USES_PRM

    @classmethod
    def from_name(cls, name: str) -> RunSpec:
        """Read a run back from its file stem.

        Raises:
            ValueError: The name is not one `name` writes.

        """
        if match := re.fullmatch(r"(beam|beam_adaptive)_N(\d+)_M(\d+)", name):
            return cls(match[1], int(match[2]), int(match[3]))
        if match := re.fullmatch(r"(best_of_n|majority)_n(\d+)", name):
            return cls(match[1], num_samples=int(match[2]))
        if name in ("greedy", "unconstrained"):
            return cls(name)
        raise ValueError(f"Not a run name: {name!r}")

    def search_config(self, config: EvalConfig) -> SearchConfig:
        """The engine's `SearchConfig` for this run."""
        budget: dict[str, int] = {}
        if self.num_beams is not None:
            budget |= {"num_beams": self.num_beams, "beam_width": self.beam_width or 1}
        if self.num_samples is not None:
            budget["num_samples"] = self.num_samples
        settings = {name: getattr(config.search, name) for name in _SEARCH_FIELDS}
        adaptive = self.strategy == "beam_adaptive"
        settings["adaptive"] = (config.search.adaptive or AdaptiveBudget()) if adaptive else None
        strategy = "beam" if self.strategy in _BEAMS else self.strategy
        return SearchConfig.model_validate({**settings, "strategy": strategy, **budget})
