"""The replayed steps as ``blkreplay replay`` shows them: aligned text lines, or JSON lines.

The input is the frame of :func:`analyzer.replay`, or the chunks of
:func:`analyzer.replay.replay_chunks` (one row per step, the state after it, per device an
``iostatus:DEVICE`` column and the last ``query-block`` answer about it). Output is produced
chunk by chunk, so that ``blkreplay replay BIG | head`` shows its first lines at once: column
widths are fixed from a VM's first chunk (a later, longer value pushes its line out on a pipe,
and is cut with ``…`` on a terminal), never from the whole trace.

Honesty about state: for a VM whose state an import only lets us *infer* from events, the
state columns carry a ``~`` (``runstate~``, ``drive0~``) and a legend says so; the
``observed`` column is what QEMU last *answered* (``query-status`` then each device's
``query-block`` io-status, ``@seq`` of the reply), which may be stale.

Every value from the trace is shown through :func:`analyzer.text.printable` (and escaped for
rich markup on a terminal); steps with findings are red there. On a terminal narrower than
the line, the least needed columns go first (src, vm, thread, ISO time, pending) and the
detail is cut. JSON lines gather the per-device columns into ``iostatus`` and ``observed``
objects and the findings into a list.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from rich.console import Console
from rich.markup import escape

from analyzer.text import printable

#: The formats of `blkreplay replay -f`.
REPLAY_FORMATS: tuple[str, ...] = ("text", "jsonl")

IOSTATUS = "iostatus:"
OBSERVED = ("observed:", "observed_seq:", "observed_src:", "observed_time:")

#: Legend printed before the steps of a VM whose state is inferred (an import).
LEGEND = "# ~ inferred from events; observed: last query-status/query-block answer @seq"


def _cell(value: object) -> object:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


# ---------------------------------------------------------------------------------------------
# JSON lines
# ---------------------------------------------------------------------------------------------


def jsonl_lines(chunks: Iterable[pd.DataFrame]) -> Iterator[str]:
    """One JSON object per step (with its newline), chunk by chunk: the view's columns, the
    per-device io-status as an ``iostatus`` object, the last answers as ``observed``:
    ``{"runstate": {value, seq, src, time} | null, "iostatus": {device: {...} | null}}``."""
    for view in chunks:
        devs = [c[len(IOSTATUS):] for c in view.columns if c.startswith(IOSTATUS)]
        extra = {c for c in view.columns if c.startswith(OBSERVED)} | {IOSTATUS + d for d in devs}
        obs_rs = [c for c in view.columns if c.startswith("observed_runstate")]
        base = [c for c in view.columns if c not in extra and c not in obs_rs]
        for rec in view.to_dict("records"):
            row = {c: _cell(rec[c]) for c in base}
            row["iostatus"] = {d: _cell(rec[IOSTATUS + d]) for d in devs}
            row["findings"] = [r for r in (row.get("findings") or "").split(",") if r]
            row["observed"] = {
                "runstate": _answer(rec, "observed_runstate", "observed_runstate_seq",
                                    "observed_runstate_src", "observed_runstate_time"),
                "iostatus": {d: _answer(rec, *(p + d for p in OBSERVED)) for d in devs},
            }
            yield json.dumps(row, ensure_ascii=False) + "\n"


def _answer(rec: dict, value: str, seq: str, src: str, time: str) -> dict | None:
    if _cell(rec.get(value)) is None:
        return None
    return {"value": _cell(rec[value]), "seq": _cell(rec[seq]), "src": _cell(rec.get(src)),
            "time": _cell(rec.get(time))}


def render_jsonl(view: pd.DataFrame) -> str:
    """:func:`jsonl_lines` of one frame, as one string."""
    return "".join(jsonl_lines([view]))


# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------


@dataclass
class _Column:
    key: str
    header: str
    width: int
    #: Dropped first on a narrow terminal (lower goes first); None: never dropped.
    drop: int | None = None
    right: bool = False


def _str(values: object) -> np.ndarray:
    """A column as an object array of str ('' for null)."""
    arr = np.asarray(values, dtype=object)
    out = np.full(len(arr), "", dtype=object)
    ok = pd.notna(arr)
    out[ok] = [str(v) for v in arr[ok]] if ok.any() else []
    return out


def _join(parts: list[np.ndarray], sep: str = " ") -> np.ndarray:
    """Per row: the non-empty `parts` joined by `sep` (object arrays of str)."""
    acc = np.full(len(parts[0]), "", dtype=object) if parts else np.zeros(0, dtype=object)
    for part in parts:
        both = (acc != "") & (part != "")
        acc = np.where(both, acc + sep + part, np.where(part != "", part, acc))
    return acc


def _labelled(label: str, values: np.ndarray) -> np.ndarray:
    return np.where(values != "", label + values, "")


def _seconds(ns: np.ndarray, prefix: np.ndarray | str) -> np.ndarray:
    text = np.char.mod("%.6f", np.abs(ns) / 1e9).astype(object)
    return prefix + text + " s"


def _safe(values: np.ndarray) -> np.ndarray:
    """:func:`printable` of every value, computed once per distinct value."""
    if not len(values):
        return values
    uniq, inverse = np.unique(values.astype(str), return_inverse=True)
    return np.array([printable(u) for u in uniq], dtype=object)[inverse]


def _base_name(src: np.ndarray) -> np.ndarray:
    """``name:line`` of each ``path/name:line`` (the path is in the JSON lines)."""
    s = pd.Series(src, dtype=object)
    return s.str.replace(r"^.*[/\\]", "", regex=True).fillna("").to_numpy(dtype=object)


def _cells(view: pd.DataFrame, devs: list[str], origin: int | None) -> dict[str, np.ndarray]:
    """Every text column of `view`'s rows (object arrays of str, trace values made printable)."""
    n = len(view)
    ts = view["ts_ns"].to_numpy(dtype=np.int64)
    kind, name = _str(view["kind"]), _str(view["name"])
    step = np.where(name == "", kind, np.where(kind == "qmp_event", name, kind + " " + name))
    # The narrow form: >command, <reply (as the docs write the QMP order), the rest as is.
    short = np.where(name == "", kind, np.where(kind == "qmp_command", ">" + name,
                     np.where(kind == "qmp_reply", "<" + name, step)))
    eid = _str(view["error_id"])
    detail = _join([_labelled("op=", _str(view["op"])), _labelled("errno=", _str(view["errno"])),
                    _labelled("action=", _str(view["action"])), _str(view["value"]),
                    _labelled("E", eid)])
    iso = _str(view["time"]) if "time" in view else np.full(n, "", dtype=object)
    time = np.where(iso != "", iso, _seconds(ts, "t="))
    if origin is not None:
        rel = _seconds(ts - origin, np.where(ts >= origin, "+", "-").astype(object))
    else:
        rel = np.full(n, "", dtype=object)
    pend = _str(view["pending"])
    rs_obs = _str(view.get("observed_runstate", pd.Series([None] * n)))
    obs = [np.where(rs_obs != "", rs_obs + "@" + _str(view.get("observed_runstate_seq")), "")]
    for d in devs:
        v = _str(view.get("observed:" + d, pd.Series([None] * n)))
        label = "" if len(devs) == 1 else d + "="
        obs.append(np.where(v != "", label + v + "@" + _str(view.get("observed_seq:" + d)), ""))
    observed = _join(obs)
    runstate = _str(view["runstate"])
    return {
        "seq": _str(view["seq"]),
        "time": time,
        "rel": rel,
        "vm": _safe(_str(view["vm"])),
        "thread": _safe(_str(view["thread"])),
        "step": _safe(step),
        "step_short": _safe(short),
        "device": _safe(_str(view["device"])),
        "detail": _safe(detail),
        "runstate": np.where(runstate == "", "?", runstate),
        **{IOSTATUS + d: np.where((c := _str(view[IOSTATUS + d])) == "", "-", c) for d in devs},
        "pending": np.where(pend == "", "-", "E" + pend),
        "observed": np.where(observed == "", "-", observed),
        "findings": _safe(_str(view["findings"])),
        "src": _safe(_base_name(_str(view["src"]) if "src" in view else np.full(n, "", dtype=object))),
    }


