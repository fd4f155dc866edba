"""Drives a Vertex AI target through llmux with the real `openai` Python SDK: one whole and one
streamed chat (with the usage chunk) and one streamed tool call for each model named, Gemini and
Claude alike.

Usage: python vertex_sdk.py BASE_URL MODEL...   (BASE_URL like http://127.0.0.1:8787/v1)
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


ASK = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}]
TOOLS = [{"type": "function", "function": {
    "name": "wx", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}}]

for model in sys.argv[2:]:
    resp = client.chat.completions.create(model=model, messages=ASK)
    check(resp.object == "chat.completion", f"{model}: object {resp.object}")
    check(resp.choices[0].message.content.startswith("Hello from mock"), f"{model}: text {resp.choices[0].message.content!r}")
    check(resp.choices[0].finish_reason == "stop", f"{model}: finish_reason {resp.choices[0].finish_reason}")
    check(resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0, f"{model}: usage {resp.usage}")

    text, finish, usage = "", None, None
    for chunk in client.chat.completions.create(
        model=model, messages=ASK, stream=True, stream_options={"include_usage": True}
    ):
        check(chunk.object == "chat.completion.chunk", f"{model}: chunk object {chunk.object}")
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            text += c.delta.content or ""
            finish = c.finish_reason or finish
    check(text.startswith("Hello from mock"), f"{model}: streamed text {text!r}")
    check(finish == "stop", f"{model}: stream finish_reason {finish}")
    check(usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0, f"{model}: stream usage {usage}")

    # A streamed tool call: id, name and the arguments (whole or in fragments) put together.
    calls, finish = {}, None
    for chunk in client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Weather in Paris?"}], tools=TOOLS,
        tool_choice="required", stream=True,
    ):
        for c in chunk.choices:
            for tc in c.delta.tool_calls or []:
                cur = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                cur["id"] = tc.id or cur["id"]
                cur["name"] += (tc.function.name or "") if tc.function else ""
                cur["arguments"] += (tc.function.arguments or "") if tc.function else ""
            finish = c.finish_reason or finish
    check(finish == "tool_calls", f"{model}: tool stream finish_reason {finish}")
    check(len(calls) == 1 and calls[0]["name"] == "wx" and calls[0]["id"], f"{model}: streamed call {calls}")
    check(isinstance(json.loads(calls[0]["arguments"]), dict), f"{model}: arguments {calls[0]['arguments']!r}")

print(f"{passed} passed, 0 failed")
