"""A causal LM with prefix caching: the one place where tokens meet the model.

Both the policy and the generative PRM score many short continuations of one long shared text (the
prompt with its tool list, or the PRM's context). The shared text is encoded once; every later call
feeds only what differs, on a copy of the cached keys and values, with all candidates in one batch.

Texts are always tokenised whole (prefix + continuation), never piece by piece, so the model sees
the tokens it would have produced itself; where a continuation re-tokenises the end of the prefix
(BPE merges across the boundary), the cache is cut back to the last shared token.

Modules: `types` (what the models hand around), `tokenized` (what a tokenizer alone decides, shared with
served models), `scoring` (encoding and scoring on cached prefixes), `judging` (a PRM's label logits for
every beam in one pass), `causal` (sampling), `cache` (recent prefixes of one prompt, the prompts a model
encoded last, and what the last tree passes computed: `fed_tree`), `stacked` (several cached prefixes in one
cache), `judged_tree` (candidate texts and judgement suffixes as one tree).
"""

from langchain_toolprm.lm.cache import PrefixCache, RootMemory
from langchain_toolprm.lm.causal import CausalLM
from langchain_toolprm.lm.judging import JudgingLM
from langchain_toolprm.lm.scoring import ScoringLM
from langchain_toolprm.lm.tokenized import TokenizedLM
from langchain_toolprm.lm.types import (
    ContextLengthError,
    Draw,
    Prefix,
    Sample,
    StopFn,
    Usage,
    common_prefix,
    logsumexp,
)

__all__ = ["CausalLM", "ContextLengthError", "Draw", "JudgingLM", "Prefix", "PrefixCache", "RootMemory", "Sample",
           "ScoringLM", "StopFn", "TokenizedLM", "Usage", "common_prefix", "logsumexp"]
