import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from langchain_toolprm.messages import UnsupportedContentError, to_chat_messages


def test_tool_results_in_any_content_form_reach_the_prompt():
    forms = [
        "snow, -3C",
        [{"type": "text", "text": "snow, -3C"}],
        ["snow, ", {"type": "text", "text": "-3C"}],
        [{"type": "text-plain", "text": "snow, -3C", "mime_type": "text/plain"}],
    ]
    for content in forms:
        (message,) = to_chat_messages([ToolMessage(content, tool_call_id="c1")])
        assert message["content"] == "snow, -3C", content
    (message,) = to_chat_messages([ToolMessage([{"type": "json", "json": {"forecast": "snow, -3C"}}],
                                               tool_call_id="c1")])
    assert message["content"] == '{"forecast": "snow, -3C"}'
    (message,) = to_chat_messages([{"role": "tool", "content": [{"type": "json", "json": [1, 2]}],
                                    "tool_call_id": "c1"}])
    assert message["content"] == "[1, 2]"


def test_json_tool_result_is_in_the_rendered_prompt(tiny_policy):
    chat = to_chat_messages([
        HumanMessage("Weather in Oslo?"),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Oslo"}, "id": "c1"}]),
        ToolMessage([{"type": "json", "json": {"forecast": "snow, -3C"}}], tool_call_id="c1"),
    ])
    assert '{"forecast": "snow, -3C"}' in tiny_policy.render_prompt(chat, [])


@pytest.mark.parametrize(
    ("message", "kind", "role"),
    [
        (HumanMessage([{"type": "text", "text": "Describe this image."},
                       {"type": "image", "url": "https://example.com/cat.png"}]), "'image'", "user"),
        (HumanMessage([{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]), "'image_url'",
         "user"),
        (HumanMessage([{"type": "audio", "base64": "AAAA", "mime_type": "audio/wav"}]), "'audio'", "user"),
        (ToolMessage([{"type": "file", "file_id": "f1"}], tool_call_id="c1"), "'file'", "tool"),
        (SystemMessage([{"type": "mystery"}]), "'mystery'", "system"),
        (AIMessage([{"type": "image", "url": "https://example.com/x.png"}]), "'image'", "assistant"),
    ],
)
def test_content_a_text_model_cannot_read_raises_naming_the_block(message, kind, role):
    with pytest.raises(UnsupportedContentError) as err:
        to_chat_messages([message])
    assert kind in str(err.value) and role in str(err.value)


def test_assistant_call_and_reasoning_blocks_are_not_text():
    ai = AIMessage([{"type": "reasoning", "reasoning": "think"}, {"type": "text", "text": "Calling."},
                    {"type": "tool_use", "id": "c1", "name": "f", "input": {}}],
                   tool_calls=[{"name": "f", "args": {}, "id": "c1"}])
    (message,) = to_chat_messages([ai])
    assert message["content"] == "Calling." and message["tool_calls"][0]["function"]["name"] == "f"


def test_chat_model_refuses_an_image_before_searching(tiny_model_dir):
    from langchain_toolprm import ToolPRMChatModel

    model = ToolPRMChatModel(policy=str(tiny_model_dir), strategy="greedy")
    with pytest.raises(UnsupportedContentError, match="'image'"):
        model.invoke([HumanMessage([{"type": "text", "text": "Describe this image."},
                                    {"type": "image", "base64": "AAAA", "mime_type": "image/png"}])])
