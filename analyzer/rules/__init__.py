"""The rules: one pure function per rule (or per pass deciding a few) over a batch of whole VMs
(`analyzer.steps.Steps`), each declared once beside its function (`rule`), collected in a fixed
order by the catalogue (`catalogue`). The rule modules:

* `ordering`             - iostatus-before-event, iostatus-before-stop, event-before-stop,
  stop-follows-error, stop-pending-at-end, resume-before-retry-error (I1-I4, I6)
* `vm_stop_thread`       - vm-stop-thread (I5)
* `query_replies`        - query-matches-events, query-matches-runstate, iostatus-reset-on-cont
* `action_matches_policy` - action-matches-policy
* `runstate_transition`  - runstate-transition
* `input_fidelity`       - event-names-unknown, qom-path-swapped
* `sources`              - sources-disagree, trace-lines-unknown (what a VM's inputs say against
  each other, what a trace log could not say)
* `cross_layer`          - libvirt-reports-io-error, libvirt-event-has-cause,
  libvirt-delivers-events (libvirt's view against QEMU's)
* `integrity_rules`      - seq-unique, ts-monotonic-per-thread, trace-truncated: declared here,
  decided while the trace is read, over every row, in `analyzer.trace`;
  worded as findings by `integrity`.

Shared pieces: `evidence` (verdict arrays to `Finding`s), `masks` (row masks several rules
use), `derived` (docs/rules.md §2: running-at, served-by). `docs/rules.md` §3 defines each
rule; the functions implement it literally.

The catalogue's public API is re-exported here.
"""

from __future__ import annotations

from analyzer.rules.catalogue import (
    INTEGRITY_RULES,
    RULE_IDS,
    RULES,
    applicable,
    columns_for,
    run,
    select,
)

__all__ = [
    "INTEGRITY_RULES",
    "RULES",
    "RULE_IDS",
    "applicable",
    "columns_for",
    "run",
    "select",
]
