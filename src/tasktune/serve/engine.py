"""The models a server answers with, and the one worker that runs them.

Requests wait in one bounded queue; the worker takes the oldest and, when it is greedy
and not streamed, batches every queued greedy request for the same model into one
left-padded ``generate``. Sampled requests run alone, so that a request's seed gives the
same answer whatever else is queued. A request that fails is answered with its error
alone: the rest of its batch is retried one by one. A full queue refuses new requests
(:class:`Busy`); a request that waited past its deadline is answered :class:`Expired`
and one whose client has gone (``cancelled``) is dropped, both without generating.
Several names may share one PEFT model with named adapters (switched per batch; the
base answers with the adapters disabled).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from tasktune.config import GenerateConfig
from tasktune.data.example import Example
from tasktune.encoding import ChatEncoder
from tasktune.generate import Completion, generate_completions, stream_generate

__all__ = ["Served", "Job", "Engine", "Busy", "Expired"]


class Busy(RuntimeError):
    """The queue is full: the request was not taken (answer 429, retry later)."""


class Expired(TimeoutError):
    """The request waited in the queue past its deadline and was not run."""


@dataclass
class Served:
    """One model name a client can ask for."""

    name: str
    model: object
    tokenizer: object
    encoder: ChatEncoder
    adapter: str | None
    """PEFT adapter to activate; None: the model as loaded (for a shared LoRA base: adapters disabled)."""
    shared: bool
    """The model object holds several named adapters."""
    default_tokens: int
    """``max_tokens`` when a request gives none: the run's own generation budget."""
    present: Callable[[str], str] = lambda text: text
    """A finished answer as people should see it (e.g. reversed digits restored)."""
    live: bool = True
    """Stream answers piece by piece; False (answers learned reversed or digit-spaced):
    a stream gets the presented answer whole, once it is complete."""

    @property
    def context(self) -> int:
        """Longest prompt plus answer, in tokens."""
        return int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)

    def prompt_ids(self, example: Example) -> list[int]:
        return self.encoder.prompt_ids(example)


@dataclass
class Job:
    """One request in the queue; the worker fills ``result`` / ``error`` (non-streamed)
    or puts text pieces, then a final ``Completion`` or exception, on ``pieces``."""

    served: Served
    ids: list[int]
    max_tokens: int
    sampling: GenerateConfig
    stream: bool
    done: threading.Event = field(default_factory=threading.Event)
    result: Completion | None = None
    error: BaseException | None = None
    pieces: queue.Queue = field(default_factory=queue.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    queued_at: float = field(default_factory=time.perf_counter)

    def wait(self) -> Completion:
        self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class Engine:
    """Owns the models; one thread generates, so requests never interleave on a model."""

    def __init__(self, served: list[Served], max_batch: int = 16, max_queue: int = 64, deadline: float | None = 120.0):
        """
        Args:
            served: The model names clients can ask for.
            max_batch: Most requests in one ``generate`` call.
            max_queue: Most requests waiting to start; more are refused with :class:`Busy`.
            deadline: Seconds a request may wait to start; None: no limit.
        """
        self.models = {s.name: s for s in served}
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.deadline = deadline
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._held: list[Job] = []  # taken from the queue but not yet run
        self._submitting = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="tasktune-generate", daemon=True)
        self._thread.start()

    def waiting(self) -> int:
        """Requests queued and not yet started."""
        return self._queue.qsize() + len(self._held)

    def submit(self, *jobs: Job) -> Job:
        """Queue ``jobs`` (all or none); returns the first.

        Raises:
            Busy: fewer than ``len(jobs)`` places are left in the queue.
            Expired: the engine is closing.
        """
        with self._submitting:
            if self._closed:
                raise Expired("the server is shutting down")
            if self.waiting() + len(jobs) > self.max_queue:
                raise Busy(f"{self.waiting()} requests are waiting (the limit is {self.max_queue})")
            for job in jobs:
                self._queue.put(job)
        return jobs[0]

    def close(self) -> None:
        """Take no more jobs; the worker finishes those already queued, then stops."""
        with self._submitting:
            self._closed = True
            self._queue.put(None)
        self._thread.join(timeout=30)

    # The worker -----------------------------------------------------------------

    def _next(self) -> Job | None:
        """The oldest job still worth running: a cancelled one is dropped, one past its
        deadline answered :class:`Expired`."""
        while True:
            job = self._held.pop(0) if self._held else self._queue.get()
            if job is None or self._runnable(job):
                return job

    def _runnable(self, job: Job) -> bool:
        """True, or False once ``job`` is answered :class:`Expired` (client gone, or waited too long)."""
        waited = time.perf_counter() - job.queued_at
        if job.cancelled.is_set():
            job.error = Expired("the client went away before the request started")
        elif self.deadline is not None and waited > self.deadline:
            job.error = Expired(f"the request waited {waited:.0f} s to start (the limit is {self.deadline:.0f} s)")
        else:
            return True
        job.done.set()
        job.pieces.put(job.error)
        return False

    def _batch_for(self, first: Job) -> list[Job]:
        """``first`` and every queued job that can share its generate call."""
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)
                break
            self._held.append(job)
        batch, rest = [first], []
        if first.sampling.do_sample:  # one generator per call: a sampled request runs alone
            return batch
        for job in self._held:
            same = not job.stream and job.served is first.served and job.sampling == first.sampling
            if same and len(batch) < self.max_batch and self._runnable(job):
                batch.append(job)
            elif not job.done.is_set():
                rest.append(job)
        self._held = rest
        return batch

    def _work(self) -> None:
        while (job := self._next()) is not None:
            if job.stream:
                self._stream(job)
                continue
            batch = self._batch_for(job)
            try:
                self._generate(batch)
            except Exception:  # noqa: BLE001 - answer each job with its own outcome
                for one in batch:
                    if one.done.is_set():  # answered before the failure
                        continue
                    try:
                        self._generate([one])
                    except Exception as exc:  # noqa: BLE001
                        one.error = exc
                        one.done.set()

    @contextlib.contextmanager
    def _active(self, served: Served):
        model = served.model
        if served.shared and served.adapter is None:
            with model.disable_adapter():
                yield model
        else:
            if served.shared:
                model.set_adapter(served.adapter)
            yield model

    def _generate(self, batch: list[Job]) -> None:
        served = batch[0].served
        with self._active(served) as model:
            done = generate_completions(
                model, served.tokenizer, [j.ids for j in batch], served.encoder.stop_id,
                [j.max_tokens for j in batch], batch_size=len(batch), sampling=batch[0].sampling,
            )
        for job, c in zip(batch, done):
            job.result = replace(c, text=served.present(c.text))
            job.done.set()

    def _stream(self, job: Job) -> None:
        served = job.served
        stats: dict = {}
        text = []
        try:
            with self._active(served) as model:
                pieces = stream_generate(
                    model, served.tokenizer, job.ids, served.encoder.stop_id, job.max_tokens,
                    job.sampling, stats,
                )
                for piece in pieces:
                    if job.cancelled.is_set():  # the client went away: stop generating
                        pieces.close()
                        break
                    text.append(piece)
                    if served.live:
                        job.pieces.put(piece)
            job.result = Completion(served.present("".join(text).strip()), stats.get("tokens", 0), stats.get("finish_reason", "length"))
            if not served.live and job.result.text:
                job.pieces.put(job.result.text)
            job.pieces.put(job.result)
        except Exception as exc:  # noqa: BLE001 - the client gets it; the server goes on
            job.error = exc
            job.pieces.put(exc)
        job.done.set()


