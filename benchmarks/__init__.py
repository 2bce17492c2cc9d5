"""Benchmarks: every performance figure the project claims is printed by these.

Run ``python -m benchmarks`` for all suites or ``python -m benchmarks plugin``
(``sysinv``, ``ansible``) for one.  Each suite is a module here with a
``run() -> list[Result]`` function; figures are measured, never asserted.
"""
