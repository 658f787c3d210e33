#!/bin/sh
# Regenerate the sample traces in traces/ from the scenarios in traces/scenarios/.
# Sim mode is deterministic: these commands give the same rows and truth.json on any machine
# (and the same bytes with the same pyarrow version). Run from anywhere:
#     traces/regenerate.sh            (uses `blkreplay` on PATH, or $BLKREPLAY)
set -eu
cd "$(dirname "$0")/.."
BLKREPLAY=${BLKREPLAY:-blkreplay}

# The trace the README's Quick start audits: fixed, 3 VMs, error/STOP/cont cycles, cont races.
"$BLKREPLAY" record -q --force -o traces/sample --scenario traces/scenarios/cont-race.toml --vms 3 --duration 0.015 --seed 1

# One trace per variant (seeds picked so that each shows the guarantees its defect breaks).
"$BLKREPLAY" record -q --force -o traces/fixed --scenario traces/scenarios/cont-race.toml --variant fixed --seed 1
"$BLKREPLAY" record -q --force -o traces/sync-stop --scenario traces/scenarios/cont-race.toml --variant sync-stop --seed 2
"$BLKREPLAY" record -q --force -o traces/event-first --scenario traces/scenarios/cont-race.toml --variant event-first --seed 1
"$BLKREPLAY" record -q --force -o traces/request-first --scenario traces/scenarios/cont-race.toml --variant request-first --seed 8
"$BLKREPLAY" record -q --force -o traces/stop-before-iostatus --scenario traces/scenarios/cont-race.toml --variant stop-before-iostatus --seed 49
"$BLKREPLAY" record -q --force -o traces/lost-stop --scenario traces/scenarios/cont-race.toml --variant lost-stop --seed 1
"$BLKREPLAY" record -q --force -o traces/no-reset --scenario traces/scenarios/cont-race.toml --variant no-reset --seed 1
"$BLKREPLAY" record -q --force -o traces/resume-late --scenario traces/scenarios/cont-race.toml --variant resume-late --seed 1

# QEMU >= 9.2 behaviour: throttled BLOCK_IO_ERROR (held, late, replaced), several iothreads per disk.
"$BLKREPLAY" record -q --force -o traces/qemu-10.0 --scenario traces/scenarios/qemu-10.0.toml --seed 1
"$BLKREPLAY" record -q --force -o traces/qom-path-swap --scenario traces/scenarios/qemu-9.2.0-libvirt.toml --seed 1
