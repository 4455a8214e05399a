"""paitune's benchmarks: each module is runnable alone (``python -m bench.<name> [--quick]``).

``python -m bench.run_all`` (``make bench``) runs every one of them. Each prints a table and
writes ``bench/results/<name>.json`` holding the machine facts, the settings and the rows.
``bench.common`` has the shared helpers (timing, machine facts, JSON, tables, the CLI flags).
"""
