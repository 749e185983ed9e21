"""Benchmarks of the hub (issue 7): ``python -m bench`` runs them all.

Every figure is measured against a baseline from the same run (a bare Flask
handler under the same gunicorn settings, a plain ``requests`` thread pool,
the same query on a smaller table), because the machine is small and shared
and absolute numbers move with whatever else is running.
"""
