"""Drives a Vertex AI target through llmux with the real `openai` Python SDK: one whole and one
streamed chat (with the usage chunk) for each model named, Gemini and Claude alike.

Usage: python vertex_sdk.py BASE_URL MODEL...   (BASE_URL like http://127.0.0.1:8787/v1)
Exits non-zero with a message on the first failed check; prints 'N passed, 0 failed'.
"""
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

print(f"{passed} passed, 0 failed")
