"""N identical chat requests at once to one alias; prints the x-sluice-cache results and
latencies. Usage: python3 bench/burst.py ALIAS N (gateway at $SLUICE_URL, default
http://127.0.0.1:18090, key sk-bench-key). Standard library only."""
import os
import json, sys, time, urllib.request
from concurrent.futures import ThreadPoolExecutor
model, n = sys.argv[1], int(sys.argv[2])
body = json.dumps({"model": model, "messages": [{"role": "user", "content": "what is the refund policy?"}]}).encode()
def one(_):
    t = time.perf_counter()
    req = urllib.request.Request(os.environ.get("SLUICE_URL", "http://127.0.0.1:18090") + "/v1/chat/completions", data=body,
        headers={"Authorization": "Bearer sk-bench-key", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        r.read(); return r.headers.get("x-sluice-cache"), time.perf_counter() - t
with ThreadPoolExecutor(n) as ex:
    res = list(ex.map(one, range(n)))
lat = sorted(x[1] for x in res)
from collections import Counter
print(model, n, dict(Counter(x[0] for x in res)), "p50 %.0f ms p99 %.0f ms max %.0f ms" % (lat[len(lat)//2]*1000, lat[int(len(lat)*0.99)-1]*1000, lat[-1]*1000))
