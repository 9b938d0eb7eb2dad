"""The benchmark: `make bench` (= `python -m bench`).

It compares this platform with bare Celery on the same PostgreSQL, Redis, worker pool and
Celery settings, and writes `bench/results/latest.json`. Each measurement is one module
holding a `measure(bench) -> Results` function, listed once in `bench.measurements`;
`docs/benchmarks.md` says what each one measures and how.
"""
