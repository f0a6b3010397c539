"""ringex's processes: one package per process, each an edge (``main.py``) around pure logic.

Process packages never import each other; what they share lives in ``procs.common``.
"""
