"""Where per-VM work runs: in this process, in a few worker processes, or on Dask.

A check is a map over *units* (sets of whole VMs, see `analyzer.trace`) followed by a merge that
sorts everything explicitly, so the result is byte-identical whichever engine runs the units,
with how many workers, and in whatever order they finish. Local workers are *processes*
(`concurrent.futures.ProcessPoolExecutor`, forkserver start): the decoding and the rules hold
the GIL most of the time, so threads of one process would take turns, not run at once. The
trace is sent to each worker process once (it is paths and numbers); a unit is then just its
number. Where traces outgrow one machine,
the same analysis runs on Dask: with a `dask.distributed` client (passed in, from
`dask_cluster`, or active in the session), `engine="dask"` uses its cluster; otherwise Dask's
local threaded scheduler.

On a cluster the units travel, not the data: a unit and the `Trace` are paths, row-group
numbers and metadata, and each worker reads its row groups itself from the filesystem the
inputs live on (which must therefore be shared, at the same paths, by every worker).
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Literal, TypeVar

from analyzer.progress import ProgressCallback
from analyzer.trace import Trace, Unit
from tracer.errors import InputError, first_line

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client

EngineName = Literal["local", "dask"]
ENGINES: tuple[str, ...] = ("local", "dask")

R = TypeVar("R")
#: fn(trace, unit, report_rows) -> result; report_rows(n) tells how many rows were read.
UnitFn = Callable[[Trace, Unit, Callable[[int], None] | None], R]

#: How long `dask_cluster` waits for a scheduler before giving up (seconds).
CONNECT_TIMEOUT_S = 5.0
#: ``local:N`` — start N worker processes on this machine for one run.
LOCAL_PREFIX = "local:"
NEEDS_DISTRIBUTED = "a Dask scheduler needs the distributed package: pip install 'blkreplay[dask]'"


def map_units(
    fn: UnitFn[R],
    trace: Trace,
    units: Sequence[Unit],
    *,
    engine: str = "local",
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    client: Client | None = None,
) -> list[R]:
    """`fn` over every unit, results in `units` order.

    `workers`: processes (local engine) or threads (Dask's local scheduler). With a distributed `client`
    (or, when none is given, the session's default client) the cluster's workers run the
    units and `workers` does not apply.
    """
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
        return _dask(fn, trace, units, workers, advance, client)
    if workers is None or workers == 1 or len(units) < 2:
        return [fn(trace, u, advance) for u in units]
    return _processes(fn, trace, units, min(workers, len(units)), advance)


#: In a worker process: the trace its units belong to (sent once, by the pool's initializer).
_WORKER_TRACE: Trace | None = None


def _worker_init(trace: Trace) -> None:
    global _WORKER_TRACE
    _WORKER_TRACE = trace


def _worker_run(fn: UnitFn[R], unit: Unit) -> R:
    assert _WORKER_TRACE is not None
    return fn(_WORKER_TRACE, unit, None)


def _processes(fn: UnitFn[R], trace: Trace, units: Sequence[Unit], workers: int,
               advance: Callable[[int], None]) -> list[R]:
    """`fn` over `units` in `workers` processes, results in `units` order; the first failing
    unit in that order raises (whatever finished first), so errors are deterministic too."""
    try:
        pickle.dumps(fn)
    except (pickle.PicklingError, AttributeError, TypeError):  # a closure: run it here
        return [fn(trace, u, advance) for u in units]
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["analyzer.check"])
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(trace.without_digests(),)) as pool:
        futures: list[Future[R]] = []
        with _main_not_rerun():  # the workers start as these are submitted
            for u in units:
                f = pool.submit(_worker_run, fn, u)
                f.add_done_callback(lambda done, rows=u.rows: advance(rows) if not done.exception() else None)
                futures.append(f)
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _dask(fn: UnitFn[R], trace: Trace, units: Sequence[Unit], workers: int | None,
          advance: Callable[[int], None], client: Client | None) -> list[R]:
    client = client if client is not None else _active_client()
    if client is not None:
        return _distributed(fn, trace, units, client, advance)
    try:
        import dask
    except ImportError:  # pragma: no cover - dask is an optional dependency
        raise InputError("engine 'dask' needs dask: pip install 'blkreplay[dask]'") from None
    tasks = [dask.delayed(fn, pure=True)(trace, u, None) for u in units]
    kwargs = {"num_workers": workers} if workers is not None else {}
    results = list(dask.compute(*tasks, scheduler="threads", **kwargs))
    advance(sum(u.rows for u in units))
    return results


def _active_client() -> Client | None:
    """The session's default distributed client, if `distributed` is in use at all."""
    if "distributed" not in sys.modules:  # no client can exist: don't pay for the import
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None


def _distributed(fn: UnitFn[R], trace: Trace, units: Sequence[Unit], client: Client,
                 advance: Callable[[int], None]) -> list[R]:
    """One task per unit on the cluster; progress advances as units finish, results are put
    back in `units` order. The trace is sent once (without its pending input digests, which
    workers never need and which would make sending wait for the hashing)."""
    from distributed import as_completed

    if not units:
        return []
    shipped = client.scatter(trace.without_digests(), hash=False)
    futures = [client.submit(fn, shipped, u, None, pure=False) for u in units]
    position = {f.key: i for i, f in enumerate(futures)}
    results: list[R | None] = [None] * len(units)
    try:
        for done in as_completed(futures, loop=client.loop):
            i = position[done.key]
            results[i] = done.result()  # a worker's exception is re-raised here, type intact
            advance(units[i].rows)
    finally:
        client.cancel([*futures, shipped])
    return results  # type: ignore[return-value]


@contextmanager
def _main_not_rerun() -> Iterator[None]:
    """While worker processes start: a main module they do not import again.

    A started process imports the parent's ``__main__`` (by path or module name) before it
    runs anything; a user's script that calls `check` without an ``if __name__ ==
    "__main__"`` guard would then check again in every worker, and a main module read from
    stdin cannot be imported at all. The workers need nothing from it (the unit function is
    the analyzer's own)."""
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if main is not None and k in main.__dict__}
    try:
        if main is not None:
            main.__dict__.pop("__file__", None)
            main.__dict__["__spec__"] = None
        yield
    finally:
        if main is not None:
            main.__dict__.update(saved)
            if "__spec__" not in saved:
                main.__dict__.pop("__spec__", None)


@contextmanager
def dask_cluster(scheduler: str, *, timeout: float | None = None,
                 units: int | None = None) -> Iterator[Client | None]:
    """A `distributed.Client` for the duration of one run.

    `scheduler` is a scheduler address (``tcp://host:8786``; the inputs must be on a
    filesystem every worker sees at the same paths) or ``local:N``, which starts N worker
    processes (one thread each) on this machine, on loopback, and stops them afterwards: on
    one big machine that runs units in parallel beyond the GIL. Raises
    :class:`~tracer.errors.InputError` when `distributed` is missing, the address is
    malformed or the scheduler does not answer within `timeout` (default `CONNECT_TIMEOUT_S`).
    With ``local:N`` and `units` < 2 no cluster is started (its start would cost more than it
    could gain over running the one unit here): it gives None, the in-process engine.
    """
    n = scheduler[len(LOCAL_PREFIX):] if scheduler.startswith(LOCAL_PREFIX) else None
    if n is not None and (not n.isdigit() or int(n) < 1):
        raise InputError(f"bad scheduler {scheduler!r}: local:N needs a number of worker processes N >= 1")
    try:
        import distributed
        from distributed.comm import resolve_address
    except ImportError:
        raise InputError(NEEDS_DISTRIBUTED) from None
    wait = CONNECT_TIMEOUT_S if timeout is None else timeout
    if n is not None and units is not None and units < 2:
        yield None
        return
    if n is not None:
        import dask

        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
            cluster = distributed.LocalCluster(
                n_workers=int(n), threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address="127.0.0.1:0",  # any free port, loopback only: never clash with 8787
                silence_logs=logging.ERROR,
            )
        try:
            with distributed.Client(cluster, set_as_default=False) as client:
                yield client
        finally:
            cluster.close()
        return
    try:  # checked first: a malformed address would leave a half-built Client behind
        resolve_address(scheduler)
    except (ValueError, OSError) as exc:
        raise InputError(f"bad scheduler address {scheduler!r}: {first_line(exc)}") from None
    try:
        client = distributed.Client(scheduler, timeout=wait, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise InputError(f"cannot reach the Dask scheduler: {first_line(exc)}") from None
    with client:
        yield client
