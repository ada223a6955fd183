import pytest

from langchain_toolprm.search.values import read_value, value_end


@pytest.mark.parametrize(
    ("text", "end"),
    [
        (' "Paris"', 8), (' "Par', None), (" 12", None), (" 12,", 3), (" 12}", 3), (" [1, 2]", 7),
        (' {"a": [1]}', 11), (" tru", None), (" true,", 5), (" Paris", 6), ("   ", None), (' "a\\"b",', 7),
        (" 26.", None), (" 26.2", None), (" 26.2,", 5), (" 1e", None), (" 1e5}", 4), (" -", None),
    ],
)
def test_value_end(text, end):
    assert value_end(text) == end


def test_read_value_coerces_near_misses():
    assert read_value('"5"', {"type": "integer"}) == (True, 5)
    assert read_value("5", {"type": "string"}) == (True, "5")
    assert read_value("5.0", {"type": "integer"}) == (True, 5)
    assert read_value('"abc"', {"type": "integer"}) == (True, "abc")  # left for the schema check to reject
    assert read_value("nope", {"type": "string"}) == (False, None)