def _layout(first: dict[str, np.ndarray], devs: list[str], inferred_rs: bool, inferred_io: bool,
            wall: bool, width: int | None) -> list[_Column]:
    def w(key: str, header: str, least: int = 0) -> int:
        longest = max((len(v) for v in first[key]), default=0)
        return max(len(header), least, longest)

    rs_h = "runstate~" if inferred_rs else "runstate"
    io_h = {d: d + ("~" if inferred_io else "") for d in devs}
    cols = [
        _Column("seq", "seq", w("seq", "seq"), right=True),
        _Column("time", "time", w("time", "time"), drop=4),
        _Column("rel", "+time", w("rel", "+time"), drop=6),
        _Column("vm", "vm", w("vm", "vm"), drop=2),
        _Column("thread", "thread", w("thread", "thread"), drop=3),
        _Column("step", "step", w("step", "step", 14)),
        # One device: its name heads its io-status column, so a narrow terminal can spare this.
        _Column("device", "device", w("device", "device"), drop=6 if len(devs) <= 1 else None),
        _Column("detail", "detail", w("detail", "detail", 12)),
        _Column("runstate", rs_h, w("runstate", rs_h, 8)),
        *[_Column(IOSTATUS + d, io_h[d], w(IOSTATUS + d, io_h[d], 6)) for d in devs],
        _Column("pending", "pending", w("pending", "pending"), drop=5),
        _Column("observed", "observed", w("observed", "observed", 10), drop=7),
        _Column("findings", "findings", w("findings", "findings")),
        _Column("src", "src", w("src", "src"), drop=1),
    ]
    if not (first["src"] != "").any():
        cols = [c for c in cols if c.key != "src"]
    if not wall or not (first["rel"] != "").any():  # t=... already counts from the clock's zero
        cols = [c for c in cols if c.key != "rel"]
    if width is None:
        return cols

    def total() -> int:
        return sum(c.width for c in cols) + 2 * (len(cols) - 1)

    for rank in range(1, 7):
        if total() <= width:
            break
        cols = [c for c in cols if c.drop != rank]
    step = next(c for c in cols if c.key == "step")
    if total() > width:  # >command and <reply instead of "qmp_command ..."
        step.key, step.width = "step_short", w("step_short", "step", 14)
    for key, least in (("detail", 6), ("step_short", 13), ("findings", 8)):  # then cut the free text
        col = next(c for c in cols if c.key == key)
        over = total() - width
        if over > 0:
            col.width = max(least, col.width - over)
    if total() > width:  # the last resort: the observed answers (jsonl has them all)
        cols = [c for c in cols if c.drop != 7]
    return cols


