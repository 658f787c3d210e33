"""Preparing a stream's items on threads while the caller consumes them, in order.

An importer reads its input as blocks (`lines.InputText.iter_byte_blocks`); the bulk work on a
block (`trace_block`: numpy and Arrow, which release the GIL) does not depend on the blocks
before it, only the Python that follows does. `ordered` runs the bulk work of the next blocks
on a few threads while the caller reads the results one by one in input order: at most
`depth` blocks are in flight, so memory follows a few blocks, and the results are the same
as without threads (the function is pure).

The items themselves are drawn on a thread of their own too: reading a block (the read, its
newlines counted by numpy) mostly waits without the GIL, which the caller's Python then
has. An error raised while drawing them (a line too long) reaches the caller after the
results of the items before it, as it would without threads.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: What the drawing thread puts after the last item.
_END = object()


def ordered(items: Iterable[T], prepare: Callable[[T], R], *, workers: int = 2, depth: int = 3) -> Iterator[R]:
    """``map(prepare, items)``, computed up to `depth` items ahead on `workers` threads."""
    if workers < 1:
        yield from map(prepare, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="blkreplay-import") as pool:
        pending: queue.Queue[Future[R] | BaseException | object] = queue.Queue(maxsize=depth)
        stop = threading.Event()

        def draw() -> None:
            try:
                for item in items:
                    if stop.is_set():
                        return
                    _put(pending, pool.submit(prepare, item), stop)
            except BaseException as exc:  # (handed to the caller, in its place)
                _put(pending, exc, stop)
                return
            _put(pending, _END, stop)

        drawer = threading.Thread(target=draw, name="blkreplay-import-read", daemon=True)
        drawer.start()
        try:
            while (got := pending.get()) is not _END:
                if isinstance(got, BaseException):
                    raise got
                yield got.result()  # type: ignore[union-attr]
        finally:
            stop.set()
            while drawer.is_alive():  # (let a blocked put through, then drop what it put)
                _drop(pending)
                drawer.join(0.01)
            _drop(pending)


def _put(pending: queue.Queue, value: object, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            pending.put(value, timeout=0.05)
            return
        except queue.Full:
            continue


def _drop(pending: queue.Queue) -> None:
    while True:
        try:
            got = pending.get_nowait()
        except queue.Empty:
            return
        if isinstance(got, Future):
            got.cancel()


__all__ = ["ordered"]
