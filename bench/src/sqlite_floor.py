#!/usr/bin/env python3
"""The durable-commit floor: two SQLite transactions per execution with the
ledger's settings (WAL, synchronous=FULL, BEGIN IMMEDIATE), on a file in the
given folder (the same filesystem as the benchmarks' TEND_HOME).

usage: sqlite_floor.py DIR N [PAR]

Each "execution" is one BEGIN IMMEDIATE; INSERT; COMMIT and one
BEGIN IMMEDIATE; UPDATE; COMMIT -- the shape of tend's queued/terminal
writes (tend's `run` really does three: queued, running, terminal). With
PAR > 1, PAR processes share the file and queue on the writer lock, as
parallel `tend run`s do. Prints one key=value line like benchtool spawn.
"""
import os
import sqlite3
import sys
import time
from multiprocessing import Process, Queue


def connect(path):
    c = sqlite3.connect(path, isolation_level=None, timeout=30)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=FULL")
    return c


def worker(path, start, count, q):
    c = connect(path)
    lats = []
    for i in range(start, start + count):
        t = time.perf_counter()
        c.execute("BEGIN IMMEDIATE")
        c.execute(
            "INSERT INTO executions (id, status, created_at, payload) VALUES (?, 'queued', ?, ?)",
            ("e%07d" % i, int(time.time() * 1000), "x" * 400),
        )
        c.execute("COMMIT")
        c.execute("BEGIN IMMEDIATE")
        c.execute(
            "UPDATE executions SET status = 'succeeded', finished_at = ? WHERE id = ?",
            (int(time.time() * 1000), "e%07d" % i),
        )
        c.execute("COMMIT")
        lats.append((time.perf_counter() - t) * 1e6)
    c.close()
    q.put(lats)


def main():
    d, n = sys.argv[1], int(sys.argv[2])
    par = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    path = os.path.join(d, "floor.db")
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass
    c = connect(path)
    c.execute(
        "CREATE TABLE executions (id TEXT PRIMARY KEY, status TEXT NOT NULL, "
        "created_at INTEGER NOT NULL, finished_at INTEGER, payload TEXT) STRICT"
    )
    c.execute("CREATE INDEX executions_live ON executions (status) WHERE status IN ('queued','running')")
    c.close()
    q = Queue()
    per = n // par
    t0 = time.perf_counter()
    procs = [Process(target=worker, args=(path, k * per, per, q)) for k in range(par)]
    for p in procs:
        p.start()
    lats = []
    for _ in procs:
        lats.extend(q.get())
    for p in procs:
        p.join()
    wall = time.perf_counter() - t0
    lats.sort()
    med = lats[len(lats) // 2]
    print(
        "n=%d par=%d wall_s=%.4f rate=%.2f lat_med_us=%.1f lat_min_us=%.1f lat_max_us=%.1f"
        % (len(lats), par, wall, len(lats) / wall, med, lats[0], lats[-1])
    )


if __name__ == "__main__":
    main()
