"""A checker for BFCL's single-turn Python categories that gives the official verdicts.

BFCL (``bfcl_eval/eval_checker``) grades a decoded prediction, a list of ``{func_name: {arg: value}}``,
against per-parameter lists of acceptable values. Its rules have quirks that move scores, so this
module follows them on purpose rather than "fixing" them; ``unit_tests/test_bfcl_checker.py`` holds
recorded official verdicts and checks agreement on every one. The quirks kept:

- Types are Python's exact types (``bool`` is not an ``int``), except that an ``int`` is accepted, and
  converted, where a ``float`` is asked. Inside arrays there is no such conversion.
- A value whose type matches the type of the acceptable values instead of the documented type is a
  "variable" and is compared exactly (``==``), without string standardisation.
- Array element types are checked one level deep, against each acceptable list in turn; an acceptable
  value that is not a list (such as ``""``) lets any elements through.
- Strings, and strings directly inside lists and dicts, are compared after standardisation: spaces and
  the characters ``,./-_*^`` removed, lower-cased, ``'`` turned into ``"``.
- ``""`` among the acceptable values means the parameter may be left out; for an array parameter it
  also stands for the empty list.
- Parameters the ground truth does not list are rejected even when the function doc declares them.
- Parallel calls are matched greedily, order-free: each expected call, in order, takes the first
  still unmatched predicted call that passes.
- Java and JavaScript categories (values written as source literals in strings) are not supported.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

Call = dict[str, dict[str, Any]]
"""A decoded BFCL call: ``{func_name: {arg: value}}``."""

Answer = dict[str, dict[str, list[Any]]]
"""A BFCL possible answer for one call: ``{func_name: {param: [acceptable values]}}``."""

_PYTHON_TYPES: dict[str, type] = {
    "string": str,
    "integer": int,
    "float": float,
    "boolean": bool,
    "array": list,
    "tuple": list,
    "dict": dict,
    "any": str,
}
_SEQUENCE_TYPES = ("array", "tuple")
_IGNORED_CHARACTERS = re.compile(r"[ ,./\-_*^]")
_UNSUPPORTED_LANGUAGES = ("java", "javascript")


@dataclass(frozen=True)
class CheckResult:
    """The verdict on one prediction.

    Attributes:
        valid: Whether BFCL counts the prediction as correct.
        error: A readable reason when it is not.
        error_type: BFCL's error category (e.g. ``"type_error:simple"``), for error breakdowns that
            line up with BFCL's score files.

    """

    valid: bool
    error: str | None = None
    error_type: str | None = None


_PASS = CheckResult(valid=True)


def _fail(error_type: str, error: str) -> CheckResult:
    return CheckResult(valid=False, error=error, error_type=error_type)


def calls_to_bfcl(calls: Sequence[Mapping[str, Any]]) -> list[Call]:
    """Turn ``[{"name", "arguments"}]`` calls (LangChain, OpenAI, xLAM) into BFCL's decoded form."""
    return [{call["name"]: dict(call.get("arguments") or call.get("args") or {})} for call in calls]


def standardize_string(text: str) -> str:
    """Standardise a string as BFCL does before comparing it with acceptable strings.

    BFCL does not want to punish "April 1, 2024" against "April 1 2024", so it drops spaces and the
    characters ``,./-_*^``, lower-cases, and turns single quotes into double quotes.
    """
    return _IGNORED_CHARACTERS.sub("", text).lower().replace("'", '"')


def _standardize_if_string(value: Any) -> Any:
    return standardize_string(value) if type(value) is str else value


# --------------------------------------------------------------------------------------------------
# Output shape, shared by the relevance and AST paths
# --------------------------------------------------------------------------------------------------


def is_call_list(prediction: Any) -> bool:
    """Tell whether a prediction has BFCL's decoded shape: a list of one-key dicts of argument dicts."""
    if type(prediction) is not list:
        return False
    return all(type(call) is dict and len(call) == 1 and type(next(iter(call.values()))) is dict for call in prediction)


def has_no_call(prediction: Any) -> bool:
    """Tell whether BFCL reads a prediction as "no function call" (the relevance tests' criterion).

    Anything not in the decoded shape counts as no call, and so do ``[]`` and ``[{}]``.
    """
    if not is_call_list(prediction):
        return True
    return len(prediction) == 0 or (len(prediction) == 1 and len(prediction[0]) == 0)


