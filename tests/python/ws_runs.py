"""Agent runs over Sluice's WebSocket protocol 1 from another language: the `websockets`
library, written from docs/protocol.md alone. Starts a run of the agent in $SLUICE_AGENT,
follows its run.* events to run.completed (checking the run's own seqs 1, 2, 3…), then,
on a second connection, replays the run from a seq with run.subscribe and checks the
replay is what was seen live. Prints one line per step; exits non-zero on any failure."""

import asyncio
import json
import os

import websockets

URL = os.environ["SLUICE_WS_URL"]
KEY = os.environ["SLUICE_KEY"]
AGENT = os.environ["SLUICE_AGENT"]


async def hello(ws):
    await ws.send(json.dumps({"type": "connect", "min_protocol": 1, "max_protocol": 1,
                              "auth": {"token": KEY}, "role": "client",
                              "client": {"name": "ws_runs.py", "version": "1"}}))
    h = json.loads(await ws.recv())
    assert h["type"] == "hello", h
    for m in ("agent.run", "run.subscribe", "run.cancel"):
        assert m in h["methods"], h
    return h


async def call(ws, req_id, method, params):
    """Sends a request; returns its answer and the events that came before it."""
    await ws.send(json.dumps({"type": "req", "id": req_id, "method": method, "params": params}))
    early = []
    async for raw in ws:
        f = json.loads(raw)
        if f["type"] == "res" and f["id"] == req_id:
            return f, early
        if f["type"] == "event":
            early.append(f)


async def run_events(ws, early, run_id):
    """The run's events (data), in order, to its own end."""
    out = []

    def take(f):
        if f["event"].startswith("run."):
            out.append((f["event"], f["data"]))
            return f["event"] in ("run.completed", "run.failed") and f["data"]["run_id"] == run_id
        return False

    for f in early:
        if take(f):
            return out
    async for raw in ws:
        f = json.loads(raw)
        if f["type"] == "event" and take(f):
            return out
    raise AssertionError("the socket closed before the run ended")


async def main():
    async with websockets.connect(URL) as ws:
        await hello(ws)
        res, early = await call(ws, "r1", "agent.run", {"agent": AGENT, "input": "What time is it?"})
        assert res["ok"], res
        run_id = res["result"]["run_id"]
        live = await run_events(ws, early, run_id)
        names = [e for e, _ in live]
        assert names[0] == "run.started" and names[-1] == "run.completed", names
        assert "run.tool_call" in names and "run.tool_result" in names, names
        assert [d["seq"] for _, d in live] == list(range(1, len(live) + 1))
        print("completed:", live[-1][1]["output"], "cost", live[-1][1]["usage"]["cost_usd"], flush=True)
        bad, _ = await call(ws, "r2", "agent.run", {"agent": "nobody", "input": "x"})
        assert bad["ok"] is False and bad["error"]["code"] == "agent_not_found", bad
        print("refused unknown agent", flush=True)

    async with websockets.connect(URL) as ws:
        await hello(ws)
        res, early = await call(ws, "s1", "run.subscribe", {"run_id": run_id, "after_seq": 2})
        assert res["ok"] and res["result"]["status"] == "completed", res
        replay = await run_events(ws, early, run_id)
        assert replay == live[2:], (replay, live)
        print("replayed from seq 2", flush=True)


asyncio.run(main())
