"""Process reward models: scores for each step of a call."""

from langchain_toolprm.prm.base import PRM, CombinedPRM, PRMSession
from langchain_toolprm.prm.generative import GenerativePRM
from langchain_toolprm.prm.prompt import PROMPT_VERSION
from langchain_toolprm.prm.rules import RulePRM

__all__ = ["PRM", "PROMPT_VERSION", "CombinedPRM", "GenerativePRM", "PRMSession", "RulePRM"]
