"""blkreplay's producer half: trace schema v1, the crash-safe recorder, and the instrumented
block dataplane (simulated and with real threads) that writes traces.

The analyzer may import :mod:`tracer.schema`, :mod:`tracer.errors` and :mod:`tracer.tracedir`
(the trace format), never the simulator.
"""

from tracer.errors import (
    BlkreplayError,
    CaptureError,
    ImportFormatError,
    InputError,
    ScenarioError,
    TraceFormatError,
    TraceSchemaError,
)
from tracer.schema import SCHEMA, SCHEMA_VERSION, conform, ensure_valid, validate

__version__ = "0.1.0"

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "BlkreplayError",
    "CaptureError",
    "ImportFormatError",
    "InputError",
    "ScenarioError",
    "TraceFormatError",
    "TraceSchemaError",
    "__version__",
    "conform",
    "ensure_valid",
    "validate",
]
