"""The Responses API through llmux with the real `openai` Python SDK.

Usage: python responses_sdk.py BASE_URL MODE
MODE `translated`: the default config routes to a target that only speaks chat (Anthropic);
MODE `native`: to OpenAI accounts with their own Responses API (the mock's).
Prints 'N passed, 0 failed'; exits non-zero at the first failed check.
"""
import base64
import json
import sys

import openai
from openai import OpenAI

base_url, mode = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base_url, api_key="unused", max_retries=0)
passed = 0


def check(cond, what):
    global passed
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    passed += 1


# Plain text and instructions.
r = client.responses.create(model="gpt-4o-mini", input="Say hi", instructions="Be brief.")
check(r.object == "response" and r.status == "completed", f"status {r.status}")
check(r.id.startswith("resp_"), f"id {r.id}")
check(r.output_text.startswith("Hello from mock"), f"output_text {r.output_text!r}")
check(r.instructions == "Be brief.", "instructions echoed")
check(r.usage.input_tokens > 0 and r.usage.output_tokens > 0, "usage")

# Image input.
png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
r = client.responses.create(
    model="gpt-4o-mini",
    input=[{"role": "user", "content": [
        {"type": "input_text", "text": "What is in the picture?"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{png}"},
    ]}],
)
check(r.status == "completed" and r.output_text, "image input answered")

# A function tool round trip.
tools = [{"type": "function", "name": "wx", "description": "Weather",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": False}]
if mode == "native":
    first = client.responses.create(model="gpt-4o-mini", input="Weather in Paris?", tools=tools)
    calls = [o for o in first.output if o.type == "function_call"]
    check(len(calls) == 1 and calls[0].name == "wx", f"a function call: {first.output}")
    follow = client.responses.create(
        model="gpt-4o-mini", previous_response_id=first.id, tools=tools,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "18C"}],
    )
else:
    # Chat-only targets: the call and its output are replayed as the conversation so far.
    follow = client.responses.create(
        model="gpt-4o-mini", tools=tools,
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": "call_1", "name": "wx", "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
        ],
    )
check(follow.status == "completed" and follow.output_text, "answer after the tool output")

# json_schema output format: native targets take it; Anthropic cannot, and says which field.
fmt = {"format": {"type": "json_schema", "name": "city", "schema": {"type": "object"}, "strict": True}}
if mode == "native":
    r = client.responses.create(model="gpt-4o-mini", input="A city", text=fmt)
    check(r.status == "completed", "json_schema accepted")
else:
    try:
        client.responses.create(model="gpt-4o-mini", input="A city", text=fmt)
        check(False, "json_schema must be refused by an Anthropic target")
    except openai.BadRequestError as e:
        check(e.status_code == 400, "400")
        check(e.body.get("param") == "text.format", f"param names text.format: {e.body}")

# Streaming: the full ordered event sequence.
types = []
final = None
with client.responses.stream(model="gpt-4o-mini", input="Count", instructions="Slowly") as s:
    for event in s:
        types.append(event.type)
    final = s.get_final_response()
check(types[:2] == ["response.created", "response.in_progress"], f"opening events {types[:3]}")
expected = ["response.output_item.added", "response.content_part.added", "response.output_text.delta"]
check(types[2:5] == expected, f"item events {types[2:6]}")
check(types[-4:] == ["response.output_text.done", "response.content_part.done",
                     "response.output_item.done", "response.completed"], f"closing events {types[-4:]}")
check(types.count("response.output_text.delta") >= 2, "several deltas")
check(final.output_text.startswith("Hello from mock"), f"final text {final.output_text!r}")
seqs = []
for event in client.responses.create(model="gpt-4o-mini", input="Count", stream=True):
    seqs.append(event.sequence_number)
check(seqs == list(range(len(seqs))), f"sequence numbers 0..n: {seqs}")

# previous_response_id chains, retrieve, input items, delete.
one = client.responses.create(model="gpt-4o-mini", input="My name is Ann.")
two = client.responses.create(model="gpt-4o-mini", input="What is my name?", previous_response_id=one.id)
check(two.previous_response_id == one.id, "previous_response_id echoed")
got = client.responses.retrieve(two.id)
check(got.id == two.id and got.output_text == two.output_text, "retrieve")
items = client.responses.input_items.list(two.id)
texts = [c.text for i in items.data for c in (i.content or []) if getattr(c, "text", None)]
check("What is my name?" in texts, f"input items {texts}")
client.responses.delete(two.id)
try:
    client.responses.retrieve(two.id)
    check(False, "a deleted response must be gone")
except openai.NotFoundError:
    check(True, "deleted")

# Bad input: 400 with param.
for bad, param in [
    ([{"type": "teleport", "x": 1}], "input[0].type"),
    ([{"type": "function_call_output", "output": "x"}], "input[0].call_id"),
]:
    try:
        client.responses.create(model="gpt-4o-mini", input=bad)
        check(False, f"{bad} must be refused")
    except openai.BadRequestError as e:
        check(e.body.get("param") == param, f"param {param}: {e.body}")

print(json.dumps({"last_response": one.id}))
print(f"{passed} passed, 0 failed")
