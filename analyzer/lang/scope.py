"""A rule's scope over a `Steps` batch: which rows belong together, and searches within it.

* ``vm``: every row of the VM (the plain `Steps.prev` / `Steps.next`);
* ``device``: rows naming the same device; rows naming none (STOP, RESUME, runstate) are
  VM-wide and count in every device's scope (a RESUME resumes every device);
* ``error_id``: rows of the same error; rows without an id belong to no error.

Searches combine a keyed index (`Steps.by_device` / `by_eid`) with, for VM-wide rows, the
positional primitives: a handful of binary searches per query array, never a loop over rows.
"""

from __future__ import annotations

import numpy as np

from analyzer.steps import NULL, KeyedIndex, Steps


class Scope:
    def __init__(self, s: Steps, name: str) -> None:
        self.s = s
        self.name = name
        self._indexes: dict[int, tuple[np.ndarray, KeyedIndex]] = {}
        if name == "device":
            self.keyed = s.device >= 0
            self.key = s.device
            self.shared = True
        elif name == "error_id":
            self.keyed = s.has_eid
            self.key = s.eid
            self.shared = False
        else:
            self.keyed = np.ones(s.n, dtype=bool)
            self.key = np.zeros(s.n, dtype=np.int64)
            self.shared = False

    def _index(self, mask: np.ndarray) -> KeyedIndex:
        """The keyed index of `mask` rows, built once per mask (a form asks it twice)."""
        hit = self._indexes.get(id(mask))
        if hit is None or hit[0] is not mask:
            hit = (mask, KeyedIndex(self.s, mask & self.keyed, self.key))
            self._indexes[id(mask)] = hit
        return hit[1]

    def prev(self, mask: np.ndarray, rows: np.ndarray, key: np.ndarray | None = None) -> np.ndarray:
        """Last `mask` row strictly before each of `rows` in its scope (key of the row, or
        `key`), -1 if none."""
        s = self.s
        if self.name == "vm":
            return s.prev(mask, rows)
        k = self.key[rows] if key is None else key
        valid = np.ones(len(rows), dtype=bool) if key is not None else self.keyed[rows]
        out = self._index(mask).last_before(s.vm[rows], k, rows, valid)
        if self.shared:
            out = np.maximum(out, s.prev(mask & ~self.keyed, rows))
        return out

    def next(self, mask: np.ndarray, rows: np.ndarray, key: np.ndarray | None = None) -> np.ndarray:
        """First `mask` row strictly after each of `rows` in its scope, -1 if none."""
        s = self.s
        if self.name == "vm":
            return s.next(mask, rows)
        k = self.key[rows] if key is None else key
        valid = np.ones(len(rows), dtype=bool) if key is not None else self.keyed[rows]
        out = self._index(mask).first_after(s.vm[rows], k, rows, valid)
        if self.shared:
            other = s.next(mask & ~self.keyed, rows)
            out = np.where((out < 0) | ((other >= 0) & (other < out)), other, out)
        return out

    def anchors(self, mask: np.ndarray) -> np.ndarray:
        """The rows a form quantifies over: `mask` rows that carry the scope's key."""
        return np.flatnonzero(mask & self.keyed)

    def expand(self, rows: np.ndarray, keyed_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each of `rows`, once per scope key of its VM among the `keyed_mask` rows when it is
        VM-wide (device scope), else with its own key: (rows, keys)."""
        s = self.s
        if not self.shared:
            keep = rows[self.keyed[rows]]
            return keep, self.key[keep]
        own = self.keyed[rows]
        keyed_rows, wide = rows[own], rows[~own]
        marked = np.flatnonzero(keyed_mask & self.keyed)
        width = np.int64(max(len(s.device_names), 1) + 1)
        pairs = np.unique(s.vm[marked].astype(np.int64) * width + self.key[marked])
        pvm = pairs // width
        lo = np.searchsorted(pvm, s.vm[wide], side="left")
        hi = np.searchsorted(pvm, s.vm[wide], side="right")
        counts = hi - lo
        rep = np.repeat(wide, counts)
        offs = np.arange(len(rep)) - np.repeat(np.cumsum(counts) - counts, counts)
        keys = pairs[np.repeat(lo, counts) + offs] % width if len(rep) else np.zeros(0, dtype=np.int64)
        all_rows = np.concatenate([keyed_rows, rep])
        all_keys = np.concatenate([self.key[keyed_rows], keys])
        order = np.lexsort((all_keys, all_rows))
        return all_rows[order], all_keys[order]


def none(n: int) -> np.ndarray:
    return np.full(n, NULL, dtype=np.int64)
