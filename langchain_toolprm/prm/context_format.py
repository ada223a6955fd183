"""The PRM format that reads the policy's own context: its prompt, its call text, then a judgement suffix.

The first format (`langchain_toolprm.prm.prompt`) renders the tools and the conversation again in a
plain text of its own, so the PRM encodes every query a second time before it scores a step, and
its tokens outnumber the policy's (docs/benchmarks.md, ``toolprm bench``). Here the PRM reads what
the policy has already encoded: the policy's prompt (its chat template, with the tools), the call
text the policy has written so far, and the candidate step's text in the policy's call format. Only
a short suffix after the candidate is the PRM's own, and only there does its adapter run:

- the prompt and the call text come from the policy's cache, on the plain weights;
- the candidate's tokens run on the plain weights too (they are what the policy would write);
- the suffix (``judgement_suffix``) runs with the adapter on, and the label logits (``" +"``/``" -"``)
  after its last token give the score.

So a candidate costs the PRM its own few tokens plus the suffix, and training back-propagates
through the suffixes alone (`langchain_toolprm.train.model`). The suffix names the step's tag, so a
step with no text of its own (answering in text instead of calling) is still judged as that step.

Change anything here and bump `CONTEXT_PROMPT_VERSION`.
"""

from __future__ import annotations

from langchain_toolprm.formats import ToolCallFormat
from langchain_toolprm.grammar import Action, GrammarState, StepTag

__all__ = ["CONTEXT_PROMPT_VERSION", "candidate_text", "judgement_suffix"]

CONTEXT_PROMPT_VERSION = "toolprm-context-v1"


def judgement_suffix(tag: StepTag) -> str:
    """The PRM's own text after a candidate; the label is read after its last token."""
    return f"\n<judge {tag.value}>"


def candidate_text(fmt: ToolCallFormat, state: GrammarState, action: Action) -> str:
    """The policy's call text after ``action`` from ``state`` (the policy's cached text, then the step's)."""
    return fmt.render(state) + fmt.continuation(state, action)
