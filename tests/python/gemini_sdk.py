"""Drives a Gemini target through llmux with the real `openai` Python SDK: streamed text,
streamed and whole tool calls (with the thought signature carried in the call id), the tool
round trip, and embeddings.

Usage: python gemini_sdk.py BASE_URL   (BASE_URL like http://127.0.0.1:8787/v1)
Exits non-zero with a message on the first failed check; prints 'N passed, 0 failed'.
"""
import json
import sys

from openai import OpenAI

client = OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0)
passed = 0


def check(cond, what):
    global passed
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    passed += 1


TOOLS = [{"type": "function", "function": {
    "name": "wx", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}}]
ASK = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"}]

# Streamed text, with the usage chunk the client asked for.
text, finish, usage = "", None, None
for chunk in client.chat.completions.create(
    model="gpt-4o", messages=ASK, stream=True, stream_options={"include_usage": True}
):
    check(chunk.object == "chat.completion.chunk", f"chunk object {chunk.object}")
    if chunk.usage is not None:
        usage = chunk.usage
    for c in chunk.choices:
        text += c.delta.content or ""
        finish = c.finish_reason or finish
check(text.startswith("Hello from mock"), f"streamed text {text!r}")
check(finish == "stop", f"stream finish_reason {finish}")
check(usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0, f"usage {usage}")

# A streamed tool call: one whole delta with id, name and arguments.
calls, finish = {}, None
for chunk in client.chat.completions.create(
    model="gpt-4o", messages=ASK, tools=TOOLS, tool_choice="required", stream=True
):
    for c in chunk.choices:
        for tc in c.delta.tool_calls or []:
            cur = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
            cur["id"] = tc.id or cur["id"]
            cur["name"] += (tc.function.name or "") if tc.function else ""
            cur["arguments"] += (tc.function.arguments or "") if tc.function else ""
        finish = c.finish_reason or finish
check(finish == "tool_calls", f"tool stream finish_reason {finish}")
check(len(calls) == 1 and calls[0]["name"] == "wx", f"streamed call {calls}")
check(json.loads(calls[0]["arguments"]) == {"city": "Paris"}, f"arguments {calls[0]['arguments']}")
check("__ts__" in calls[0]["id"], f"the thought signature rides in the id: {calls[0]['id']}")

# The round trip: the call replayed (Gemini 3 checks its signature) and answered.
resp = client.chat.completions.create(
    model="gpt-4o",
    messages=ASK + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": calls[0]["id"], "type": "function", "function": {"name": "wx", "arguments": calls[0]["arguments"]}}]},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "18C and sunny"},
    ],
    tools=TOOLS,
)
check(resp.choices[0].finish_reason == "stop", f"round trip finish_reason {resp.choices[0].finish_reason}")
check(resp.choices[0].message.content, "round trip answer")

# A whole (non-streamed) named tool call.
resp = client.chat.completions.create(
    model="gpt-4o", messages=ASK, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "wx"}}
)
msg = resp.choices[0].message
check(resp.choices[0].finish_reason == "tool_calls", "named tool call finish_reason")
check(msg.tool_calls and msg.tool_calls[0].function.name == "wx", f"named tool call {msg}")
check(resp.usage.completion_tokens > 0, "tool call usage")

# Embeddings (the SDK asks for base64 by default and accepts floats).
emb = client.embeddings.create(model="gemini-embedding-001", input=["a", "b"])
check(len(emb.data) == 2 and len(emb.data[1].embedding) > 0, "two embeddings")
check(isinstance(emb.data[0].embedding[0], float), "float embeddings")

print(f"{passed} passed, 0 failed")
