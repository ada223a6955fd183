"""Value grammars write enum and const members exactly, wherever they sit in the schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from langchain_toolprm.constrained import ValueGrammars, value_grammar_text

# Floats that llguidance's own JSON-schema reader takes one unit in the last place off.
MISREAD = [22.549442737217078, -190.13172509917138, 459.66349652025724]
F = json.dumps(MISREAD[0])


@pytest.fixture(scope="module")
def grammars(tiny_model_dir: Path) -> tuple[ValueGrammars, Any]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    return ValueGrammars(tokenizer, len(tokenizer), tokenizer.eos_token_id), tokenizer


def _accepts(grammars: tuple[ValueGrammars, Any], schema: dict[str, Any], text: str) -> bool:
    compiled, tokenizer = grammars
    grammar = compiled.get(schema)
    assert grammar is not None, value_grammar_text(schema)
    matcher = grammar.matcher()
    tokens = tokenizer.encode(" " + text, add_special_tokens=False)
    return matcher.try_consume_tokens(tokens) == len(tokens) and matcher.is_accepting()


@pytest.mark.parametrize("member", MISREAD)
def test_a_float_member_is_written_exactly(grammars: tuple[ValueGrammars, Any], member: float) -> None:
    for schema in ({"type": "number", "enum": [member, 1]}, {"const": member}, {"enum": [member, "a"]}):
        assert _accepts(grammars, schema, json.dumps(member)), schema


@pytest.mark.parametrize(("schema", "valid", "invalid"), [
    ({"type": "object", "properties": {"a": {"enum": [MISREAD[0], "x"]}, "b": {"type": "string"}, "c": {"const": 2}},
      "required": ["c"]},
     ['{"c": 2}', f'{{"a": {F}, "c": 2}}', '{"a": "x", "b": "hi", "c": 2}', '{"b": "", "c": 2}'],
     ["{}", '{"a": 1, "c": 2}', '{"a": "x"}']),
    ({"type": "array", "items": {"enum": [MISREAD[0]]}, "minItems": 1, "maxItems": 3},
     [f"[{F}]", f"[{F}, {F}, {F}]"], ["[]", f"[{F}, {F}, {F}, {F}]"]),
    ({"type": "array", "items": {"const": 'a"\\é\n中'}, "maxItems": 2},
     ["[]", json.dumps(['a"\\é\n中'], ensure_ascii=False)], ['["a"]']),
    ({"anyOf": [{"type": "string"}, {"type": "number", "enum": [MISREAD[1], "s"]}]},
     ['"free"', json.dumps(MISREAD[1])], ["1"]),
    ({"oneOf": [{"type": "string", "enum": ["a", "bb"], "minLength": 2}, {"type": "integer"}]},
     ['"bb"', "7"], ['"a"']),
    # an optional property with no valid value is left out; the rest of the object is still written
    ({"type": "object", "properties": {"e": {"type": "integer", "enum": ["x"]}, "n": {"type": "string", "minLength": 4,
                                       "maxLength": 3}, "k": {"const": MISREAD[2]}}, "required": ["k"]},
     [f'{{"k": {json.dumps(MISREAD[2])}}}'], ['{"e": "x", "k": 1}']),
])
def test_members_inside_containers_are_exact(grammars: tuple[ValueGrammars, Any], schema: dict[str, Any],
                                              valid: list[str], invalid: list[str]) -> None:
    assert [t for t in valid if not _accepts(grammars, schema, t)] == []
    assert [t for t in invalid if _accepts(grammars, schema, t)] == []



# Members and keys with characters the Lark lexer refuses raw in a literal (C0/C1 controls, DEL, format and
# private-use characters, one outside the Basic Multilingual Plane); found by benchmarks/schema_sweep.py,
# where such a grammar did not compile and its values were sampled freely (and never valid).
ODD = ["\x96\x7f\xe6", "\x7f\xef", "\U001055a0{", "a\u200bb", "\x00\x1f"]


@pytest.mark.parametrize("member", ODD)
def test_members_with_unprintable_characters_compile_and_are_exact(grammars: tuple[ValueGrammars, Any],
                                                                     member: str) -> None:
    for schema in ({"type": "string", "enum": [member, ""]}, {"const": member},
                   {"type": "object", "properties": {member: {"const": member}}, "required": [member]}):
        text = json.dumps(member, ensure_ascii=False)
        written = f"{{{text}: {text}}}" if schema.get("type") == "object" else text
        assert _accepts(grammars, schema, written), schema
        assert not _accepts(grammars, schema, '"x"'), schema

def test_schemas_without_members_keep_llguidance_json() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert value_grammar_text(schema).endswith("value: %json " + json.dumps(
        {**schema, "x-guidance": {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": ",
                                  "lenient": True}}))
