"""Drives llmux with the real `portkey-ai` Python SDK, unchanged but for base_url.

The SDK sends its API key in x-portkey-api-key (no Authorization header), its config inline as
snake_case JSON (or a config id) in x-portkey-config, and trace ids in x-portkey-trace-id.
Usage: python portkey_sdk.py BASE_URL GATEWAY_KEY
"""
import sys

from portkey_ai import Portkey

base_url, key = sys.argv[1], sys.argv[2]
passed = 0


def check(cond, what):
    global passed
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    passed += 1


inline = {
    "strategy": {"mode": "fallback"},
    "targets": [
        {"virtual_key": "openai-main", "override_params": {"model": "gpt-4o"}},
        {"virtual_key": "anthropic-main", "override_params": {"model": "claude-3-haiku"}},
    ],
}
client = Portkey(api_key=key, base_url=base_url, config=inline, trace_id="portkey-sdk-trace")
resp = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hi"}])
check(resp.choices[0].message.content, "content")
# The SDK reads the gateway's x-portkey-* response headers and exposes them without the prefix.
headers = {k.lower(): v for k, v in (resp.get_headers() or {}).items()}
check(headers.get("trace-id") == "portkey-sdk-trace", f"trace id echoed: {headers}")
check(headers.get("last-used-option-index") == "config.targets[0]", f"route header: {headers}")
check(headers.get("retry-attempt-count") == "0", f"retry count header: {headers}")

# A stored config id instead of inline JSON.
client = Portkey(api_key=key, base_url=base_url, config="anthropic-only")
resp = client.chat.completions.create(model="x", messages=[{"role": "user", "content": "hi"}], max_tokens=20)
check(resp.choices[0].message.content, "config id routes")

# Streaming through the Portkey SDK.
client = Portkey(api_key=key, base_url=base_url, config=inline)
chunks = list(client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Count"}], stream=True))
check("".join(c.choices[0].delta.content or "" for c in chunks if c.choices), "streamed text")

# A wrong gateway key is refused.
try:
    Portkey(api_key="wrong-key", base_url=base_url, config=inline).chat.completions.create(
        model="x", messages=[{"role": "user", "content": "hi"}]
    )
    check(False, "wrong key must fail")
except Exception as e:  # the SDK raises its own AuthenticationError subclass
    check("401" in str(e) or "invalid API key" in str(e) or getattr(e, "status_code", 0) == 401, f"401: {e!r}")

print(f"{passed} passed, 0 failed")
