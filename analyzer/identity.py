"""A VM's identity: (run, host, vm), as one opaque string *key*.

VM names repeat across a fleet: ``vm0`` runs on many hosts, in many runs, on many days. A VM is
therefore identified by (run, host, vm) everywhere the analyzer groups steps by VM: planning
(`analyzer.trace.files.RowGroup.vms`, `analyzer.trace.Unit.vms`), decoding (the unit's VM codes),
the rules' batches (`analyzer.steps.Steps.vm_names`), findings, episodes and report statistics.
Where the host and the run come from is `analyzer.trace`'s business (a `host` / `run` column or
hive partition directory, a recorder directory); this module only owns the key.

Internally the identity travels as one string, so that every structure that was keyed by the
VM name keeps working unchanged: the key of a VM with no host and no run *is* its name (every
trace without hosts or runs reads and prints byte for byte as before), any other key is a
composite that

* can never equal a VM name: it starts with a lone surrogate (U+DFFF), which no text decoded
  from UTF-8 holds (Parquet strings are checked to be UTF-8, partition directories too), so a
  composite that leaked into an output would fail loudly rather than print something wrong;
* is injective for any characters in the parts (NUL is escaped as NUL U+0001, parts are joined
  by NUL NUL);
* sorts as (run, host, vm) among composites, deterministically.

Null and "" mean the same: no host, no run. `split` is the inverse of `make`; `label` words a
key for messages (never a key itself: that may hold the surrogate).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from tracer.errors import InputError

_MARK = "\udfff"
_SEP = "\x00\x00"


class Identity(NamedTuple):
    """A VM's identity, parts as shown (None: not known / not given)."""

    vm: str
    host: str | None = None
    run: str | None = None


def _escape(part: str) -> str:
    return part.replace("\x00", "\x00\x01")


def _unescape(part: str) -> str:
    return part.replace("\x00\x01", "\x00")


def make(vm: str, host: str | None = None, run: str | None = None) -> str:
    """The key of VM `vm` on `host` in `run` (None or "" for either: none)."""
    if not host and not run:
        return vm
    return _MARK + _SEP.join((_escape(run or ""), _escape(host or ""), _escape(vm)))


def is_composite(key: str) -> bool:
    """Whether `key` names a host or a run (is not a bare VM name)."""
    return key.startswith(_MARK)


def split(key: str) -> Identity:
    """(vm, host, run) of a key made by `make`."""
    if not key.startswith(_MARK):
        return Identity(key)
    run, host, vm = key[1:].split(_SEP)
    return Identity(_unescape(vm), _unescape(host) or None, _unescape(run) or None)


def label(key: str) -> str:
    """A key in words, for messages: ``vm0`` or ``vm0 (host h1, run r2)``."""
    ident = split(key)
    extra = [f"{k} {v}" for k, v in (("host", ident.host), ("run", ident.run)) if v]
    return ident.vm + (f" ({', '.join(extra)})" if extra else "")


def display(vm: str, host: str | None = None, run: str | None = None) -> str:
    """The `label` of (vm, host, run): how a report names a VM in its per-VM tables (the VM's
    name alone when the trace names no host or run for it)."""
    return label(make(vm, host, run))


def resolve(keys: Sequence[str], vm: str, host: str | None = None, run: str | None = None) -> str:
    """The one key of `keys` for VM `vm` (on `host`, in `run` when given), or an `InputError`
    saying that no VM matches, or that several do (listing them: give a host or a run)."""
    found = [k for k in keys if _matches(split(k), vm, host, run)]
    if len(found) == 1:
        return found[0]
    if not found:
        wanted = display(vm, host, run)
        raise InputError(f"no VM named {wanted!r} in the trace (VMs: {', '.join(label(k) for k in keys[:10])}"
                         f"{', ...' if len(keys) > 10 else ''})")
    choices = "; ".join(label(k) for k in sorted(found, key=sort_key)[:10])
    more = f" and {len(found) - 10} more" if len(found) > 10 else ""
    need = "--host" if host is None and len({split(k).host for k in found}) > 1 else "--run"
    raise InputError(f"VM {vm!r} is in the trace {len(found)} times: {choices}{more}; choose one "
                     f"with {need}")


def _matches(ident: Identity, vm: str, host: str | None, run: str | None) -> bool:
    return (ident.vm == vm and (host is None or (ident.host or "") == host)
            and (run is None or (ident.run or "") == run))


def sort_key(key: str) -> tuple[str, str, str]:
    """(run, host, vm) of a key, "" for none: the order of identities in every output."""
    ident = split(key)
    return ident.run or "", ident.host or "", ident.vm


__all__ = ["Identity", "display", "is_composite", "label", "make", "resolve", "sort_key", "split"]