# --------------------------------------------------------------------------------------------------
# Types
# --------------------------------------------------------------------------------------------------


def _answer_type(acceptable: Sequence[Any]) -> type | None:
    """Return the type of the first acceptable value other than the "may be omitted" marker ``""``."""
    for value in acceptable:
        if value != "":
            return type(value)
    return None


def _elements_fit(value: list[Any], candidate: Any, element_type: type) -> bool:
    """Check the elements of a list against one acceptable value, one level deep, as BFCL does.

    An element passes if it has the documented element type or the type of the candidate's first
    non-empty element. A candidate that is not a list puts no constraint on the elements.
    """
    if type(candidate) is not list:
        return True
    answer_type = _answer_type(candidate)
    return all(type(item) is element_type or type(item) is answer_type for item in value)


def _check_type(
    param: str, value: Any, acceptable: list[Any], expected: type, element_type: type | None
) -> tuple[CheckResult, bool]:
    """Check a value's type; also say whether BFCL treats the value as a "variable".

    Returns:
        The verdict, and True when the value must be compared exactly (no standardisation): its
        acceptable values are of another type than the documented one.

    """
    answer_type = _answer_type(acceptable)
    is_variable = answer_type is not None and answer_type is not expected
    if type(value) is expected:
        elements = cast(list[Any], value)
        if element_type is None or any(_elements_fit(elements, item, element_type) for item in acceptable):
            return _PASS, is_variable
        # BFCL reports a nested failure as a simple one when the answers are not lists themselves.
        error_type = "type_error:nested" if type(value) is answer_type else "type_error:simple"
        message = f"Elements of {param!r} are not all {element_type.__name__}: {value!r}."
        return _fail(error_type, message), is_variable
    if answer_type is not None and type(value) is answer_type:
        return _PASS, True
    message = f"Incorrect type for {param!r}: expected {expected.__name__}, got {type(value).__name__} ({value!r})."
    return _fail("type_error:simple", message), is_variable


# --------------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------------


def _check_string(param: str, value: str, acceptable: list[Any]) -> CheckResult:
    allowed = [standardize_string(item) for item in acceptable if type(item) is str]
    if standardize_string(value) in allowed:
        return _PASS
    return _fail("value_error:string", f"Invalid value for {param!r}: {value!r}; expected one of {acceptable}.")


def _check_list(param: str, value: list[Any], acceptable: list[Any]) -> CheckResult:
    """Compare a list with each acceptable one; strings directly inside are standardised.

    Acceptable values are iterated as BFCL does, so ``""`` stands for the empty list.
    """
    standardized = [_standardize_if_string(item) for item in value]
    allowed = [[_standardize_if_string(item) for item in candidate] for candidate in acceptable]
    if standardized in allowed:
        return _PASS
    return _fail("value_error:list/tuple", f"Invalid value for {param!r}: {value!r}; expected one of {acceptable}.")


def _dict_mismatch(value: Any, candidate: Mapping[str, list[Any]]) -> CheckResult | None:
    """Compare a dict with one acceptable dict whose entries are lists of acceptable values.

    Returns:
        None when it matches, else the failure. As in BFCL, a missing key outranks a wrong or
        unexpected one in the reported error type.

    """
    if type(value) is not dict:
        return _fail("value_error:dict_value", f"Expected a dict, got {value!r}.")
    first_error = None
    for key, item in value.items():
        if key not in candidate:
            first_error = _fail("value_error:dict_key", f"Unexpected dict key {key!r}.")
            break
        allowed = [_standardize_if_string(option) for option in candidate[key]]
        if _standardize_if_string(item) not in allowed:
            first_error = _fail("value_error:dict_value", f"Invalid value for dict key {key!r}: {item!r}.")
            break
    for key, options in candidate.items():
        if key not in value and "" not in options:
            return _fail("value_error:dict_key", f"Missing dict key {key!r}.")
    return first_error


