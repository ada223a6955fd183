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


def _tool(schema, name="f"):
    return {"type": "function", "function": {"name": name, "parameters": {
        "type": "object", "properties": {"p": schema}, "required": ["p"]}}}


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string", "enum": ["a", 1]}, ["a"]),
        ({"type": "string", "enum": ["a", "bb"], "minLength": 2}, ["bb"]),
        ({"type": "integer", "enum": [1, 2.5, "3", True]}, [1]),
        ({"type": "boolean", "const": True}, [True]),
        ({"enum": [{"x": 1}, {"x": "no"}], "items": {}, "properties": {"x": {"type": "integer"}}}, [{"x": 1}]),
    ],
)
def test_enumerated_choices_validate_under_the_whole_schema(schema, expected):
    (spec,) = to_tool_specs([_tool(schema)])
    assert spec.choices("p") == expected
    assert all(spec.value_is_valid("p", v) for v in spec.choices("p"))


@pytest.mark.parametrize(
    ("schema", "needle"),
    [
        ({"type": "integer", "const": "x"}, "none of ['x']"),
        ({"enum": []}, "empty enum"),
        ({"type": "string", "enum": ["a"], "minLength": 2}, "none of ['a']"),
        ({"type": "string", "minLength": 3, "maxLength": 2}, "minLength 3 is above maxLength 2"),
        ({"type": "number", "exclusiveMinimum": 1, "exclusiveMaximum": 1}, "exclusiveMinimum"),
        ({"type": "object", "properties": {"q": {"enum": []}}, "required": ["q"]}, "required property 'q'"),
        ({"type": "array", "items": {"const": 1, "type": "string"}, "minItems": 1}, "items"),
        ({"anyOf": [{"enum": []}, {"type": "integer", "const": "y"}]}, "every branch of anyOf"),
    ],
)
def test_unsatisfiable_schemas_are_refused_naming_tool_and_parameter(schema, needle):
    with pytest.raises(ToolSchemaError) as err:
        to_tool_specs([_tool(schema, name="weird")])
    assert "'weird', parameter 'p'" in str(err.value) and needle in str(err.value)


def test_satisfiable_look_alikes_are_accepted():
    for schema in ({"type": "array", "items": {"enum": []}},  # the empty list is valid
                   {"type": "number", "minimum": 1, "maximum": 1},
                   {"anyOf": [{"enum": []}, {"type": "string"}]}):
        to_tool_specs([_tool(schema)])


def test_local_refs_are_inlined():
    parameters = {
        "type": "object",
        "$defs": {"Point": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]},
                  "Unit": {"enum": ["m", "ft"]}},
        "properties": {"at": {"$ref": "#/$defs/Point", "description": "where"},
                       "path": {"type": "array", "items": {"$ref": "#/$defs/Point"}},
                       "unit": {"$ref": "#/$defs/Unit"}},
        "required": ["at"],
    }
    (spec,) = to_tool_specs([{"type": "function", "function": {"name": "go", "parameters": parameters}}])
    assert spec.properties["at"] == {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"],
                                     "description": "where"}
    assert spec.properties["path"]["items"]["required"] == ["x"]
    assert spec.choices("unit") == ["m", "ft"]
    assert "$defs" not in spec.parameters and "$ref" not in str(spec.parameters)
    assert spec.value_is_valid("at", {"x": 1}) and not spec.value_is_valid("at", {"x": "1"})


@pytest.mark.parametrize(
    ("ref", "needle"),
    [("#/$defs/Node", "recursive"), ("#/$defs/Missing", "names no definition"), ("other.json#/a", "only local")],
)
def test_refs_that_cannot_be_inlined_are_refused(ref, needle):
    parameters = {"type": "object", "$defs": {"Node": {"type": "object", "properties": {
        "next": {"$ref": "#/$defs/Node"}}}}, "properties": {"n": {"$ref": ref}}}
    with pytest.raises(ToolSchemaError, match=needle):
        to_tool_specs([{"type": "function", "function": {"name": "go", "parameters": parameters}}])


def test_ref_as_a_value_or_a_name_is_not_a_reference():
    schema = {"type": "object", "properties": {"$ref": {"type": "string", "enum": ["$ref", "#/x"]}},
              "required": ["$ref"]}
    (spec,) = to_tool_specs([_tool(schema)])
    assert spec.value_is_valid("p", {"$ref": "$ref"})
    (spec,) = to_tool_specs([_tool({"type": "string", "enum": ["$ref"]})])
    assert spec.choices("p") == ["$ref"]


def test_bfcl_enum_on_an_array_lists_its_item_values():
    """BFCL live writes an array's allowed item values on the array; JSON schema would admit no value."""
    doc = {"name": "get_sensor_readings", "parameters": {"type": "dict", "properties": {
        "metrics": {"type": "array", "items": {"type": "string"}, "enum": ["temperature", "co2"]}}}}
    (spec,) = to_tool_specs([doc])
    assert spec.properties["metrics"] == {"type": "array", "items": {"type": "string", "enum": ["temperature", "co2"]}}
    assert spec.value_is_valid("metrics", ["co2"]) and not spec.value_is_valid("metrics", ["wind"])
    # the same schema given as JSON schema (not BFCL) is taken literally, and refused
    with pytest.raises(ToolSchemaError, match="metrics"):
        to_tool_specs([{"name": "t", "parameters": {"type": "object", "properties": {
            "metrics": {"type": "array", "items": {"type": "string"}, "enum": ["temperature", "co2"]}}}}])
