"""Process reward models: scores for each step of a call."""

from langchain_toolprm.prm.base import PRM, CombinedPRM, PRMSession
from langchain_toolprm.prm.generative import GenerativePRM
from langchain_toolprm.prm.prompt import PROMPT_VERSION
from langchain_toolprm.prm.rules import RulePRM

__all__ = ["PRM", "PROMPT_VERSION", "CombinedPRM", "GenerativePRM", "PRMSession", "RulePRM"]


def __getattr__(name: str) -> object:
    # `load_prm` lives in `langchain_toolprm.components`, which imports this package; importing it here at the
    # top would be a cycle, so it is looked up on first use (``from langchain_toolprm.prm import load_prm``).
    if name == "load_prm":
        from langchain_toolprm.components import load_prm

        return load_prm
    raise AttributeError(f"module 'langchain_toolprm.prm' has no attribute {name!r}")
