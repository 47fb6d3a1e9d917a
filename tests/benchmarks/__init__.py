"""Benchmarks: scripts run by hand (``python -m tests.benchmarks.bench_attacks``), not tests.

Their file names start with ``bench_``, so pytest does not collect them.
"""
