"""A client of Sluice's HTTP runs API in another language, with `httpx` alone and an SSE
parser written from docs/api.md: starts a streamed run, prints its event names (repeated
deltas as one), checks that each event's id is its seq, then resumes the run's events
with `Last-Event-ID` and reads the run. Exits non-zero on any failure."""

import json
import os
import sys
import time

try:
    import httpx
except ImportError:  # openai 3.x ships httpx as `httpx2`
    import httpx2 as httpx

BASE = os.environ["SLUICE_BASE_URL"]
KEY = os.environ["SLUICE_KEY"]


def sse(response):
    """Yields (id, event, data) for each event; comments (`: ping`) are skipped."""
    fields = {}
    for line in response.iter_lines():
        if line == "":
            if "data" in fields:
                yield int(fields["id"]), fields.get("event", "message"), json.loads(fields["data"])
            fields = {}
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value


def names(events):
    out = []
    for _, name, _ in events:
        if not out or out[-1] != name:
            out.append(name)
    return " ".join(out)


def fail(why):
    print(why, file=sys.stderr)
    sys.exit(1)


with httpx.Client(base_url=BASE, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as client:
    body = {"agent": "clock", "input": "What time is it?", "stream": True}
    with client.stream("POST", "/runs", json=body) as r:
        if r.status_code != 200 or not r.headers["content-type"].startswith("text/event-stream"):
            fail(f"POST /runs: {r.status_code} {r.headers}")
        run_id = r.headers["x-sluice-run-id"]
        events = list(sse(r))
    print("events:", names(events))
    for i, (seq, _, data) in enumerate(events, start=1):
        if seq != i or data["seq"] != seq or data["run_id"] != run_id:
            fail(f"event {i}: id {seq}, data {data}")
    print("ids: in order")
    print("output:", events[-1][2]["output"])

    headers = {"Last-Event-ID": "2"}
    with client.stream("GET", f"/runs/{run_id}/events", headers=headers) as r:
        resumed = list(sse(r))
    if resumed != events[2:]:
        fail(f"resumed {resumed} != {events[2:]}")
    print("resumed after 2:", names(resumed))

    run = client.get(f"/runs/{run_id}").json()
    while run["status"] in ("queued", "running"):
        time.sleep(0.05)
        run = client.get(f"/runs/{run_id}").json()
    print("status:", run["status"])