def _check_dict(param: str, value: dict[str, Any], acceptable: list[Any]) -> CheckResult:
    """Accept a dict matching any acceptable dict; ``""`` entries (parameter omitted) never match."""
    result = _fail("dict_checker:unclear", f"No acceptable dict for {param!r}.")
    for candidate in acceptable:
        if candidate == "":
            continue
        mismatch = _dict_mismatch(value, candidate)
        if mismatch is None:
            return _PASS
        result = mismatch
    return result


def _check_dict_list(param: str, value: list[Any], acceptable: list[Any]) -> CheckResult:
    """Accept a list of dicts matching, position by position, any acceptable list of dicts."""
    result = _fail("list_dict_checker:unclear", f"No acceptable list of dicts for {param!r}.")
    for candidate in acceptable:
        if len(value) != len(candidate):
            result = _fail("value_error:list_dict_count", f"Wrong number of dicts in {param!r}.")
            continue
        result = _PASS
        for item, expected in zip(value, candidate, strict=True):
            result = _check_dict(param, item, [expected])
            if not result.valid:
                break
        if result.valid:
            return _PASS
    return result


def _check_exact(param: str, value: Any, acceptable: list[Any]) -> CheckResult:
    if value in acceptable:
        return _PASS
    return _fail("value_error:others", f"Invalid value for {param!r}: {value!r}; expected one of {acceptable}.")


def _value_checker(expected: type, element_type: type | None) -> Callable[[str, Any, list[Any]], CheckResult]:
    """Pick the comparison BFCL applies to a non-variable value of the documented type."""
    if expected is dict:
        return _check_dict
    if expected is list:
        return _check_dict_list if element_type is dict else _check_list
    if expected is str:
        return _check_string
    return _check_exact


def check_argument(param: str, value: Any, spec: Mapping[str, Any], acceptable: list[Any]) -> CheckResult:
    """Check one argument's type, then its value, against the function doc and its acceptable values."""
    type_name = spec["type"]
    if type_name not in _PYTHON_TYPES:
        raise ValueError(f"Unsupported BFCL type {type_name!r} for parameter {param!r}")
    expected = _PYTHON_TYPES[type_name]
    element_type = _PYTHON_TYPES[spec["items"]["type"]] if type_name in _SEQUENCE_TYPES else None
    if type_name == "tuple" and type(value) is tuple:
        value = list(value)
    if type_name == "float" and type(value) is int:
        value = float(value)
    type_result, is_variable = _check_type(param, value, acceptable, expected, element_type)
    if not type_result.valid:
        return type_result
    if is_variable:
        return _check_exact(param, value, acceptable)
    return _value_checker(expected, element_type)(param, value, acceptable)


# --------------------------------------------------------------------------------------------------
# Calls
# --------------------------------------------------------------------------------------------------


def _expected_name(name: str, underscore_to_dot: bool) -> str:
    """Return the name a prediction must use; models whose API forbids dots write ``_`` for ``.``."""
    return name.replace(".", "_") if underscore_to_dot else name


def _check_call(function: Mapping[str, Any], call: Call, answer: Answer, underscore_to_dot: bool) -> CheckResult:
    """Check one predicted call against one function doc and its possible answer."""
    acceptable_by_param = next(iter(answer.values()))
    name = _expected_name(function["name"], underscore_to_dot)
    if name not in call:
        return _fail("simple_function_checker:wrong_func_name", f"Function {name!r} not found in {call!r}.")
    arguments = call[name]
    properties = function["parameters"]["properties"]
    for param in function["parameters"].get("required", []):
        if param not in arguments:
            return _fail("simple_function_checker:missing_required", f"Missing required parameter {param!r}.")
    for param, value in arguments.items():
        if param not in properties or param not in acceptable_by_param:
            return _fail("simple_function_checker:unexpected_param", f"Unexpected parameter {param!r}.")
        result = check_argument(param, value, properties[param], acceptable_by_param[param])
        if not result.valid:
            return result
    for param, acceptable in acceptable_by_param.items():
        if param not in arguments and "" not in acceptable:
            return _fail("simple_function_checker:missing_optional", f"Parameter {param!r} must be given.")
    return _PASS


def _find_function(functions: Sequence[Mapping[str, Any]], name: str) -> Mapping[str, Any]:
    for function in functions:
        if function["name"] == name:
            return function
    raise ValueError(f"The ground truth calls {name!r}, which no function doc defines")


