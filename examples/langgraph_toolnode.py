"""A hand-built LangGraph workflow: `ToolPRMNode` as the model step, `ToolNode` running the tools.

    python examples/langgraph_toolnode.py

The node drops into the usual `tools_condition` loop. With `stream_mode=["custom", "updates"]` the
search reports each round (candidates scored, kept, pruned) while it runs.
"""

from __future__ import annotations

from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from langchain_toolprm import ToolPRMNode

STOCK = {"apples": 42, "pears": 7, "plums": 0}


@tool
def check_stock(item: str) -> str:
    """How many units of a fruit are in stock."""
    count = STOCK.get(item.strip().lower().rstrip("s") + "s")
    return f"{count} {item} in stock" if count is not None else f"we do not sell {item}"


tools = [check_stock]
graph = StateGraph(MessagesState)
graph.add_node("agent", ToolPRMNode("qwen2.5-coder-0.5b-instruct", tools, prm="rules", num_beams=2, beam_width=4,
                                    max_tool_turns=1, max_tokens=64,
                                    system_prompt="You answer questions about the shop's stock, using the tools."))
graph.add_node("tools", ToolNode(tools))
graph.add_edge(START, "agent")
graph.add_conditional_edges("agent", tools_condition)
graph.add_edge("tools", "agent")
app = graph.compile()

question = {"messages": [("user", "How many apples do we have in stock?")]}
for mode, part in app.stream(question, stream_mode=["custom", "updates"]):
    if mode == "custom" and part["toolprm"] == "step":
        best = max((c for c in part["candidates"] if c["score"] is not None), key=lambda c: c["score"], default=None)
        lead = f"; best {best['tag']} {best['text']!r} (prm {best['score']:.2f})" if best else ""
        print(f"  [search round {part['round']}] {part['kept']} kept, {part['pruned']} pruned{lead}")
    elif mode == "updates":
        for node, update in part.items():
            for message in update["messages"]:
                print(f"{node}: {message.tool_calls or message.content}")
