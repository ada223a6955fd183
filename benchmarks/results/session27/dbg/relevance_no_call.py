"""Diagnostic: the relevance check's gains and price on three unseen cases that ended with no call under both beams.

    PYTHONPATH=. python benchmarks/results/session27/dbg/relevance_no_call.py  # reads b81100/
"""
import json
from langchain_toolprm.components import load_policy
from langchain_toolprm.messages import to_chat_messages
from langchain_toolprm.search.config import Relevance
from langchain_toolprm.search.relevance import RelevanceScorer
from langchain_toolprm.tools import to_tool_specs
from langchain_toolprm.evaluation.cases import load_cases
from langchain_toolprm.evaluation.config import EvalConfig
policy = load_policy("qwen2.5-coder-0.5b-instruct")
want = {"parallel_multiple_83": "/tmp/b81100", "parallel_89": "/tmp/b81100", "parallel_93": "/tmp/b81100"}
for data in set(want.values()):
    for case in load_cases(EvalConfig(data=data, categories=["parallel", "parallel_multiple"])):
        if case.id not in want:
            continue
        msgs = to_chat_messages(case.messages)
        session = policy.session(msgs, to_tool_specs(case.tools), seed=0)
        scorer = RelevanceScorer(policy, msgs, to_tool_specs(case.tools), Relevance(), session, 0)
        print(case.id, {k: round(v, 2) for k, v in scorer.gains().items()}, "penalty", round(scorer.penalty(), 2))
