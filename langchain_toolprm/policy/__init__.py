"""Policies: the models that propose steps."""

from langchain_toolprm.policy.base import Policy, PolicySession
from langchain_toolprm.policy.transformers import TransformersPolicy

__all__ = ["Policy", "PolicySession", "TransformersPolicy"]
