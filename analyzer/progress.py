"""The one shape of a progress report: ``progress(done, total)``.

Long work (checking, importing, building a report) takes an optional callback and calls it
now and then with how much is done and, when known, the total (``None`` while unknown). The
units are the caller's: rows for a check, bytes for an import. The library never draws
anything; the command line turns the calls into a progress bar on a terminal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

ProgressCallback: TypeAlias = Callable[[int, int | None], None]
