"""Load test of `tasktune serve`: concurrent OpenAI clients on loopback, bounded in count and time.

Starts ``tasktune serve --run RUN`` on a free loopback port, waits until it answers,
then runs ``--clients`` threads, each with its own official ``openai`` client, that send
``--requests`` chat completions in all (held-out problems of the run's
predictions.jsonl, round robin; every fourth request streamed). Prints errors,
latency p50/p99, requests/s, and exact match of the answers against the references.
Stops early at ``--max-seconds``.

Usage:
    python benchmarks/serve_load.py runs/arith_lora --clients 16 --requests 256
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import openai

from tasktune.eval import matches_value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--max-seconds", type=float, default=600)
    args = parser.parse_args()
    run = Path(args.run)
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    port = _free_port()
    tasktune = str(Path(sys.executable).with_name("tasktune"))
    server = subprocess.Popen([tasktune, "serve", "--run", str(run), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "TQDM_DISABLE": "1"})
    url = f"http://127.0.0.1:{port}/v1"
    try:
        started = time.perf_counter()
        probe = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=5)
        while True:
            try:
                probe.models.list()
                break
            except openai.APIConnectionError:
                if server.poll() is not None or time.perf_counter() - started > 300:
                    print(server.stdout.read() if server.stdout else "", file=sys.stderr)
                    raise SystemExit("the server did not come up")
                time.sleep(0.5)
        print(f"server up after {time.perf_counter() - started:.1f} s", flush=True)
        latencies: list[float] = []
        errors: list[str] = []
        right = [0]
        lock = threading.Lock()
        counter = iter(range(args.requests))
        deadline = time.perf_counter() + args.max_seconds

        def client_loop() -> None:
            client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=300)
            for i in counter:
                if time.perf_counter() > deadline:
                    return
                row = rows[i % len(rows)]
                messages = [{"role": "user", "content": row["prompt"]}]
                t0 = time.perf_counter()
                try:
                    if i % 4 == 3:
                        stream = client.chat.completions.create(model=run.name, messages=messages, stream=True)
                        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
                    else:
                        text = client.chat.completions.create(model=run.name, messages=messages).choices[0].message.content
                except Exception as exc:  # noqa: BLE001 - counted and shown
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    right[0] += matches_value(text, row["reference"])

        t_start = time.perf_counter()
        threads = [threading.Thread(target=client_loop) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t_start
        done = len(latencies)
        q = statistics.quantiles(latencies, n=100) if done > 1 else [float("nan")] * 99
        print(json.dumps({
            "clients": args.clients, "requests": done + len(errors), "ok": done, "errors": len(errors),
            "p50_s": round(q[49], 3), "p99_s": round(q[98], 3), "requests_per_s": round(done / wall, 2),
            "wall_s": round(wall, 1), "exact_match": round(right[0] / max(1, done), 4),
        }))
        for e in errors[:5]:
            print("ERROR", e)
        return 0 if not errors and done >= args.requests else 1
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
