"""``nw2 balance``: turn a window store with chaos metrics into a corpus balanced over dynamical regimes.

The modules, in the order the stage uses them:

- :mod:`pipeline.balance.space`: the metric columns of a store, read lazily with polars (never the
  signals), quantile-transformed per metric and optionally reduced with PCA to a few dimensions.
- :mod:`pipeline.balance.bins`: a quantile grid over those dimensions (cell ids, -1 for windows whose
  metrics are undefined) and the balance statistics of a cell occupancy (normalized entropy, fraction
  of cells kept, KL divergence to uniform, effective number of regimes).
- :mod:`pipeline.balance.strategies`: the seven selection strategies (``random``, ``stratified``,
  ``grid``, ``inverse``, ``temperature``, ``kmeans``, ``coverage``) behind one function, ``select``.
- :mod:`pipeline.balance.corpus`, :mod:`pipeline.balance.stage`, :mod:`pipeline.balance.report`: the
  corpus on disk, the stage that ties everything together, and its Markdown report.

Nothing is imported here, so importing one module does not pull in the others.
"""
