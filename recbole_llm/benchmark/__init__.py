"""Benchmark comparison tables: suites, a resumable results store, paper-style tables, plots.

* :mod:`~recbole_llm.benchmark.suite`: suite YAML (``properties/benchmarks/*.yaml``),
  validation, expansion into runs keyed by the hash of their resolved config;
* :mod:`~recbole_llm.benchmark.store`: SQLite results store (resume, retry, concurrent runners);
* :mod:`~recbole_llm.benchmark.runner`: each run in a subprocess, progress bar with ETA;
* :mod:`~recbole_llm.benchmark.tables`: Markdown / LaTeX / CSV tables, efficiency table;
* :mod:`~recbole_llm.benchmark.plots`: grouped bar charts and ablation figures (PNG, SVG);
* :mod:`~recbole_llm.benchmark.stats`: the paired significance test and why it was chosen;
* :mod:`~recbole_llm.benchmark.cli`: ``recbole-llm benchmark``.

Submodules are imported on use; importing this package is cheap.
"""
