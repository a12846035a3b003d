"""The models a server answers with, and the one worker that runs them.

Requests wait in one bounded queue. The worker runs them with **continuous batching**
(:class:`tasktune.generate.continuous.RunningBatch`): requests for the model being run
join its batch at the next decode step, streamed or not, and leave it when they end; a
sampled request draws from its own seeded generator, so its seed gives the same answer
whatever else is in the batch. Requests for another model wait until the running batch
has drained (no new rows join it while they wait). A model the running batch cannot
drive (prefix tuning, remote code with its own cache) is answered with batched
``generate`` instead: greedy non-streamed requests batched, the others one by one.

A full queue refuses new requests (:class:`Busy`); a request that waited past its
deadline is answered :class:`Expired` and one whose client has gone (``cancelled``) is
dropped, both without generating; a running request whose client goes leaves the batch
at the next step. Several names may share one PEFT model with named adapters (the base
answers with the adapters disabled).
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
from tasktune.encoding import ChatEncoder, pad_id_for
from tasktune.generate import Completion, generate_completions, stream_generate
from tasktune.generate.continuous import Row, RunningBatch, supports

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
    learned: Callable[[str], str] = lambda text: text
    """An earlier answer a client sends back -> as the model wrote it (``present``'s inverse)."""

    @property
    def context(self) -> int:
        """Longest prompt plus answer, in tokens."""
        return int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)

    def prompt_ids(self, example: Example) -> list[int]:
        """The rendered conversation's tokens, earlier answers in the form the model wrote them."""
        history = tuple((user, self.learned(answer)) for user, answer in example.history)
        return self.encoder.prompt_ids(replace(example, history=history))


