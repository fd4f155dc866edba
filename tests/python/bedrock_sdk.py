"""Drives a Bedrock target through llmux with the real `openai` Python SDK.

Usage: python bedrock_sdk.py BASE_URL   (BASE_URL like http://127.0.0.1:8787/v1)
Exits non-zero with a message on the first failed check; prints 'N passed, 0 failed'.
"""
import json
import sys

import openai
from openai import OpenAI

client = OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0)
passed = 0
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}}]


def check(cond, what):
    global passed
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    passed += 1


# Plain chat: the model id comes from the leaf's override_params.
resp = client.chat.completions.create(
    model="ignored", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}]
)
check(resp.object == "chat.completion", f"object {resp.object}")
check(resp.model == "anthropic.claude-3-haiku-20240307-v1:0", f"model {resp.model}")
check(resp.choices[0].message.content, "content")
check(resp.choices[0].finish_reason == "stop", f"finish_reason {resp.choices[0].finish_reason}")
check(resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0, "usage")

# Streamed text with the usage chunk.
chunks = list(client.chat.completions.create(
    model="ignored", messages=[{"role": "user", "content": "Count to five"}],
    stream=True, stream_options={"include_usage": True},
))
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
check(len(chunks) >= 4, f"several chunks: {len(chunks)}")
check(text.startswith("Hello from mock"), f"streamed text {text!r}")
check([c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"], "one stop")
check(chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0, "usage chunk last")

# A streamed tool call, accumulated the way SDK users do.
calls = {}
finish = None
for c in client.chat.completions.create(
    model="ignored", messages=[{"role": "user", "content": "Weather in Paris?"}],
    tools=TOOLS, tool_choice="required", stream=True,
):
    for d in c.choices:
        finish = d.finish_reason or finish
        for tc in d.delta.tool_calls or []:
            cur = calls.setdefault(tc.index, {"id": None, "name": None, "args": ""})
            cur["id"] = tc.id or cur["id"]
            if tc.function and tc.function.name:
                cur["name"] = tc.function.name
            if tc.function and tc.function.arguments:
                cur["args"] += tc.function.arguments
check(finish == "tool_calls", f"stream finish {finish}")
check(len(calls) == 1 and calls[0]["name"] == "get_weather", f"tool call {calls}")
check(calls[0]["id"].startswith("tooluse_"), f"tool call id {calls[0]['id']}")
check(json.loads(calls[0]["args"]) == {"city": "Paris"}, f"arguments {calls[0]['args']!r}")

# The same, not streamed, then the tool result sent back (ids pass through).
resp = client.chat.completions.create(
    model="ignored", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=TOOLS,
    tool_choice={"type": "function", "function": {"name": "get_weather"}},
)
call = resp.choices[0].message.tool_calls[0]
check(resp.choices[0].finish_reason == "tool_calls", "tool_calls finish")
check(json.loads(call.function.arguments) == {"city": "Paris"}, "non-streamed arguments")
resp = client.chat.completions.create(
    model="ignored", tools=TOOLS,
    messages=[
        {"role": "user", "content": "Weather in Paris?"},
        resp.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"},
    ],
)
check(resp.choices[0].message.content, "answer after the tool result")

# An image by URL is refused before anything goes upstream.
try:
    client.chat.completions.create(model="ignored", messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])
    check(False, "http image must fail")
except openai.BadRequestError as e:
    check("data: URL" in str(e), f"image refusal says how: {e}")

print(f"{passed} passed, 0 failed")
