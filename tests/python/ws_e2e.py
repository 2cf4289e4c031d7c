"""A client of Sluice's WebSocket protocol 1 in another language: the `websockets`
library, written from docs/protocol.md alone. Connects, streams a chat.completions,
drops the connection half-way through a second (slow) one, resumes, and checks that the
events continue with no gap and no duplicate. Prints one line per step; exits non-zero
on any failure."""

import asyncio
import json
import os
import sys

import websockets

URL = os.environ["SLUICE_WS_URL"]
KEY = os.environ["SLUICE_KEY"]


def connect_frame(resume=None):
    frame = {"type": "connect", "min_protocol": 1, "max_protocol": 1,
             "auth": {"token": KEY}, "role": "client",
             "client": {"name": "ws_e2e.py", "version": "1"}}
    if resume:
        frame["resume"] = resume
    return json.dumps(frame)


async def frames(ws):
    async for raw in ws:
        yield json.loads(raw)


async def call(ws, req_id, method, params):
    await ws.send(json.dumps({"type": "req", "id": req_id, "method": method, "params": params}))
    async for f in frames(ws):
        if f["type"] == "res" and f["id"] == req_id:
            return f


def ask(model):
    return {"model": model, "messages": [{"role": "user", "content": "tell me"}]}


async def main():
    async with websockets.connect(URL) as ws:
        await ws.send(connect_frame())
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello" and hello["protocol"] == 1, hello
        assert "chat.completions" in hello["methods"], hello
        session_id = hello["session_id"]
        print("hello", flush=True)

        res = await call(ws, "c1", "chat.completions", ask("m"))
        assert res["ok"], res
        text, seqs = "", []
        async for f in frames(ws):
            if f["type"] != "event":
                continue
            seqs.append(f["seq"])
            if f["event"] == "chat.delta":
                text += f["data"]["chunk"]["choices"][0]["delta"].get("content") or ""
            elif f["event"] == "chat.completed":
                break
            else:
                raise AssertionError(f)
        assert seqs == list(range(1, len(seqs) + 1)), seqs
        assert text, "the streamed answer has text"
        print("streamed:", text, flush=True)

        res = await call(ws, "c2", "chat.completions", ask("slow"))
        assert res["ok"], res
        last = None
        got = 0
        async for f in frames(ws):
            if f["type"] == "event":
                last = f["seq"]
                got += 1
                if got == 2:
                    break
    # The connection is gone half-way through the slow answer; the call runs on.
    await asyncio.sleep(0.5)
    async with websockets.connect(URL) as ws:
        await ws.send(connect_frame({"session_id": session_id, "last_seq": last}))
        hello = json.loads(await ws.recv())
        assert hello["resumed"] is True and "replay_gap" not in hello, hello
        expected = last + 1
        async for f in frames(ws):
            if f["type"] != "event":
                continue
            assert f["seq"] == expected, (f["seq"], expected)
            expected += 1
            if f["event"] == "chat.completed":
                break
        print("resumed without a gap", flush=True)
        res = await call(ws, "bad", "no.such.method", {})
        assert res["ok"] is False and res["error"]["code"] == "unknown_method", res
        pong = await call(ws, "p", "ping", {})
        assert pong["result"]["pong"] is True
        print("errors and ping", flush=True)


asyncio.run(main())
