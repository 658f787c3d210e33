"""Which host each imported input belongs to: a fleet imported at once is one dataset.

VMs of different hosts may share a name (``vm-db`` on every hypervisor), so a VM is known by
(host, vm): inputs are grouped by host first, and the VMs of each host are merged as for a
single host (`vm_groups`, `merge`). A directory output of a fleet (VMs of more than one host,
or ``--host`` a pattern) holds ``host=H/vm=V/part-0.parquet`` (`output`); that of one host
keeps ``vm=V/part-0.parquet``.

Where the host comes from, first that applies:

1. ``--host``, given as a *pattern*, evaluated for each input's path as given:

   - ``{dir}`` the name of the directory holding the input, ``{dir2}`` the one above it, ...
     ``{dirN}``; ``{file}`` the input's file name; literal text around them is kept
     (``--host 'dc1-{dir}'``);
   - ``re:REGEX``: the first group of REGEX (or the group named ``host``) where it is first
     found in the path (``--host 're:/hosts/([^/]+)/'``);

   an input whose path gives no host (no such directory, no match, an empty name) is an
   InputError naming it; standard input has no path: it takes the host of the other rules.
2. ``--host NAME`` (no ``{`` and no ``re:``): every input's.
3. What the input says: a libvirt daemon log names its host at start-up
   (``info : hostname: NAME``, `libvirt_log`).
4. An input that names none (virsh events, a QMP transcript, a trace log) takes the host of
   the inputs *in the same directory* that name one, when they all name the same one; else
   the import's host, when all the others name the same one (one host's files, wherever they
   lie: they merge as without hosts); else the host of the only inputs that hold a VM of a
   name it names (virsh events name their domain); else it has none.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from analyzer.importers.rows import ParsedInput
from tracer.errors import InputError

_FIELD = re.compile(r"\{(dir\d*|file)\}")


def is_pattern(host: str | None) -> bool:
    """Whether `--host` is a pattern evaluated per input (``{dir}``, ``re:...``)."""
    return host is not None and (host.startswith("re:") or _FIELD.search(host) is not None)


def check_pattern(host: str | None) -> None:
    """InputError for a pattern that cannot work (a bad regex, an unknown ``{field}``)."""
    if host is None:
        return
    if host.startswith("re:"):
        try:
            regex = re.compile(host[3:])
        except re.error as exc:
            raise InputError(f"--host {host!r}: not a regular expression ({exc})") from None
        if not regex.groups:
            raise InputError(f"--host {host!r}: the regular expression needs a group: the host")
        return
    unknown = [f for f in re.findall(r"\{([^}]*)\}", host) if not _FIELD.fullmatch("{" + f + "}")]
    if unknown:
        raise InputError(f"--host {host!r}: unknown field {{{unknown[0]}}} (known: {{dir}}, {{dirN}}, {{file}})")


def host_from_path(pattern: str, path: str) -> str:
    """The host `pattern` gives for the input `path` (see the module doc)."""
    if pattern.startswith("re:"):
        m = re.search(pattern[3:], path)
        host = None
        if m is not None:
            host = m.group("host") if "host" in m.re.groupindex else m.group(1)
        if not host:
            raise InputError(f"--host {pattern!r} gives no host for this input", path=path)
        return host
    parts = os.path.normpath(os.path.abspath(path)).split(os.sep)

    def field(m: re.Match[str]) -> str:
        name = m.group(1)
        if name == "file":
            return parts[-1]
        n = int(name[3:] or 1)
        if n < 1 or n >= len(parts) - 1 or not parts[-1 - n]:
            raise InputError(f"--host {pattern!r}: the input has no {{{name}}} directory", path=path)
        return parts[-1 - n]

    return _FIELD.sub(field, pattern)


def assign_hosts(
    parsed: Sequence[ParsedInput], host: str | None, paths: Sequence[str | None],
) -> list[str | None]:
    """Set the host of every part of `parsed` (see the module doc); the host of each input.
    `paths`: each input's path as given (None: standard input)."""
    if host is not None and not is_pattern(host):
        chosen: list[str | None] = [host] * len(parsed)
    else:
        chosen = [
            host_from_path(host, path) if host is not None and path is not None else None
            for path in paths
        ]
        own = [next((part.host for part in p.parts if part.host), None) for p in parsed]
        chosen = [c or o for c, o in zip(chosen, own, strict=True)]
        beside: dict[str, set[str]] = {}
        where = [os.path.dirname(os.path.abspath(path)) if path is not None else None for path in paths]
        for d, h in zip(where, chosen, strict=True):
            if h is not None and d is not None:
                beside.setdefault(d, set()).add(h)
        known = {h for h in chosen if h is not None}
        hosts_of_vm: dict[str, set[str]] = {}
        for p, h in zip(parsed, chosen, strict=True):
            if h is not None:
                for part in p.parts:
                    if part.vm is not None:
                        hosts_of_vm.setdefault(part.vm, set()).add(h)
        for i, d in enumerate(where):
            if chosen[i] is not None:
                continue
            hosts = beside.get(d, set()) if d is not None else set()
            if len(hosts) != 1:
                hosts = known
            if len(hosts) != 1:
                names = {part.vm for part in parsed[i].parts if part.vm is not None}
                hosts = set().union(*(hosts_of_vm.get(n, set()) for n in names)) if names else set()
            if len(hosts) == 1:
                chosen[i] = next(iter(hosts))
    for p, h in zip(parsed, chosen, strict=True):
        for part in p.parts:
            part.host = h
    return chosen
