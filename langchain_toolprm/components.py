"""From the references users write (``"qwen2.5-coder-0.5b-instruct"``, ``"rules"``) to loaded objects.

Loaded models are kept per reference, so chat models, graphs and CLI runs that name the same model
share one copy in memory.
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from langchain_toolprm.policy.base import Policy
from langchain_toolprm.prm.base import PRM

if TYPE_CHECKING:
    from langchain_toolprm.lm import CausalLM

__all__ = ["load_policy", "load_prm"]

_lock = threading.Lock()


@lru_cache(maxsize=8)
def _policy(ref: str) -> Policy:
    from langchain_toolprm.policy.transformers import TransformersPolicy
    from langchain_toolprm.served.client import REFERENCE_SCHEME

    if ref.startswith(REFERENCE_SCHEME):
        from langchain_toolprm.policy.served import ServedPolicy

        return ServedPolicy.from_reference(ref)
    return TransformersPolicy.from_pretrained(ref)


@lru_cache(maxsize=8)
def _prm(ref: str) -> PRM:
    from langchain_toolprm.prm.generative import GenerativePRM
    from langchain_toolprm.prm.rules import RulePRM
    from langchain_toolprm.served.client import REFERENCE_SCHEME

    if ref == "rules":
        return RulePRM()
    if ref.startswith(REFERENCE_SCHEME):
        from langchain_toolprm.prm.served import ServedPRM

        return ServedPRM.from_reference(ref)
    return GenerativePRM.from_pretrained(ref)


@lru_cache(maxsize=8)
def _prm_on(ref: str, lm: CausalLM) -> PRM | None:
    from langchain_toolprm.prm.adapters import prompt_version
    from langchain_toolprm.prm.context_format import CONTEXT_PROMPT_VERSION
    from langchain_toolprm.prm.generative import GenerativePRM

    if prompt_version(ref) == CONTEXT_PROMPT_VERSION:
        from langchain_toolprm.prm.context import ContextPRM

        return ContextPRM.on_policy_model(ref, lm)
    return GenerativePRM.on_policy_model(ref, lm)


def load_policy(policy: Policy | str) -> Policy:
    """A policy object, loading (once per reference) a model named by a string.

    ``"openai+http://HOST:PORT/v1#MODEL"`` is a model on an OpenAI-compatible completions server
    (`langchain_toolprm.policy.served.ServedPolicy`); any other string is a local model reference.
    """
    if isinstance(policy, Policy):
        return policy
    if not isinstance(policy, str):
        raise TypeError(f"policy must be a Policy or a model reference string, got {type(policy).__name__}.")
    with _lock:
        return _policy(policy)


def _check_prm_name(ref: str) -> None:
    """Refuse a bare PRM name that names nothing (``"rulez"``) at once, listing the PRM names there are.

    A bare name that the hub knows (``gpt2``) goes on to load; see `check_bare_name`.
    """
    from langchain_toolprm.models import check_bare_name, short_model_names
    from langchain_toolprm.prm.adapters import DEFAULT_PRM

    known = ["rules", DEFAULT_PRM, *short_model_names()]
    if "/" not in ref and "\\" not in ref and ref.strip().lower() not in known and not os.path.exists(ref):
        check_bare_name(ref.strip(), known, "PRM")


def load_prm(prm: PRM | str | None, policy: Policy | None = None) -> PRM | None:
    """A PRM object from an object, a reference string or ``None``.

    ``None`` stays ``None``, ``"rules"`` is `RulePRM`, ``"default"`` the packaged trained PRM, other strings
    load a generative PRM (a `toolprm train` folder, a hub id, a packaged name, or a served model
    ``"openai+http://HOST:PORT/v1#prm"``, e.g. the packaged adapter served as a LoRA).

    Given the loaded ``policy`` it will run with, a LoRA PRM trained on the policy's own model (the
    packaged PRM on the default policy) runs as an adapter on the policy's weights: one model in memory,
    not two (`langchain_toolprm.prm.shared`). Any other PRM loads its own copy.
    """
    if prm is None or isinstance(prm, PRM):
        return prm
    if not isinstance(prm, str):
        raise TypeError(
            f"prm must be a PRM, a model reference string, 'default', 'rules' or None, got {type(prm).__name__}."
        )
    _check_prm_name(prm)
    from langchain_toolprm.policy.transformers import TransformersPolicy
    from langchain_toolprm.served.client import REFERENCE_SCHEME

    with _lock:
        if isinstance(policy, TransformersPolicy) and prm != "rules" and not prm.startswith(REFERENCE_SCHEME):
            shared = _prm_on(prm, policy.lm)
            if shared is not None:
                return shared
        return _prm(prm)


def describe(obj: Any) -> str:
    """A short name for metadata: a reference as written, or a loaded object's ``name``."""
    if isinstance(obj, str):
        return obj
    return str(getattr(obj, "name", None) or type(obj).__name__)
