"""Where per-VM work runs: in this process (optionally on a few threads) or on Dask.

A check is a map over *units* (sets of whole VMs, see `analyzer.load`) followed by a merge that
sorts everything explicitly, so the result is byte-identical whichever engine runs the units,
with how many workers, and in whatever order they finish. Where traces outgrow one machine,
the same analysis runs on Dask: with a `dask.distributed` client active, `engine="dask"` uses
its cluster; otherwise Dask's local threaded scheduler.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, TypeVar

from analyzer.load import Trace, Unit
from tracer.errors import InputError

EngineName = Literal["local", "dask"]
ENGINES: tuple[str, ...] = ("local", "dask")

R = TypeVar("R")
#: fn(trace, unit, report_rows) -> result; report_rows(n) tells how many rows were read.
UnitFn = Callable[[Trace, Unit, Callable[[int], None] | None], R]
ProgressCallback = Callable[[int, int | None], None]


def map_units(
    fn: UnitFn[R],
    trace: Trace,
    units: Sequence[Unit],
    *,
    engine: str = "local",
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> list[R]:
    """`fn` over every unit, results in `units` order."""
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}; choose one of: {', '.join(ENGINES)}")
    if workers is not None and workers < 1:
        raise InputError(f"workers must be at least 1, got {workers}")
    total = sum(u.rows for u in units)
    done = 0
    lock = threading.Lock()

    def advance(n: int) -> None:
        nonlocal done
        if progress is None:
            return
        with lock:
            done = min(done + n, total)
            progress(done, total)

    if progress is not None:
        progress(0, total)
    if engine == "dask":
        return _dask(fn, trace, units, workers, advance)
    if workers is None or workers == 1 or len(units) < 2:
        return [fn(trace, u, advance) for u in units]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda u: fn(trace, u, advance), units))


def _dask(fn: UnitFn[R], trace: Trace, units: Sequence[Unit], workers: int | None,
          advance: Callable[[int], None]) -> list[R]:
    try:
        import dask
    except ImportError:  # pragma: no cover - dask is an optional dependency
        raise InputError("engine 'dask' needs dask: pip install 'blkreplay[dask]'") from None
    tasks = [dask.delayed(fn, pure=True)(trace, u, None) for u in units]
    kwargs = {"num_workers": workers} if workers is not None else {}
    results = list(dask.compute(*tasks, **kwargs))
    advance(sum(u.rows for u in units))
    return results
