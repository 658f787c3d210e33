"""Preparing a stream's items on threads while the caller consumes them, in order.

An importer reads its input as blocks (`lines.InputText.iter_byte_blocks`); the bulk work on a
block (`trace_block`: numpy and Arrow, which release the GIL) does not depend on the blocks
before it, only the Python that follows does. `ordered` runs the bulk work of the next blocks
on a few threads while the caller reads the results one by one in input order: at most
`depth` items are in flight besides the one the caller holds, so memory follows a few
blocks (or, for a writer, one row group being made while one is written), and the results
are the same as without threads (the function is pure).

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
        pending: queue.Queue[Future[R] | BaseException | object] = queue.Queue()
        stop = threading.Event()
        # (a slot per item submitted and not yet taken by the caller: never more than `depth`
        # results made ahead of the one the caller holds, e.g. one row group being written)
        slots = threading.Semaphore(depth)

        def draw() -> None:
            try:
                for item in items:
                    while not slots.acquire(timeout=0.05):
                        if stop.is_set():
                            return
                    if stop.is_set():
                        return
                    pending.put(pool.submit(prepare, item))
            except BaseException as exc:  # (handed to the caller, in its place)
                pending.put(exc)
                return
            pending.put(_END)

        drawer = threading.Thread(target=draw, name="blkreplay-import-read", daemon=True)
        drawer.start()
        try:
            while (got := pending.get()) is not _END:
                slots.release()
                if isinstance(got, BaseException):
                    raise got
                yield got.result()  # type: ignore[union-attr]
        finally:
            stop.set()
            drawer.join()  # (it sees `stop` within 0.05 s, or ends with its item)
            _drop(pending)


def _drop(pending: queue.Queue) -> None:
    while True:
        try:
            got = pending.get_nowait()
        except queue.Empty:
            return
        if isinstance(got, Future):
            got.cancel()


__all__ = ["ordered"]
