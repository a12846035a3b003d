"""Load and fault test of `tasktune serve`: concurrent OpenAI clients on loopback, some
leaving mid-request, then bursts past the queue limit; bounded in count and time.

Starts ``tasktune serve --run RUN --max-queue Q`` on a free loopback port, waits until it
answers, then:

1. **load**: ``--clients`` threads, each with its own official ``openai`` client. A
   tenth of them (``--leaving``) go away mid-request, again and again until the others
   are done: streamed, after the first piece; not streamed, by a client timeout of
   0.3-1.5 s; each then pauses as long. The others send ``--requests`` chat completions
   in all (the run's held-out problems from its predictions.jsonl, round robin; every
   other request streamed, with usage).
2. **bursts**: ``--bursts`` times, ``--burst`` requests at once (past the queue limit);
   each must be answered 200 or 429 with Retry-After. The server's threads and memory
   (/proc) are read before the first burst and after each, once it is idle again.

Every completed answer is checked against the run's own answer to the same problem
(predictions.jsonl, written by `tasktune eval`): a server that mixes up rows, cuts or
pads an answer, or changes a greedy answer by batching it differently counts it wrong.
Also checked by value against the reference (exact match). Prints one JSON object with
every figure; exit status 1 if any check failed.

Usage:
    python benchmarks/serve_load.py runs/arith_lora --clients 32 --requests 512
    PYTHONPATH=/path/to/other/checkout/src python benchmarks/serve_load.py ...  # another version
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
import urllib.error
import urllib.request
from pathlib import Path

import openai

from tasktune.eval import matches_value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proc(pid: int) -> dict:
    """The server's threads and resident memory (MiB), from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"threads": int(fields["Threads"]), "rss_mib": round(int(fields["VmRSS"].split()[0]) / 1024, 1)}


def _start(run: Path, port: int, max_queue: int) -> subprocess.Popen:
    tasktune = str(Path(sys.executable).with_name("tasktune"))
    return subprocess.Popen([tasktune, "serve", "--run", str(run), "--port", str(port), "--max-queue", str(max_queue)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "TQDM_DISABLE": "1"})


def _wait_up(server: subprocess.Popen, url: str) -> float:
    started = time.perf_counter()
    probe = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=5)
    while True:
        try:
            probe.models.list()
            return time.perf_counter() - started
        except openai.APIConnectionError:
            if server.poll() is not None or time.perf_counter() - started > 300:
                raise SystemExit("the server did not come up") from None
            time.sleep(0.5)


