"""Speed and memory benchmarks (issue #4). ``python -m benchmarks`` runs them all; each module also
runs alone (``python -m benchmarks.bench_search --sizes 10000``). Results go in BENCHMARKS.md.

Every figure is printed beside its baseline, measured in the same process, and beside the load
the rest of the machine put on the CPU while it was measured (this is a shared 2-core machine).
"""
