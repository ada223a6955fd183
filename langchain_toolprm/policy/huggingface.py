"""The policy from models users already run with `langchain-huggingface`: their model, not a second copy.

A LangChain user with a local model has a ``ChatHuggingFace`` around a ``HuggingFacePipeline`` around a
transformers ``text-generation`` pipeline. Its local path drops bound tools (the pipeline never sees
them: langchain issues #29033 and #30453), so it cannot call tools at all; the search can, with the same
weights. The pipeline's model and tokenizer are wrapped as they are (nothing is loaded or copied), and
a ``ChatHuggingFace``'s own tokenizer, which renders its prompts today, renders the search's prompts.

Detection reads ``sys.modules``: an object of these classes exists only once its package is imported, so
``langchain-huggingface`` stays optional and is never imported here.
"""

from __future__ import annotations

import sys
from typing import Any

from langchain_toolprm.formats import ToolCallFormat
from langchain_toolprm.lm import CausalLM
from langchain_toolprm.policy.transformers import TransformersPolicy

__all__ = ["from_langchain", "from_pipeline", "is_huggingface_model"]

_CLASSES = (
    ("langchain_huggingface", "ChatHuggingFace"),
    ("langchain_huggingface", "HuggingFacePipeline"),
    ("transformers", "Pipeline"),
)


def _instance(obj: Any, module: str, name: str) -> bool:
    loaded = sys.modules.get(module)
    cls = getattr(loaded, name, None) if loaded is not None else None
    return isinstance(cls, type) and isinstance(obj, cls)


def is_huggingface_model(obj: Any) -> bool:
    """Whether ``obj`` is a ``ChatHuggingFace``, a ``HuggingFacePipeline`` or a transformers ``Pipeline``."""
    return any(_instance(obj, module, name) for module, name in _CLASSES)


def from_pipeline(pipeline: Any, *, tokenizer: Any = None, name: str | None = None,
                  format: str | ToolCallFormat = "auto") -> TransformersPolicy:
    """The policy on a transformers ``text-generation`` pipeline's own model and tokenizer.

    Args:
        pipeline: ``transformers.pipeline("text-generation", model=..., tokenizer=...)``.
        tokenizer: A tokenizer to render and encode prompts with instead of the pipeline's.
        name: The policy's name in metadata (default: the model's ``name_or_path``).
        format: As for `TransformersPolicy`.

    Raises:
        TypeError: The pipeline is not a text-generation pipeline on a causal LM with a tokenizer.

    """
    model = getattr(pipeline, "model", None)
    tokenizer = tokenizer if tokenizer is not None else getattr(pipeline, "tokenizer", None)
    task = getattr(pipeline, "task", None)
    if task != "text-generation" or model is None or tokenizer is None:
        raise TypeError(f"A policy needs a 'text-generation' pipeline with a model and a tokenizer; got task "
                        f"{task!r} with model {type(model).__name__} and tokenizer {type(tokenizer).__name__}.")
    if model.training:  # a pipeline built on a model still in training mode would sample with dropout
        raise TypeError("The pipeline's model is in training mode; call model.eval() first.")
    return TransformersPolicy(CausalLM(model, tokenizer, name=name or getattr(model, "name_or_path", None)),
                              format=format)


def from_langchain(model: Any, *, format: str | ToolCallFormat = "auto") -> TransformersPolicy:
    """The policy on the transformers model inside a ``ChatHuggingFace``, a ``HuggingFacePipeline`` or a pipeline.

    Args:
        model: ``ChatHuggingFace(llm=HuggingFacePipeline(pipeline=...))``, the ``HuggingFacePipeline``
            itself, or the transformers pipeline.
        format: As for `TransformersPolicy`.

    Raises:
        TypeError: ``model`` is none of those, or a ``ChatHuggingFace`` on a remote endpoint (its model is
            not here to search with: serve it and name it ``openai+http://HOST:PORT/v1#MODEL`` instead).

    """
    tokenizer = name = None
    if _instance(model, "langchain_huggingface", "ChatHuggingFace"):
        tokenizer, name = model.tokenizer, model.model_id
        if not _instance(model.llm, "langchain_huggingface", "HuggingFacePipeline"):
            raise TypeError(f"This ChatHuggingFace runs on a {type(model.llm).__name__}, not a local "
                            "HuggingFacePipeline: the search needs the model's logits. Serve the model (vLLM) "
                            "and pass policy='openai+http://HOST:PORT/v1#MODEL'.")
        model = model.llm
    if _instance(model, "langchain_huggingface", "HuggingFacePipeline"):
        name = name or model.model_id
        model = model.pipeline
    if not _instance(model, "transformers", "Pipeline"):
        raise TypeError(f"Expected a ChatHuggingFace, a HuggingFacePipeline or a transformers pipeline, got "
                        f"{type(model).__name__}.")
    return from_pipeline(model, tokenizer=tokenizer, name=name, format=format)
