"""Dynamic batching: the images of concurrent requests run as one forward pass.

Requests hand their decoded images to ``Batcher.submit`` and wait. One task on the event loop
gathers waiting images into a batch until it holds ``max_batch`` images or the oldest has
waited ``max_wait`` seconds, and hands it to a forward thread as soon as one is free, so the
event loop stays free to read, decode and answer other requests while the model runs. Images
that arrive while every forward thread is busy wait for the next batch: under load each batch
takes what piled up, without waiting further, and a lone request waits at most ``max_wait``.
When the server stops (``drain``), what is waiting runs at once.

With several forward threads (``threads``), batches run side by side, each on one core: on a
CPU this keeps every core busy without the threads of one forward pass waiting for each other
at every layer, which costs most where other work shares the cores.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Waiting:
    images: list[Any]
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    """Batches images for ``run``, which takes a list of images and returns one result per
    image (a sequence), called on the forward threads only. ``observe(size, seconds)`` is told
    each batch's size and forward time (the metrics)."""

    def __init__(
        self,
        run: Callable[[list[Any]], Any],
        max_batch: int,
        max_wait: float,
        observe: Callable[[int, float], None] | None = None,
        threads: int = 1,
    ) -> None:
        self.run, self.max_batch, self.max_wait = run, max_batch, max_wait
        self.observe = observe or (lambda size, seconds: None)
        self.threads = threads
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="zoo-forward")
        self.waiting: deque[_Waiting] = deque()
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.running: set[asyncio.Task] = set()

    def start(self) -> None:
        self.free = asyncio.Semaphore(self.threads)
        self.task = asyncio.get_running_loop().create_task(self._loop())

    def drain(self) -> None:
        """Run what is waiting now, and each image from now on, without waiting for more:
        the server is stopping, and no request will come to fill a batch."""
        self.max_wait = 0.0
        self.wake.set()

    async def stop(self) -> None:
        """Stop after the batches running now (requests still waiting are failed: the server
        stops them arriving before it stops the batcher)."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await asyncio.gather(*self.running, return_exceptions=True)
        for waiting in self.waiting:
            if not waiting.future.done():
                waiting.future.set_exception(RuntimeError("the server is stopping"))
        self.pool.shutdown(wait=True)

    async def submit(self, images: list[Any]) -> list[Any]:
        """The results for ``images``, in order, once their batch has run."""
        waiting = _Waiting(images, asyncio.get_running_loop().create_future())
        self.waiting.append(waiting)
        self.wake.set()
        return await waiting.future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.free.acquire()  # a forward thread is free
            while not self.waiting:
                self.wake.clear()
                await self.wake.wait()
            # Wait for more images until the batch is full or the oldest has waited enough.
            while self._count() < self.max_batch:
                left = self.waiting[0].arrived + self.max_wait - time.monotonic()
                if left <= 0:
                    break
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), left)
                except asyncio.TimeoutError:
                    break
            task = loop.create_task(self._forward(self._take()))
            self.running.add(task)
            task.add_done_callback(self.running.discard)

    async def _forward(self, batch: list[_Waiting]) -> None:
        """Run one batch on a forward thread and hand each request its results."""
        images = [image for waiting in batch for image in waiting.images]
        start = time.perf_counter()
        try:
            results = await asyncio.get_running_loop().run_in_executor(self.pool, self.run, images)
        except Exception as exc:  # a failed forward pass fails its requests, not the server
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(exc)
            return
        finally:
            self.free.release()
        self.observe(len(images), time.perf_counter() - start)
        at = 0
        for waiting in batch:
            n = len(waiting.images)
            if not waiting.future.done():  # a client that went away is not waited for
                waiting.future.set_result(results[at : at + n])
            at += n

    def _count(self) -> int:
        return sum(len(w.images) for w in self.waiting)

    def _take(self) -> list[_Waiting]:
        """The oldest requests whose images fit in ``max_batch`` (at least one request: one
        with more images than that runs as a batch of its own)."""
        taken = [self.waiting.popleft()]
        count = len(taken[0].images)
        while self.waiting and count + len(self.waiting[0].images) <= self.max_batch:
            waiting = self.waiting.popleft()
            count += len(waiting.images)
            taken.append(waiting)
        return taken