@dataclass
class Job:
    """One request in the queue. The worker answers it on ``pieces``: text pieces
    (streamed jobs), then the final :class:`Completion` or an exception, which it also
    keeps in ``result`` / ``error`` before it sets ``done``."""

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
    wake: Callable[[], None] | None = None
    """Called (in the worker's thread) after each thing put on ``pieces``."""

    def put(self, piece: str) -> None:
        self.pieces.put(piece)
        if self.wake is not None:
            self.wake()

    def finish(self, result: Completion) -> None:
        self.result = result
        self._end(result)

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._end(error)

    def _end(self, last) -> None:
        self.pieces.put(last)
        self.done.set()
        if self.wake is not None:
            self.wake()

    def wait(self) -> Completion:
        self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class Engine:
    """Owns the models; one thread generates, so requests never interleave on a model."""

    def __init__(self, served: list[Served], max_batch: int = 32, max_queue: int = 64, deadline: float | None = 120.0):
        """
        Args:
            served: The model names clients can ask for.
            max_batch: Most requests generated together (rows of the running batch).
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
        self._supported: dict[int, bool] = {}  # id(model): the running batch can drive it
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
            job.fail(Expired("the client went away before the request started"))
        elif self.deadline is not None and waited > self.deadline:
            job.fail(Expired(f"the request waited {waited:.0f} s to start (the limit is {self.deadline:.0f} s)"))
        else:
            return True
        return False

    def _batch_for(self, first: Job) -> list[Job]:
        """``first`` and every queued job that can share its generate call."""
        self._take_queued()
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
            if self._continuous(job.served):
                self._run(job)
            elif job.stream:
                self._stream(job)
            else:
                self._generate_each(self._batch_for(job))

    def _continuous(self, served: Served) -> bool:
        if id(served.model) not in self._supported:
            self._supported[id(served.model)] = supports(served.model)
        return self._supported[id(served.model)]

    # Continuous batching ----------------------------------------------------------

    def _run(self, first: Job) -> None:
        """Run ``first``'s model until its batch is empty, taking in the queued requests
        for it at every step."""
        served = first.served
        answers: dict[int, _Answer] = {}
        try:
            with self._active(served) as model:
                stop = served.encoder.stop_id
                batch = RunningBatch(model, stop, pad_id_for(served.tokenizer, stop), self.max_batch)
                joining = [first]
                while joining or batch:
                    self._admit(batch, joining, answers)
                    gone = [a.row for a in answers.values() if a.job.cancelled.is_set()]
                    if gone:
                        batch.drop(gone)
                        for row in gone:
                            answers.pop(id(row)).finish(served, "length")
                    try:
                        stepped = batch.step()
                    except Exception as exc:  # noqa: BLE001 - every row of the step gets the error
                        stepped = []
                        for answer in answers.values():
                            answer.job.fail(exc)
                        answers.clear()
                        batch.drop(list(batch.rows))
                    for row, token in stepped:
                        self._deliver(served, answers, row, token)
                    joining = self._joining(served, batch.room())
        except Exception as exc:  # noqa: BLE001 - the worker goes on with the next request
            for answer in answers.values():
                answer.job.fail(exc)

    def _admit(self, batch: RunningBatch, jobs: list[Job], answers: dict[int, "_Answer"]) -> None:
        if not jobs:
            return
        rows = [Row(job.ids, job.max_tokens, job.sampling) for job in jobs]
        try:
            started = batch.admit(rows)
        except Exception as exc:  # noqa: BLE001 - the joining requests get the error, the batch goes on
            for job in jobs:
                job.fail(exc)
            return
        for job, row in zip(jobs, rows):
            answers[id(row)] = _Answer(job, row)
        for row, token in started:
            self._deliver(jobs[0].served, answers, row, token)

    def _deliver(self, served: Served, answers: dict[int, "_Answer"], row: Row, token: int) -> None:
        answer = answers[id(row)]
        if row.finish_reason is not None:
            answers.pop(id(row)).finish(served, row.finish_reason)
        elif answer.job.stream and served.live:
            answer.show(served.tokenizer, final=False)

    def _joining(self, served: Served, room: int) -> list[Job]:
        """The queued requests that join the running batch (of ``served``'s model) now:
        none while a request for another model waits, so that it is not starved."""
        self._take_queued()
        joining, rest = [], []
        for job in self._held:
            if not self._runnable(job):
                continue
            if job.served is served and len(joining) < room and not rest:
                joining.append(job)
            else:
                rest.append(job)
        self._held = rest
        return joining

    def _take_queued(self) -> None:
        """Move everything queued into ``_held`` (leaving the closing marker queued)."""
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is None:
                self._queue.put(None)
                return
            self._held.append(job)

    # Batched generate, for models the running batch cannot drive ---------------------

    def _generate_each(self, batch: list[Job]) -> None:
        """``_generate`` the batch; if it fails, each job again alone, so that each is
        answered with its own outcome."""
        try:
            self._generate(batch)
        except Exception:  # noqa: BLE001
            for one in batch:
                if one.done.is_set():  # answered before the failure
                    continue
                try:
                    self._generate([one])
                except Exception as exc:  # noqa: BLE001
                    one.fail(exc)

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
            job.finish(replace(c, text=served.present(c.text)))

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
                        job.put(piece)
            result = Completion(served.present("".join(text).strip()), stats.get("tokens", 0), stats.get("finish_reason", "length"))
            if not served.live and result.text:
                job.put(result.text)
            job.finish(result)
        except Exception as exc:  # noqa: BLE001 - the client gets it; the server goes on
            job.fail(exc)




class _Answer:
    """A running request's row and what its client has been shown."""

    def __init__(self, job: Job, row: Row | None):
        self.job, self.row, self.shown = job, row, ""

    def _text(self, tokenizer) -> str:
        tokens = self.row.tokens[:-1] if self.row.finish_reason == "stop" else self.row.tokens
        return tokenizer.decode(tokens, skip_special_tokens=True)

    def show(self, tokenizer, final: bool) -> None:
        """Stream the new text, once it is whole characters (or at the end)."""
        text = self._text(tokenizer).lstrip()  # an answer's leading blanks are never shown
        if len(text) > len(self.shown) and (final or not text.endswith("\ufffd")):
            self.job.put(text[len(self.shown):])
            self.shown = text

    def finish(self, served: Served, reason: str) -> None:
        job = self.job
        try:
            if job.stream and served.live:
                self.show(served.tokenizer, final=True)
            result = Completion(served.present(self._text(served.tokenizer).strip()), len(self.row.tokens), reason)
        except Exception as exc:  # noqa: BLE001 - this request fails alone
            job.fail(exc)
            return
        if job.stream and not served.live and result.text:
            job.put(result.text)
        job.finish(result)
