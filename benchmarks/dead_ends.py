"""``toolprm`` with a log of the searches where ``forget_dead_calls`` changed a price.

A search under ``--forget-dead-calls`` differs from one without it only where a next call led nowhere
beside an end of the list (`langchain_toolprm.search.siblings`); everywhere else both make the same
choices, draw the same samples and answer the same. This wrapper counts, per search, the times a dead
call was left out of the price of a list's end (each time a path's score was read: the count says
whether the option changed a price, not how many ends it priced) and appends one JSON line per search
to ``$DEAD_ENDS_LOG`` (the request's start, the count, the calls), so that only the searches with a
count above 0 need a run without the option to compare. Usage:
``DEAD_ENDS_LOG=dead_ends.jsonl python benchmarks/dead_ends.py eval --forget-dead-calls ...``
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import langchain_toolprm.search.run as run_module
from langchain_toolprm.cli import main
from langchain_toolprm.search.siblings import Ledger, Step

_count = [0]
_led_nowhere = Ledger._led_nowhere
_run_search = run_module.run_search


def _counted(self: Ledger, step: Step) -> bool:
    dead = _led_nowhere(self, step)
    _count[0] += dead
    return dead


def _logged(messages: Any, *args: Any, **kwargs: Any) -> Any:
    _count[0] = 0
    result = _run_search(messages, *args, **kwargs)
    request = messages if isinstance(messages, str) else json.dumps(messages)
    with open(os.environ["DEAD_ENDS_LOG"], "a") as log:
        log.write(json.dumps({"request": request[:200], "dead_call_prices": _count[0], "calls": result.calls}) + "\n")
    return result


if __name__ == "__main__":
    Ledger._led_nowhere = _counted  # type: ignore[method-assign]
    run_module.run_search = _logged
    sys.exit(main(sys.argv[1:]))
