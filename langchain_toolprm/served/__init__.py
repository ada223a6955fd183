"""Models behind an OpenAI-compatible completions server (vLLM first): the client and its settings.

`langchain_toolprm.policy.served.ServedPolicy` and `langchain_toolprm.prm.served.ServedPRM` are the
search's policy and PRM on such a server; a reference ``openai+http://HOST:PORT/v1#MODEL`` names one
wherever a model reference is accepted.
"""

from langchain_toolprm.served.client import REFERENCE_SCHEME, CompletionsClient, ServedModelError, ServerSettings
from langchain_toolprm.served.lm import ServedLM

__all__ = ["REFERENCE_SCHEME", "CompletionsClient", "ServedLM", "ServedModelError", "ServerSettings"]