class Tally:
    """What the clients saw, under one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.tokens = 0
        self.wrong: list[str] = []
        self.right_value = 0
        self.left = 0
        self.statuses: dict[str, int] = {}
        self.errors: list[str] = []

    def status(self, key: str, error: str | None = None) -> None:
        with self.lock:
            self.statuses[key] = self.statuses.get(key, 0) + 1
            if error is not None:
                self.errors.append(error)

    def answer(self, row: dict, text: str, tokens: int, seconds: float) -> None:
        with self.lock:
            self.latencies.append(seconds)
            self.tokens += tokens
            self.right_value += matches_value(text, row["reference"])
            if text != row["prediction"]:
                self.wrong.append(f"{row['prompt']!r}: served {text!r}, the run answered {row['prediction']!r}")
        self.status("200")


def _ask(client: openai.OpenAI, model: str, row: dict, stream: bool, leave: bool, tally: Tally) -> None:
    messages = [{"role": "user", "content": row["prompt"]}]
    t0 = time.perf_counter()
    try:
        if stream:
            chunks = client.chat.completions.create(model=model, messages=messages, stream=True,
                                                    stream_options={"include_usage": True})
            text, tokens = "", 0
            for chunk in chunks:
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
                if chunk.usage:
                    tokens = chunk.usage.completion_tokens
                if leave and text:  # gone after the first piece
                    chunks.close()
                    with tally.lock:
                        tally.left += 1
                    return
            tally.answer(row, text, tokens, time.perf_counter() - t0)
        else:
            out = client.chat.completions.create(model=model, messages=messages)
            tally.answer(row, out.choices[0].message.content, out.usage.completion_tokens, time.perf_counter() - t0)
    except openai.APITimeoutError:
        if not leave:
            tally.status("timeout", f"timeout after {time.perf_counter() - t0:.1f} s")
        else:
            with tally.lock:
                tally.left += 1
    except openai.APIStatusError as exc:
        tally.status(str(exc.status_code), f"{exc.status_code}: {exc.message}")
    except Exception as exc:  # noqa: BLE001 - counted and shown
        tally.status(type(exc).__name__, f"{type(exc).__name__}: {exc}")


def _load(url: str, model: str, rows: list[dict], args) -> dict:
    tally = Tally()
    counter = iter(range(args.requests))
    deadline = time.perf_counter() + args.max_seconds
    leaving = max(1, round(args.clients * args.leaving)) if args.leaving > 0 else 0
    finished = threading.Event()  # the staying clients have sent every request

    def client_loop(index: int) -> None:
        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=300)
        for i in counter:
            if time.perf_counter() > deadline:
                return
            _ask(client, model, rows[i % len(rows)], stream=i % 2 == 1, leave=False, tally=tally)

    def leaving_loop(index: int) -> None:
        """Goes away mid-request, again and again, at a client's pace: a streamed request
        after its first piece, a whole one after 0.3-1.5 s (answers take longer under
        load), then a pause as long before the next."""
        import random

        rng = random.Random(index)
        i = index
        while not finished.is_set() and time.perf_counter() < deadline:
            wait = rng.uniform(0.3, 1.5)
            client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=wait)
            _ask(client, model, rows[i % len(rows)], stream=i % 2 == 1, leave=True, tally=tally)
            i += 7
            finished.wait(wait)

    started = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(args.clients - leaving)]
    gone = [threading.Thread(target=leaving_loop, args=(k,)) for k in range(leaving)]
    for t in threads + gone:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    finished.set()
    for t in gone:
        t.join()
    done = len(tally.latencies)
    q = statistics.quantiles(tally.latencies, n=100) if done > 1 else [float("nan")] * 99
    return {"clients": args.clients, "leaving_clients": leaving, "requests": args.requests, "completed": done,
            "left_mid_request": tally.left, "statuses": tally.statuses, "wrong": len(tally.wrong),
            "exact_match": round(tally.right_value / max(1, done), 4), "p50_s": round(q[49], 3),
            "p99_s": round(q[98], 3), "requests_per_s": round(done / wall, 2),
            "completion_tokens_per_s": round(tally.tokens / wall, 1), "wall_s": round(wall, 1),
            "examples_wrong": tally.wrong[:5], "examples_errors": tally.errors[:5]}


def _burst(url: str, model: str, rows: list[dict], size: int) -> dict:
    """``size`` requests at once, each on its own connection: 200 (right) or 429 (with Retry-After)."""
    counts: dict[str, int] = {}
    wrong: list[str] = []
    lock = threading.Lock()
    gate = threading.Barrier(size)

    def one(k: int) -> None:
        row = rows[k % len(rows)]
        body = {"model": model, "messages": [{"role": "user", "content": row["prompt"]}]}
        request = urllib.request.Request(url + "/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"})
        gate.wait()
        try:
            with urllib.request.urlopen(request, timeout=300) as r:
                key = str(r.status)
                if json.loads(r.read())["choices"][0]["message"]["content"] != row["prediction"]:
                    with lock:
                        wrong.append(row["prompt"])
        except urllib.error.HTTPError as e:
            key = str(e.code)
            if e.code == 429 and "retry-after" not in {k.lower() for k in e.headers}:
                key = "429 without Retry-After"
        except Exception as exc:  # noqa: BLE001 - counted
            key = type(exc).__name__
        with lock:
            counts[key] = counts.get(key, 0) + 1

    threads = [threading.Thread(target=one, args=(k,)) for k in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"size": size, "statuses": counts, "wrong": len(wrong)}


def _idle(pid: int, settle: float) -> dict:
    time.sleep(settle)  # keep-alive connections time out, worker threads go back to the pool
    return _proc(pid)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=512)
    parser.add_argument("--leaving", type=float, default=0.1, help="share of clients that go away mid-request")
    parser.add_argument("--max-queue", type=int, default=64)
    parser.add_argument("--burst", type=int, default=0, help="requests per burst (default: 2 x max-queue + clients)")
    parser.add_argument("--bursts", type=int, default=2)
    parser.add_argument("--settle", type=float, default=15.0, help="seconds idle before reading threads and memory")
    parser.add_argument("--max-seconds", type=float, default=900)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    run = Path(args.run)
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    port = _free_port()
    server = _start(run, port, args.max_queue)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        up = _wait_up(server, url)
        model = run.name
        result = {"run": str(run), "max_queue": args.max_queue, "server_up_s": round(up, 1)}
        result["load"] = _load(url, model, rows, args)
        result["idle_before_bursts"] = _idle(server.pid, args.settle)
        result["bursts"] = []
        for _ in range(args.bursts):
            burst = _burst(url, model, rows, args.burst or 2 * args.max_queue + args.clients)
            burst["idle_after"] = _idle(server.pid, args.settle)
            result["bursts"].append(burst)
        result["server_alive"] = server.poll() is None
    finally:
        server.terminate()
        server.wait(timeout=60)
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    load = result["load"]
    bad_load = {k: v for k, v in load["statuses"].items() if k != "200"}
    bad_burst = [b for b in result["bursts"] if set(b["statuses"]) - {"200", "429"} or b["wrong"]]
    return 1 if load["wrong"] or bad_load or bad_burst or not result["server_alive"] else 0


if __name__ == "__main__":
    sys.exit(main())
