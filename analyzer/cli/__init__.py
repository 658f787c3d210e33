"""The `blkreplay` command line: a thin layer over the library API of `tracer` and `analyzer`.

It is the one layer that stands above both halves (it wires `record` to the simulator and
`check` to the analyzer); nothing in `tracer` or `analyzer` imports it.
"""

from analyzer.cli.app import app, main

__all__ = ["app", "main"]
