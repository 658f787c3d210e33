"""Preparing a stream's items on threads while the caller consumes them, in order.

An importer reads its input as blocks (`lines.InputText.iter_byte_blocks`); the bulk work on a
block (`trace_block`: numpy and Arrow, which release the GIL) does not depend on the blocks
before it, only the Python that follows does. `ordered` runs the bulk work of the next blocks
on a few threads while the caller reads the results one by one in input order: at most
`depth` blocks are in flight, so memory follows a few blocks, and the results are the same
as without threads (the function is pure).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered(items: Iterable[T], prepare: Callable[[T], R], *, workers: int = 2, depth: int = 3) -> Iterator[R]:
    """``map(prepare, items)``, computed up to `depth` items ahead on `workers` threads."""
    if workers < 1:
        yield from map(prepare, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="blkreplay-import") as pool:
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(prepare, item))
                if len(pending) > depth:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


__all__ = ["ordered"]
