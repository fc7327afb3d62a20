"""Liaison's benchmarks: `make bench` (`python -m bench`).

Every target is a ratio of two figures measured side by side in one run on the
same machine (Liaison against a floor: a direct message, a minimal nio relay, an
empty database, a smaller load), because the machines this runs on are shared
and noisy. Nothing here is a test and nothing here runs in CI.
"""
