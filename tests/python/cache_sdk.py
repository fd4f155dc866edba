"""The response cache through the real `openai` Python SDK: a streamed request that hits is
replayed as a well-formed stream the SDK parses (content, finish_reason, usage), and a streamed
miss is stored once complete, so the same request unstreamed is a hit with the same text.

Usage: python cache_sdk.py BASE_URL   (BASE_URL like http://127.0.0.1:8787/v1)
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


def stream(config, text, **kw):
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": text}],
        stream=True,
        extra_headers={"x-portkey-config": config},
        **kw,
    )
    chunks = list(raw.parse())
    return raw.headers.get("x-portkey-cache-status"), chunks


def text_of(chunks):
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


for config in ["cached", "anthropic"]:
    # Unstreamed miss, then the same request streamed: a replayed hit.
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Replay me"}],
        extra_headers={"x-portkey-config": config},
    )
    full = raw.parse()
    check(raw.headers.get("x-portkey-cache-status") == "MISS", f"{config}: first is a miss")
    status, chunks = stream(config, "Replay me", stream_options={"include_usage": True})
    check(status == "HIT", f"{config}: streamed repeat is a hit, got {status}")
    check(len(chunks) >= 3, f"{config}: several chunks: {len(chunks)}")
    check(text_of(chunks) == full.choices[0].message.content, f"{config}: replayed text equals the answer")
    check(chunks[0].choices[0].delta.role == "assistant", f"{config}: role chunk first")
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    check(finish == [full.choices[0].finish_reason], f"{config}: one finish_reason {finish}")
    check(chunks[-1].choices == [] and chunks[-1].usage is not None, f"{config}: usage chunk last")
    check(chunks[-1].usage.total_tokens == full.usage.total_tokens, f"{config}: usage replayed")
    check(all(c.id == full.id for c in chunks), f"{config}: chunk ids are the answer's")
    # Without include_usage: no usage chunk.
    status, chunks = stream(config, "Replay me")
    check(status == "HIT" and all(c.usage is None for c in chunks), f"{config}: no usage unless asked")

    # A streamed miss is recorded while relayed and stored once complete.
    status, chunks = stream(config, "Record me")
    check(status == "MISS", f"{config}: streamed miss, got {status}")
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Record me"}],
        extra_headers={"x-portkey-config": config},
    )
    again = raw.parse()
    check(raw.headers.get("x-portkey-cache-status") == "HIT", f"{config}: the recorded stream is a hit")
    check(again.choices[0].message.content == text_of(chunks), f"{config}: recorded text")
    check(again.object == "chat.completion", f"{config}: stored as a chat.completion")

print(f"{passed} passed, 0 failed")
