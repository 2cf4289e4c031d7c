"""The official `openai` Python SDK against a running Sluice.

Run by tests/tests/python_sdk.rs with SLUICE_BASE_URL and SLUICE_KEY set. Each check
raises on failure; the last line printed is "ok" with what was checked.
"""

import json
import os

import openai
from openai import OpenAI

client = OpenAI(base_url=os.environ["SLUICE_BASE_URL"], api_key=os.environ["SLUICE_KEY"], max_retries=0)

# A plain call.
resp = client.chat.completions.create(
    model="plain", messages=[{"role": "user", "content": "Say hello"}]
)
assert resp.choices[0].message.content == "Hello from the SDK test", resp
assert resp.usage.completion_tokens > 0, resp.usage
assert resp.choices[0].finish_reason == "stop"

# The same call, with the raw response to see Sluice's headers.
raw = client.chat.completions.with_raw_response.create(
    model="plain", messages=[{"role": "user", "content": "Say hello"}]
)
assert raw.headers["x-sluice-provider"] == "oa", dict(raw.headers)
assert raw.headers.get("x-request-id"), dict(raw.headers)

# A streamed call, with usage asked for.
text = []
usage = None
finish = None
stream = client.chat.completions.create(
    model="plain",
    messages=[{"role": "user", "content": "Say hello"}],
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.usage:
        usage = chunk.usage
    for choice in chunk.choices:
        if choice.delta.content:
            text.append(choice.delta.content)
        if choice.finish_reason:
            finish = choice.finish_reason
assert "".join(text) == "Hello from the SDK test", text
assert finish == "stop"
assert usage is not None and usage.prompt_tokens > 0, usage

tools = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]

# A tool call, answered by an Anthropic-format provider behind the alias.
resp = client.chat.completions.create(
    model="tools", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=tools
)
call = resp.choices[0].message.tool_calls[0]
assert call.function.name == "get_weather", call
assert json.loads(call.function.arguments) == {"city": "Paris"}, call
assert resp.choices[0].finish_reason == "tool_calls"

# The tool result goes back, and the model answers.
follow = client.chat.completions.create(
    model="tools",
    tools=tools,
    messages=[
        {"role": "user", "content": "Weather in Paris?"},
        resp.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 18}'},
    ],
)
assert follow.choices[0].message.content, follow

# A streamed tool call, pieced together the way SDK users do.
args = ""
name = None
stream = client.chat.completions.create(
    model="tools", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=tools, stream=True
)
for chunk in stream:
    for choice in chunk.choices:
        for tc in choice.delta.tool_calls or []:
            if tc.function and tc.function.name:
                name = tc.function.name
            if tc.function and tc.function.arguments:
                args += tc.function.arguments
assert name == "get_weather" and json.loads(args) == {"city": "Paris"}, (name, args)

# Errors surface as the SDK's typed exceptions with Sluice's codes.
try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("unknown model accepted")
except openai.NotFoundError as e:
    assert e.code == "model_not_found", e

try:
    OpenAI(base_url=os.environ["SLUICE_BASE_URL"], api_key="wrong-key", max_retries=0).models.list()
    raise AssertionError("wrong key accepted")
except openai.AuthenticationError as e:
    assert e.code == "invalid_api_key", e

# A stream that breaks mid-answer raises instead of ending quietly.
try:
    for _ in client.chat.completions.create(
        model="broken", messages=[{"role": "user", "content": "x"}], stream=True
    ):
        pass
    raise AssertionError("a cut stream ended like a finished one")
except openai.APIError as e:
    assert "stream" in str(e).lower(), e

models = [m.id for m in client.models.list()]
assert models == ["broken", "plain", "tools"], models

print("ok: plain, raw headers, stream+usage, tool call, tool result, streamed tool call, errors, cut stream, models")
