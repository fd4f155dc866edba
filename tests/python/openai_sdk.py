"""Drives llmux with the real `openai` Python SDK, unchanged but for base_url.

Usage: python openai_sdk.py BASE_URL   (BASE_URL like http://127.0.0.1:8787/v1)
Exits non-zero with a message on the first failed check; prints 'N passed, 0 failed'.
"""
import sys

import openai
from openai import OpenAI

base_url = sys.argv[1]
client = OpenAI(base_url=base_url, api_key=sys.argv[2] if len(sys.argv) > 2 else "unused", max_retries=0)
passed = 0


def check(cond, what):
    global passed
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    passed += 1


# Plain chat completion, with the route visible through the raw response headers.
raw = client.chat.completions.with_raw_response.create(
    model="gpt-4o-mini",
    messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}],
    extra_headers={"x-portkey-trace-id": "sdk-trace-1"},
)
resp = raw.parse()
check(resp.object == "chat.completion", f"object is chat.completion: {resp.object}")
check(resp.choices[0].message.role == "assistant", "assistant message")
check(isinstance(resp.choices[0].message.content, str) and resp.choices[0].message.content, "content")
check(resp.usage.total_tokens > 0, "usage reported")
check(raw.headers.get("x-portkey-trace-id") == "sdk-trace-1", "trace id echoed")
check(raw.headers.get("x-llmux-virtual-key"), "served-by header present")

# An Anthropic target behind the same OpenAI call shape.
resp = client.chat.completions.create(
    model="claude-3-haiku",
    messages=[{"role": "user", "content": "Say hi"}],
    max_tokens=50,
    extra_headers={"x-portkey-virtual-key": "anthropic-main"},
)
check(resp.choices[0].finish_reason in ("stop", "length"), f"anthropic finish_reason {resp.choices[0].finish_reason}")
check(resp.usage.prompt_tokens > 0, "anthropic usage translated")

# Errors surface as the SDK's typed exceptions.
try:
    client.chat.completions.create(
        model="x", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-portkey-config": "no-such-config"}
    )
    check(False, "unknown config must fail")
except openai.BadRequestError as e:
    check(e.status_code == 400, "400 for unknown config")
    check("no-such-config" in str(e), "error names the config")

mode = sys.argv[3] if len(sys.argv) > 3 else "core"
if mode == "stream":
    chunks = []
    for chunk in client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Count"}], stream=True
    ):
        chunks.append(chunk)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    check(len(chunks) >= 3, f"several chunks: {len(chunks)}")
    check(text, "streamed text")
    check(any(c.choices and c.choices[0].finish_reason for c in chunks), "finish_reason in stream")

    chunks = list(
        client.chat.completions.create(
            model="claude-3-haiku",
            messages=[{"role": "user", "content": "Count"}],
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"x-portkey-virtual-key": "anthropic-main"},
        )
    )
    check(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0, "anthropic stream usage")
    check("".join(c.choices[0].delta.content or "" for c in chunks if c.choices), "anthropic stream text")

    emb = client.embeddings.create(model="text-embedding-3-small", input=["hello", "world"])
    check(len(emb.data) == 2 and len(emb.data[0].embedding) > 0, "embeddings")

print(f"{passed} passed, 0 failed")
