"""`toolprm train` and `toolprm eval-prm`: fine-tune and measure a generative PRM.

One training sequence per *query*, not per step and not even per trajectory: the query's context
(tools and conversation, `render_context`) is encoded once, and every distinct step of every one of its
trajectories follows as one line (`step_text` + label), placed in a prefix tree. A tree attention mask
lets each line see the context, the lines of its own path and nothing else, with positions counted
along that path, so each step is read exactly as `GenerativePRM` reads it at inference
(``encode(context) + encode(history + step)``) and the label token after it is the target. A query
with 40 labelled steps costs one forward pass over its context plus its distinct lines.

Three objectives share the data, for the paper's comparison:

- ``prm``: every step labelled (prefix correctness), each trajectory cut after its first wrong step,
  so every history the model sees is all ``+``, as in the search.
- ``coarse``: no label on argument values (``ARG_VALUE``); a wrong value shows at the next labelled step.
- ``outcome``: complete answers only, one label on the final ``TOTAL_FINISH`` = whole answer right.

A fourth trains the decisions the search gets wrong, not the paper's comparison: ``decisions`` labels
only the steps taken at the call list's level (a turn's first step and the step after each call:
"call or answer?", "which function?", "one more call, or stop?"), the steps inside a call are history.
It puts the whole loss on those decisions; the sequences are barely shorter (the context dominates).

The loss is read at the label tokens only: the language-model loss of ``+``/``-`` there, weighed so
that each tag's right and wrong steps count alike, plus a ranking loss that sets each right candidate
against the wrong candidates of the same state (siblings in the tree), which is the comparison the
beam search makes. LoRA is optional (and what makes the packaged default PRM a few MB); training is
resumable from the checkpoint in the output folder.

Modules: `config` (`TrainConfig`), `packing` (queries as prefix trees), `model` (backbone and adapter),
`loop` (`train_prm`), `evaluate` (`evaluate_prm`, `evaluate_prms`).
"""

from langchain_toolprm.prm.adapters import default_prm_path, load_prm_model
from langchain_toolprm.train.config import TrainConfig
from langchain_toolprm.train.evaluate import EvalResult, answer_selection, evaluate_prm, evaluate_prms
from langchain_toolprm.train.loop import train_prm
from langchain_toolprm.train.packing import Packed, load_queries, pack_query

__all__ = [
    "EvalResult",
    "Packed",
    "TrainConfig",
    "answer_selection",
    "default_prm_path",
    "evaluate_prm",
    "evaluate_prms",
    "load_prm_model",
    "load_queries",
    "pack_query",
    "train_prm",
]
