"""Row masks that several rule modules ask for, written once.

Each is a whole-column expression over a `Steps` batch (docs/rules.md's notation: BIE(stop) is a
BLOCK_IO_ERROR event with action stop).
"""

from __future__ import annotations

import numpy as np

from analyzer.steps import ACT, IOS, RS, Steps


def bie_stop(s: Steps) -> np.ndarray:
    """Mask of the BLOCK_IO_ERROR events with action stop: BIE(stop)."""
    return s.event("BLOCK_IO_ERROR") & (s.action == ACT["stop"])


def enters_io_error(s: Steps) -> np.ndarray:
    """Mask of the `runstate` rows entering io-error (from any other state)."""
    return s.is_kind("runstate") & (s.runstate == RS["io-error"]) & (s.prev_runstate != RS["io-error"])


def not_ok(values: np.ndarray) -> np.ndarray:
    """Which io-status codes in `values` say a device failed (failed or nospace)."""
    return (values == IOS["failed"]) | (values == IOS["nospace"])