def _fit(values: np.ndarray, width: int, cut: bool, right: bool = False) -> np.ndarray:
    text = np.asarray(values, dtype=str) if len(values) else np.zeros(0, dtype=str)
    if cut and len(text):
        long = np.char.str_len(text) > width
        if long.any():
            text = text.astype(object)
            text[long] = [t[: max(width - 1, 0)] + "…" for t in text[long]]
            text = np.asarray(text, dtype=str)
    return np.char.rjust(text, width) if right else np.char.ljust(text, width)


def _lines(cells: dict[str, np.ndarray], cols: list[_Column], cut: bool) -> np.ndarray:
    out = None
    for c in cols:
        part = _fit(cells[c.key], c.width, cut, c.right)
        out = part if out is None else np.char.add(np.char.add(out, "  "), part)
    return np.char.rstrip(out)


def replay_text(
    chunks: Iterable[pd.DataFrame],
    *,
    width: int | None = None,
    markup: bool = False,
    origin_ns: dict[str, int] | int | None = None,
) -> Iterator[str]:
    """Aligned text lines (without newline), chunk by chunk: per VM a legend where its state
    is inferred, a header, one line per step. `width`: a terminal's width (columns are dropped
    and cut to fit); None: the fixed layout of a pipe or file, nothing cut. `markup`: rich
    markup (values escaped, findings red, header bold). `origin_ns`: the time ``+time`` counts
    from (per VM, or one for all; wall-clock traces only); default the first step shown of
    each VM."""
    current: tuple | None = None
    cols: list[_Column] = []
    origin: int | None = None
    cut = width is not None
    for view in chunks:
        if not len(view):
            continue
        devs = [c[len(IOSTATUS):] for c in view.columns if c.startswith(IOSTATUS)]
        vm = str(view["vm"].iloc[0])
        key = (vm, tuple(devs))
        if key != current:
            origin = origin_ns.get(vm) if isinstance(origin_ns, dict) else origin_ns
            if origin is None:
                origin = int(view["ts_ns"].iloc[0])
        cells = _cells(view, devs, origin)
        if key != current:
            inferred_rs = bool(view["runstate_inferred"].iloc[0]) if "runstate_inferred" in view else False
            inferred_io = bool(view["iostatus_inferred"].iloc[0]) if "iostatus_inferred" in view else False
            wall = "time" in view and pd.notna(view["time"].iloc[0])
            cols = _layout(cells, devs, inferred_rs, inferred_io and bool(devs), wall, width)
            if current is not None:
                yield ""
            if inferred_rs or (inferred_io and devs):
                yield _styled(LEGEND if width is None else LEGEND[:width], markup, "dim")
            header = {c.key: np.array([c.header], dtype=object) for c in cols}
            yield _styled(str(_lines(header, cols, cut)[0]), markup, "bold")
            current = key
        lines = _lines(cells, cols, cut)
        if not markup:
            yield from lines.tolist()
            continue
        marked = cells["findings"] != ""
        for line, red in zip(lines.tolist(), marked.tolist(), strict=True):
            yield _styled(line, markup, "red" if red else None)