def _check_simple(
    functions: Sequence[Mapping[str, Any]],
    prediction: list[Call],
    ground_truth: list[Answer],
    underscore_to_dot: bool,
) -> CheckResult:
    if len(prediction) != 1:
        return _fail("simple_function_checker:wrong_count", f"Expected one call, got {len(prediction)}.")
    return _check_call(functions[0], prediction[0], ground_truth[0], underscore_to_dot)


def _check_multiple(
    functions: Sequence[Mapping[str, Any]],
    prediction: list[Call],
    ground_truth: list[Answer],
    underscore_to_dot: bool,
) -> CheckResult:
    """Check a choose-one-function case: the doc is the one the ground truth names."""
    if len(prediction) != len(ground_truth):
        return _fail(
            "multiple_function_checker:wrong_count",
            f"Expected {len(ground_truth)} call(s), got {len(prediction)}.",
        )
    function = _find_function(functions, next(iter(ground_truth[0])))
    return _check_call(function, prediction[0], ground_truth[0], underscore_to_dot)


def _check_parallel(
    functions: Sequence[Mapping[str, Any]],
    prediction: list[Call],
    ground_truth: list[Answer],
    underscore_to_dot: bool,
) -> CheckResult:
    """Match calls order-free, greedily in ground-truth order, as BFCL does (not a full bipartite match)."""
    if len(prediction) != len(ground_truth):
        return _fail(
            "parallel_function_checker_no_order:wrong_count",
            f"Expected {len(ground_truth)} calls, got {len(prediction)}.",
        )
    unmatched = list(range(len(prediction)))
    for position, answer in enumerate(ground_truth):
        function = _find_function(functions, next(iter(answer)))
        match = next(
            (index for index in unmatched if _check_call(function, prediction[index], answer, underscore_to_dot).valid),
            None,
        )
        if match is None:
            return _fail(
                "parallel_function_checker_no_order:cannot_find_match",
                f"No predicted call matches expected call {position} ({next(iter(answer))}).",
            )
        unmatched.remove(match)
    return _PASS


def _check_relevance(category: str, prediction: Any) -> CheckResult:
    if "irrelevance" in category:
        if has_no_call(prediction):
            return _PASS
        return _fail("irrelevance_error:decoder_success", "A function was called where none fits.")
    if has_no_call(prediction):
        return _fail("relevance_error:decoder_failed", "No function was called where one fits.")
    return _PASS


def check_case(
    category: str,
    functions: Sequence[Mapping[str, Any]],
    prediction: Any,
    ground_truth: list[Answer] | None,
    *,
    underscore_to_dot: bool = False,
) -> CheckResult:
    """Grade one decoded prediction on a BFCL single-turn case, with BFCL's rules.

    Args:
        category: The BFCL category, e.g. ``"simple_python"``, ``"live_parallel"``, ``"irrelevance"``.
        functions: The case's function docs.
        prediction: The decoded calls ``[{func_name: {arg: value}}]``; ``[]`` for no call. Anything of
            another shape is graded as BFCL grades an undecodable output.
        ground_truth: The case's possible answers; ignored (and may be None) for relevance categories.
        underscore_to_dot: Expect ``_`` in place of ``.`` in function names, as BFCL does for models
            whose API forbids dots (its ``underscore_to_dot`` model setting). Off, the original names
            are expected.

    Returns:
        The verdict, with BFCL's error type when invalid.

    Raises:
        ValueError: For Java/JavaScript categories, a missing ground truth in an AST category, or a
            function doc with a type BFCL's Python checker does not know.

    """
    if "relevance" in category:
        return _check_relevance(category, prediction)
    if category.rsplit("_", 1)[-1] in _UNSUPPORTED_LANGUAGES:
        raise ValueError(f"BFCL category {category!r} (Java/JavaScript) is not supported")
    if ground_truth is None:
        raise ValueError(f"BFCL category {category!r} needs a ground truth")
    if not is_call_list(prediction):
        return _fail("ast_decoder:decoder_wrong_output_format", f"Not a list of calls: {prediction!r}.")
    if "parallel" in category:
        checker = _check_parallel
    elif "multiple" in category:
        checker = _check_multiple
    else:
        checker = _check_simple
    return checker(functions, prediction, ground_truth, underscore_to_dot)
