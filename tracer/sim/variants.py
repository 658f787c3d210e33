"""The error path and `cont`, per variant: the one place where the variants differ from `fixed`.

The error path of action `stop` is a sequence of *units*. A unit runs atomically; between two
units the scheduler may run any other thread (the main loop, management, other iothreads), which
is how the racy variants really race. Steps (names of :mod:`tracer.sim.error_path` primitives):

- ``iostatus_set``   set the device's iostatus (sticky) and record it
- ``vmstop_prepare`` take ``vmstop_lock`` (the unit waits for it first) and record it
- ``event``          emit BLOCK_IO_ERROR
- ``vmstop_request`` store the request in the single slot, release ``vmstop_lock`` if held,
  wake the main loop
- ``vm_stop``        stop the VM synchronously on the failing thread (pre-2bd3bce8 QEMU)

`fixed` is QEMU after 2bd3bce8 (``blk_error_action``). In `fixed`, ``iostatus_set`` and
``vmstop_prepare`` form one unit: in QEMU they are a few instructions apart, and keeping them
together is what lets `cont` (which resets the iostatus and then takes the lock) never lose an
iostatus of an error that is about to stop the VM (see the notes in the README of traces/).

`cont` differs by three switches (QEMU's ``qmp_cont`` + ``vm_start`` / ``vm_prepare_start``).

`qom-path-swap` differs in the event's data only (QEMU 9.2.0's swapped ``device`` /
``qom-path``); its ground truth names the warning rule ``qom-path-swapped``.

`Variant.breaks` lists every rule a variant was seen to break over thousands of racy runs, its
own guarantee first. Some are second-order: in `sync-stop` the failing thread waits for the BQL
between the event and its ``vm_stop``, so a `stop` + `cont` can slip in (a RESUME between the
event and its STOP); in `request-first` nothing holds ``vmstop_lock``, so `cont` can reset the
iostatus between ``iostatus_set`` and the event (query-matches-*).
"""

from __future__ import annotations

from dataclasses import dataclass

#: The steps of one unit of the stop path: they run atomically, in this order.
AtomicSteps = tuple[str, ...]


@dataclass(frozen=True)
class ContBehaviour:
    """What `cont` does (QEMU >= 3.0 when all are True)."""

    #: qmp_cont resets the iostatus of every device before vm_start.
    reset_iostatus: bool = True
    #: vm_start meeting a pending request while running emits the STOP/RESUME pair (74892d24).
    stop_resume_pair: bool = True
    #: RESUME is emitted before the run state changes and the parked requests are retried
    #: (f056158d69); otherwise after them.
    resume_before_retry: bool = True


@dataclass(frozen=True)
class Variant:
    name: str
    #: Units of the error path for action `stop`, in order.
    stop_path: tuple[AtomicSteps, ...]
    cont: ContBehaviour
    #: What it reproduces, and the rules it can break (docs/rules.md ids).
    description: str
    breaks: tuple[str, ...]
    #: QEMU 9.2.0: BLOCK_IO_ERROR carries the QOM path in `device` and the drive name in
    #: `qom-path` (fixed in 10.0 by 107c551de0), and is throttled by that drive name.
    swap_qom_path: bool = False
    #: The one QEMU release (config `qemu`) the variant exists in; None: any.
    only_qemu: str | None = None

    @property
    def default_qemu(self) -> str:
        """The `qemu` setting to run the variant with when none is asked for."""
        return self.only_qemu or "7.2"


FIXED_STOP_PATH: tuple[AtomicSteps, ...] = (
    ("iostatus_set", "vmstop_prepare"),
    ("event",),
    ("vmstop_request",),
)
FIXED_CONT = ContBehaviour()

VARIANT_TABLE: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            "fixed",
            FIXED_STOP_PATH,
            FIXED_CONT,
            "QEMU after 2bd3bce8 and f056158d69: iostatus, prepare, event, request; "
            "the main loop stops the VM",
            (),
        ),
        Variant(
            "sync-stop",
            (("event",), ("vm_stop",), ("iostatus_set",)),
            FIXED_CONT,
            "QEMU before 2bd3bce8: event, then vm_stop on the failing thread itself, then iostatus",
            ("iostatus-before-event", "iostatus-before-stop", "vm-stop-thread",
             "query-matches-events", "query-matches-runstate", "resume-before-retry-error"),
        ),
        Variant(
            "event-first",
            (("vmstop_prepare",), ("event",), ("iostatus_set",), ("vmstop_request",)),
            FIXED_CONT,
            "BLOCK_IO_ERROR emitted before the iostatus is set",
            ("iostatus-before-event", "query-matches-events"),
        ),
        Variant(
            "request-first",
            (("iostatus_set",), ("vmstop_request",), ("event",)),
            FIXED_CONT,
            "stop requested before the event, without the prepare lock: STOP can precede "
            "BLOCK_IO_ERROR",
            ("event-before-stop", "stop-follows-error", "query-matches-events",
             "query-matches-runstate"),
        ),
        Variant(
            "stop-before-iostatus",
            (("vmstop_prepare",), ("event",), ("vmstop_request",), ("iostatus_set",)),
            FIXED_CONT,
            "stop requested before the iostatus is set: the VM can be in io-error with every "
            "iostatus ok",
            ("iostatus-before-event", "iostatus-before-stop", "query-matches-events",
             "query-matches-runstate"),
        ),
        Variant(
            "lost-stop",
            FIXED_STOP_PATH,
            ContBehaviour(stop_resume_pair=False),
            "cont consuming a pending request while running drops it without STOP/RESUME",
            ("stop-follows-error",),
        ),
        Variant(
            "no-reset",
            FIXED_STOP_PATH,
            ContBehaviour(reset_iostatus=False),
            "cont leaves the iostatus set",
            ("iostatus-reset-on-cont",),
        ),
        Variant(
            "resume-late",
            FIXED_STOP_PATH,
            ContBehaviour(resume_before_retry=False),
            "QEMU 2.1 to 2.12 (fixed by f056158d69): cont retries the parked requests before "
            "emitting RESUME",
            ("resume-before-retry-error",),
        ),
        Variant(
            "qom-path-swap",
            FIXED_STOP_PATH,
            FIXED_CONT,
            "QEMU 9.2.0 (fixed in 10.0 by 107c551de0): BLOCK_IO_ERROR's device and qom-path "
            "swapped, so the throttle is per drive name (with -blockdev one bucket per VM)",
            ("qom-path-swapped",),
            swap_qom_path=True,
            only_qemu="9.2",
        ),
    )
}

VARIANTS: tuple[str, ...] = tuple(VARIANT_TABLE)


def get_variant(name: str) -> Variant:
    return VARIANT_TABLE[name]
