#!/usr/bin/env python3
"""daemon_client.py: the HTTP side of bench/run's daemon scenarios.

Standard library only (http.client, threads). Every connection is kept
alive and has TCP_NODELAY set, so what is measured is the daemon, not the
client's connection setup.

The token is read from the environment (BENCH_DAEMON_TOKEN), not argv, so
it never shows in a process list.

    daemon_client.py launch HOST:PORT N P
        POST /api/v1/executions {"command": ["true"]} N times from P threads
        (one kept-alive connection each), then GET /api/v1/executions/{id}/wait
        for every id (each thread waits for its own launches, in order).
        Prints one line of key=value: n, par, launch_s, rate (launches/s),
        lat_med_us, lat_min_us, lat_max_us, lat_p90_us, done_s (first launch
        to last wait returned), done_rate, failures (non-2xx launches or
        waits), ok (executions that ended succeeded).

    daemon_client.py wake HOST:PORT DIR ROUNDS
        Opens one SSE stream (GET /api/v1/events) and, per round, launches
        through the API `sh -c 'sleep 0.3; exec date +%s%N > DIR/wake-R'`,
        then waits on the stream for that id's terminal transition and
        records when it arrived (CLOCK_REALTIME, like `date +%s%N`). Prints
        per round: `round R id ID status S exit_ns X recv_ns Y ms Z`.

    daemon_client.py one HOST:PORT ARGV...
        Launches one execution with the given command and prints its id.
"""

import http.client
import json
import os
import socket
import sys
import threading
import time

TERMINAL = {"succeeded", "failed", "timed_out", "killed", "lost", "cancelled"}


def connect(addr):
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=600)
    c.connect()
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


def call(conn, method, path, token, body=None):
    headers = {"Authorization": "Bearer " + token}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    r = conn.getresponse()
    payload = r.read()
    return r.status, payload


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    k = (len(sorted_vals) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def launch(addr, token, n, par):
    lats = []
    ids = [[] for _ in range(par)]
    fails = [0]
    ok = [0]
    lock = threading.Lock()
    conns = [connect(addr) for _ in range(par)]
    counter = [0]
    launched = [None] * par
    done = [None] * par

    def work(i):
        c = conns[i]
        mine = []
        while True:
            with lock:
                if counter[0] >= n:
                    break
                counter[0] += 1
            t0 = time.perf_counter_ns()
            try:
                st, body = call(c, "POST", "/api/v1/executions", token, {"command": ["true"]})
            except Exception:  # noqa: BLE001 - counted, the run goes on
                st, body = 0, b""
            t1 = time.perf_counter_ns()
            with lock:
                lats.append((t1 - t0) / 1000)
            if st in (200, 201):
                mine.append(json.loads(body)["id"])
            else:
                with lock:
                    fails[0] += 1
        launched[i] = time.perf_counter_ns()
        for id_ in mine:
            try:
                st, body = call(c, "GET", "/api/v1/executions/%s/wait?timeout=5m" % id_, token)
            except Exception:  # noqa: BLE001
                st, body = 0, b""
            with lock:
                if st == 200 and json.loads(body).get("status") == "succeeded":
                    ok[0] += 1
                elif st != 200:
                    fails[0] += 1
        done[i] = time.perf_counter_ns()
        ids[i] = mine

    start = time.perf_counter_ns()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(par)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    launch_s = (max(launched) - start) / 1e9
    done_s = (max(done) - start) / 1e9
    lats.sort()
    print(
        "n=%d par=%d launch_s=%.4f rate=%.2f lat_med_us=%.0f lat_min_us=%.0f lat_max_us=%.0f "
        "lat_p90_us=%.0f done_s=%.4f done_rate=%.2f failures=%d ok=%d"
        % (n, par, launch_s, n / launch_s, pct(lats, 0.5), lats[0], lats[-1], pct(lats, 0.9),
           done_s, n / done_s, fails[0], ok[0])
    )


def sse_open(addr, token):
    c = connect(addr)
    c.request("GET", "/api/v1/events", headers={"Authorization": "Bearer " + token,
                                                "Accept": "text/event-stream"})
    r = c.getresponse()
    if r.status != 200:
        raise SystemExit("GET /api/v1/events: HTTP %d" % r.status)
    return c, r


def wake(addr, token, folder, rounds):
    sse_c, stream = sse_open(addr, token)
    events = []  # (recv_ns, id, status)
    cond = threading.Condition()

    def reader():
        event = None
        while True:
            try:
                line = stream.readline()
            except Exception:  # noqa: BLE001 - the stream was closed under us
                return
            if not line:
                return
            now = time.time_ns()
            line = line.decode().rstrip("\r\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "transition":
                try:
                    d = json.loads(line[5:].strip())
                except ValueError:
                    continue
                with cond:
                    events.append((now, d.get("id"), d.get("status")))
                    cond.notify_all()
            elif line == "":
                event = None

    threading.Thread(target=reader, daemon=True).start()
    api = connect(addr)
    for r in range(1, rounds + 1):
        f = "%s/wake-%d" % (folder, r)
        cmd = ["sh", "-c", "sleep 0.3; exec date +%%s%%N > %s" % f]
        st, body = call(api, "POST", "/api/v1/executions", token, {"command": cmd})
        if st not in (200, 201):
            print("round %d launch failed: HTTP %d %s" % (r, st, body[:200]))
            continue
        id_ = json.loads(body)["id"]
        hit = None
        deadline = time.monotonic() + 30
        with cond:
            while hit is None and time.monotonic() < deadline:
                for ev in events:
                    if ev[1] == id_ and ev[2] in TERMINAL:
                        hit = ev
                        break
                if hit is None:
                    cond.wait(timeout=1)
        if hit is None:
            print("round %d id %s: no terminal transition on the stream within 30 s" % (r, id_))
            continue
        try:
            with open(f) as fh:
                x = int(fh.read().strip())
        except (OSError, ValueError):
            print("round %d id %s: no timestamp in %s" % (r, id_, f))
            continue
        print("round %d id %s status %s exit_ns %d recv_ns %d ms %.3f"
              % (r, id_, hit[2], x, hit[0], (hit[0] - x) / 1e6))
        sys.stdout.flush()
        time.sleep(0.05)
    sse_c.close()


def one(addr, token, argv):
    c = connect(addr)
    st, body = call(c, "POST", "/api/v1/executions", token, {"command": argv})
    if st not in (200, 201):
        raise SystemExit("launch failed: HTTP %d %s" % (st, body[:200]))
    print(json.loads(body)["id"])


def main():
    a = sys.argv[1:]
    token = os.environ.get("BENCH_DAEMON_TOKEN", "")
    if len(a) == 4 and a[0] == "launch":
        launch(a[1], token, int(a[2]), int(a[3]))
    elif len(a) == 4 and a[0] == "wake":
        wake(a[1], token, a[2], int(a[3]))
    elif len(a) >= 3 and a[0] == "one":
        one(a[1], token, a[2:])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
