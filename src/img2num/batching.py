"""Micro-batching: the images of concurrent requests gathered into one model call, on one
thread, behind a bounded queue."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np


class QueueFull(Exception):
    """The batcher holds as many images as it may; the request is refused, not queued."""


class MicroBatcher:
    """Gathers the images of concurrent requests into one model call, on one thread.

    A request's images wait in a bounded queue, in parts of at most `max_batch` images. The
    thread takes the first waiting part, lets others join it for up to `wait_s` or until
    `max_batch` images, predicts them in one call and hands each part its share; a request is
    answered when all its parts are. Requests that arrive while the model runs form the next batch.

    Args:
        predict: Images (N, H, W, C) to N predictions.
        max_batch: Most images per call; a larger request is split over several calls.
        wait_s: Longest wait for more images once one is waiting.
        capacity: Most images waiting; `submit` refuses more with `QueueFull`.
    """

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], max_batch: int, wait_s: float, capacity: int) -> None:
        self.predict, self.max_batch, self.wait_s, self.capacity = predict, max_batch, wait_s, capacity
        self._pending: collections.deque[tuple[np.ndarray, Future]] = collections.deque()
        self._waiting = 0  # images in _pending
        self._condition = threading.Condition()
        self._closed = False
        self.calls = 0
        self.images = 0
        self._thread = threading.Thread(target=self._loop, name="img2num-batcher", daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        """Images waiting for the model."""
        return self._waiting

    def submit(self, images: np.ndarray) -> Future:
        """Queue one request's images (N, H, W, C).

        Returns:
            A future of their N predictions.

        Raises:
            QueueFull: Queueing them would pass `capacity`.
        """
        parts = [images[start : start + self.max_batch] for start in range(0, len(images), self.max_batch)]
        futures: list[Future] = [Future() for _ in parts]
        with self._condition:
            if self._closed:
                raise QueueFull("the server is shutting down")
            if self._waiting + len(images) > self.capacity:
                raise QueueFull(
                    f"server busy: {self._waiting} images are waiting for the model "
                    f"(queue size {self.capacity}); try again shortly"
                )
            self._pending.extend(zip(parts, futures))
            self._waiting += len(images)
            self._condition.notify()
        return futures[0] if len(futures) == 1 else _joined(futures)

    def close(self) -> None:
        """Answer what is queued, then stop the thread."""
        with self._condition:
            self._closed = True
            self._condition.notify()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                images = batch[0][0] if len(batch) == 1 else np.concatenate([images for images, _ in batch])
                predictions = self.predict(images)
            except Exception as error:  # handed to every waiting request; the thread goes on
                for _, future in batch:
                    future.set_exception(error)
                continue
            self.calls += 1
            self.images += len(images)
            start = 0
            for images, future in batch:
                future.set_result(predictions[start : start + len(images)])
                start += len(images)

    def _next_batch(self) -> list[tuple[np.ndarray, Future]] | None:
        with self._condition:
            while not self._pending and not self._closed:
                self._condition.wait()
            if not self._pending:
                return None
            deadline = time.monotonic() + self.wait_s
            while self._waiting < self.max_batch and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._condition.wait(left)
            batch, count = [], 0
            while self._pending and (not batch or count + len(self._pending[0][0]) <= self.max_batch):
                images, future = self._pending.popleft()
                batch.append((images, future))
                count += len(images)
            self._waiting -= count
            return batch


def _joined(parts: list[Future]) -> Future:
    """One future of the concatenated results of `parts`, or of the first error among them."""
    joined: Future = Future()
    lock = threading.Lock()  # a part may finish in the batcher's thread while callbacks are added here

    def part_done(_: Future) -> None:
        with lock:
            if joined.done() or not all(part.done() for part in parts):
                return
            error = next((part.exception() for part in parts if part.exception() is not None), None)
            if error is not None:
                joined.set_exception(error)
            else:
                joined.set_result(np.concatenate([part.result() for part in parts]))

    for part in parts:
        part.add_done_callback(part_done)
    return joined
