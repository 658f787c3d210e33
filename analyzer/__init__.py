"""blkreplay's analysis half: load traces, replay them deterministically, check the ordering
guarantees of QEMU's block I/O error path, and render audit reports.

The public surface (`load`, `replay`, `check`) is what the command line wraps; a notebook user
calls it directly.
"""
