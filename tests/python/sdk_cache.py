"""The official openai SDK against the response cache: a miss, then a hit read through
with_raw_response (the x-sluice-cache header), a hit replayed as a stream the SDK parses,
and a bypass through extra_headers. Prints one line per step; the Rust test checks them."""
import os

from openai import OpenAI

client = OpenAI(base_url=os.environ["SLUICE_BASE_URL"], api_key=os.environ["SLUICE_KEY"])
messages = [{"role": "user", "content": "What is the capital of France?"}]

raw = client.chat.completions.with_raw_response.create(model="m", messages=messages)
first = raw.parse()
print("first", raw.headers.get("x-sluice-cache"), first.choices[0].message.content)

raw = client.chat.completions.with_raw_response.create(model="m", messages=messages)
second = raw.parse()
assert second.choices[0].message.content == first.choices[0].message.content
assert second.id != first.id
assert second.usage.completion_tokens == first.usage.completion_tokens
print("second", raw.headers.get("x-sluice-cache"))

with client.chat.completions.with_streaming_response.create(
    model="m", messages=messages, stream=True, stream_options={"include_usage": True}
) as resp:
    cache = resp.headers.get("x-sluice-cache")
    text, finish, usage, pieces = "", None, None, 0
    for chunk in resp.parse():
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.content:
                text += c.delta.content
                pieces += 1
            if c.finish_reason:
                finish = c.finish_reason
assert text == first.choices[0].message.content, text
assert finish == "stop" and usage is not None and pieces >= 1
print("stream", cache, finish)

raw = client.chat.completions.with_raw_response.create(
    model="m", messages=messages, extra_headers={"Cache-Control": "no-cache"}
)
print("bypass", raw.headers.get("x-sluice-cache"), raw.parse().choices[0].message.content)