def _styled(text: str, markup: bool, style: str | None) -> str:
    if not markup:
        return text
    text = escape(text)
    return f"[{style}]{text}[/]" if style else text


def replay_lines(view: pd.DataFrame) -> list[str]:
    """The lines of one frame in the fixed layout, as rich markup (every trace value escaped;
    findings in red)."""
    return list(replay_text([view], markup=True))


def print_replay(
    view: pd.DataFrame | Iterable[pd.DataFrame],
    out: Console,
    *,
    origin_ns: dict[str, int] | int | None = None,
) -> None:
    """The steps of `view` (a frame, or chunks of frames) on `out`, chunk by chunk.

    On a terminal: rich markup at its width (columns dropped and cut to fit). Elsewhere (a
    pipe, a file): plain lines in the fixed layout, written straight to the console's file
    and flushed per chunk."""
    chunks = [view] if isinstance(view, pd.DataFrame) else view
    terminal = out.is_terminal

    def emit(lines: list[str]) -> None:
        if terminal:
            out.print("\n".join(lines), soft_wrap=True)
        else:
            out.file.write("\n".join(lines) + "\n")
            out.file.flush()

    buf: list[str] = []
    text = replay_text(_flushing(chunks, buf, emit), width=out.width if terminal else None,
                       markup=terminal, origin_ns=origin_ns)
    for line in text:
        buf.append(line)
    _flush(buf, emit)


def _flushing(chunks: Iterable[pd.DataFrame], buf: list[str], emit) -> Iterator[pd.DataFrame]:
    """`chunks`, emitting what was rendered of the previous one before the next is computed."""
    it = iter(chunks)
    while True:
        _flush(buf, emit)
        chunk = next(it, None)
        if chunk is None:
            return
        yield chunk


def _flush(buf: list[str], emit) -> None:
    if buf:
        emit(list(buf))
        buf.clear()
