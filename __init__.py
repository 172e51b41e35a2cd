"""nw2: curate physiological signals into a chaos-balanced Parquet corpus and pretrain a world model on it.

Installed, the repository root is this package: ``nw2.cli`` (``cli.py``), ``nw2.pipeline`` (``pipeline/``),
``nw2.model`` (``model/``); the mapping lives in ``pyproject.toml``. ``docs/architecture.md`` draws the layers.
"""

__version__ = "0.1.0"
