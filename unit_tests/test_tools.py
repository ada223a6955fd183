import pytest
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from langchain_toolprm.tools import ToolSchemaError, to_tool_specs

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["c", "f"], "default": "c"},
                "days": {"type": "integer"},
            },
            "required": ["city"],
        },
    },
}


def test_openai_dict_keeps_schema():
    (spec,) = to_tool_specs([WEATHER])
    assert spec.name == "get_weather"
    assert spec.required == ("city",)
    assert list(spec.properties) == ["city", "unit", "days"]
    assert spec.value_is_valid("unit", "c") and not spec.value_is_valid("unit", "k")
    assert spec.value_is_valid("days", 3)
    assert not spec.value_is_valid("days", "3") and not spec.value_is_valid("days", True)
    assert spec.argument_errors({"city": "Paris"}) == []
    assert any("missing required" in e for e in spec.argument_errors({}))
    assert any("unknown parameter" in e for e in spec.argument_errors({"city": "x", "zip": 1}))


def test_pydantic_function_and_langchain_tool():
    class Search(BaseModel):
        """Search the web."""

        query: str = Field(description="what")
        limit: int | None = None

    def add(a: int, b: float = 1.0) -> float:
        """Add two numbers.

        Args:
            a: first
            b: second
        """
        return a + b

    @tool
    def shout(text: str) -> str:
        """Upper-case a text."""
        return text.upper()

    specs = to_tool_specs([Search, add, shout])
    assert [s.name for s in specs] == ["Search", "add", "shout"]
    assert specs[0].value_is_valid("limit", None) and specs[0].value_is_valid("limit", 3)
    assert specs[1].required == ("a",) and specs[1].value_is_valid("b", 2)
    assert specs[2].required == ("text",)


def test_bfcl_types_are_translated():
    doc = {
        "name": "math.area",
        "description": "Area.",
        "parameters": {
            "type": "dict",
            "properties": {
                "base": {"type": "float"},
                "point": {"type": "tuple", "items": {"type": "integer"}},
                "extra": {"type": "any"},
                "opts": {"type": "dict", "properties": {"x": {"type": "float"}}},
                "unit": {"type": "string", "default": "None"},
            },
            "required": ["base", "point"],
        },
    }
    (spec,) = to_tool_specs([doc])
    assert spec.properties["base"]["type"] == "number"
    assert spec.value_is_valid("base", 10)  # an int is accepted where a float is asked, as in BFCL
    assert spec.properties["point"]["type"] == "array"
    assert spec.value_is_valid("extra", {"anything": [1]})
    assert spec.properties["opts"]["properties"]["x"]["type"] == "number"
    assert spec.value_is_valid("unit", "cm")


@pytest.mark.parametrize(
    ("parameters", "needle"),
    [
        ({"type": "object", "properties": {"x": {"type": "banana"}}}, "parameter 'x'"),
        ({"type": "object", "properties": {"x": "string"}}, "parameter 'x'"),
        ({"type": "object", "properties": {"x": {"type": "string"}}, "required": ["y"]}, "['y']"),
        ({"type": "array"}, "type 'object'"),
        ({"type": "object", "properties": {"x": {"type": "string", "minLength": "two"}}}, "parameter 'x'"),
    ],
)
def test_bad_schema_names_tool_and_parameter(parameters, needle):
    with pytest.raises(ToolSchemaError) as err:
        to_tool_specs([{"type": "function", "function": {"name": "broken", "parameters": parameters}}])
    assert "broken" in str(err.value) and needle in str(err.value)


def test_unknown_bfcl_type_and_duplicates():
    with pytest.raises(ToolSchemaError, match=r"'f'.*'x'.*banana"):
        to_tool_specs([{"name": "f", "parameters": {"type": "dict", "properties": {"x": {"type": "banana"}}}}])
    with pytest.raises(ToolSchemaError, match="Two tools"):
        to_tool_specs([WEATHER, WEATHER])
    with pytest.raises(ToolSchemaError, match="Cannot read tool"):
        to_tool_specs([42])


def test_flat_parameter_maps_are_refused_not_dropped():
    flat = {"name": "add", "description": "Add.", "parameters": {"a": {"type": "int"}, "b": {"type": "int"}}}
    with pytest.raises(ToolSchemaError, match=r"'add'.*flat"):
        to_tool_specs([flat])
