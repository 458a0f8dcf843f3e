"""Micro-batching: the images of concurrent requests go through the model in one forward pass.

One forward pass of 64 images costs far less than 64 passes of one (the
weights are read once; ``bench/serve_load.py`` measures the gain). Each
request's images wait in a bounded queue; the first image of a batch waits
at most ``max_wait`` seconds for others, a batch holds up to ``max_batch``
images (a larger request is one batch of its own), and one thread runs the
model, so batches never compete for the cores.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


class Overloaded(Exception):
    """The queue holds its maximum of waiting images: the caller answers HTTP 503 (retry later)."""


@dataclass
class _Job:
    images: np.ndarray
    done: asyncio.Future
    extra: dict = field(default_factory=dict)


class Batcher:
    """Batch ``(N, H, W, C)`` uint8 image arrays for ``run``, which maps ``(B, H, W, C)`` to ``(B, ...)``.

    ``run`` is called in one worker thread; what it returns, row by row, goes back to each caller of
    :meth:`submit`. ``max_queue``: images waiting, at most (beyond it :class:`Overloaded`).
    """

    def __init__(self, run: Callable[[np.ndarray], tuple[np.ndarray, dict]], max_batch: int = 64,
                 max_wait: float = 0.002, max_queue: int = 4096):
        self.run, self.max_batch, self.max_wait, self.max_queue = run, max_batch, max_wait, max_queue
        self.waiting = 0  # images queued, not yet taken into a batch
        self.batches = self.images = 0  # counters: forward passes and images through them
        self._queue: asyncio.Queue[_Job] | None = None
        self._carried: _Job | None = None  # a job that did not fit the last batch: the first of the next
        self._task: asyncio.Task | None = None
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="model")

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop after the batches in flight (the server stops taking requests first)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._thread.shutdown(wait=True)

    async def submit(self, images: np.ndarray) -> tuple[np.ndarray, dict]:
        """``run``'s rows for ``images`` and what ``run`` said about its batch (e.g. the model used).

        Raises:
            Overloaded: :attr:`max_queue` images are waiting already.
        """
        if self.waiting + len(images) > self.max_queue:
            raise Overloaded(f"{self.waiting} images are waiting (at most {self.max_queue})")
        job = _Job(images, asyncio.get_running_loop().create_future())
        self.waiting += len(images)
        self._queue.put_nowait(job)
        return await job.done

    async def _next_batch(self) -> list[_Job]:
        jobs = [self._carried or await self._queue.get()]
        self._carried = None
        size = len(jobs[0].images)
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while size < self.max_batch:
            timeout = deadline - asyncio.get_running_loop().time()
            try:
                job = self._queue.get_nowait() if timeout <= 0 else await asyncio.wait_for(self._queue.get(), timeout)
            except (asyncio.QueueEmpty, TimeoutError):
                break
            if size + len(job.images) > self.max_batch:  # would overflow: it opens the next batch
                self._carried = job
                break
            jobs.append(job)
            size += len(job.images)
        self.waiting -= size
        return jobs

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._next_batch()
            jobs = [job for job in jobs if not job.done.cancelled()]  # the client went away
            if not jobs:
                continue
            images = np.concatenate([job.images for job in jobs])
            try:
                rows, info = await loop.run_in_executor(self._thread, self.run, images)
            except Exception as exc:  # noqa: BLE001 - handed to each caller, who answers HTTP 500
                for job in jobs:
                    if not job.done.done():
                        job.done.set_exception(exc)
                continue
            self.batches, self.images = self.batches + 1, self.images + len(images)
            start = 0
            for job in jobs:
                if not job.done.done():
                    job.done.set_result((rows[start : start + len(job.images)], info))
                start += len(job.images)
