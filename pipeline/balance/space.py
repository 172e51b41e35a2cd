"""The feature space a corpus is balanced in: metric columns of a store, quantile-transformed, PCA.

Reading (:func:`scan_rows`, :func:`load_rows`) touches only the row columns and the chosen metric
columns of the parts, never ``samples``: polars scans the Parquet files lazily and projects those
columns, so ten million windows cost a few hundred bytes each in memory, not their signals.

The metrics live in very different units (1/s, bits, dimensions) and have heavy tails, so each is
replaced by its quantile (:func:`quantile_transform`): what counts is where a window stands among
the others, not how far an outlier lies. PCA then reduces the metrics, which are strongly
correlated (the entropies and fractal dimensions all measure roughness), to a few uncorrelated
directions; their scores are quantile-transformed once more, so every dimension is uniform on
[0, 1] and a grid with equal-count bins can be cut on them (:mod:`pipeline.balance.bins`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from nw2.core.errors import Nw2Error
from nw2.artifacts.store import WindowStore

#: Metrics used for balancing unless the spec or ``--metrics`` says otherwise: divergence rate,
#: attractor dimension, two entropies (regularity, ordinal diversity), scaling and roughness.
DEFAULT_METRICS = ("largest_lyapunov", "correlation_dimension", "sample_entropy", "permutation_entropy",
                   "dfa", "higuchi_fd")
#: Columns of every row besides its metrics.
ROW_COLUMNS = ("window_id", "group_id", "dataset", "subject", "modality", "split")
#: The values of :attr:`FeatureSpec.nan_policy`.
NAN_POLICIES = ("own_bin", "exclude")
#: The values of :attr:`FeatureSpec.scale`.
SCALES = ("robust", "quantile")
#: Robust z-scores are clipped to this many IQRs, so one diverged estimate cannot dominate a distance.
ROBUST_CLIP = 5.0
#: Where an undefined metric sits in the robust space (``nan_policy: own_bin``): one IQR below the clip.
UNDEFINED_AT = -ROBUST_CLIP - 1.0

#: Rows per chunk where a pass over all rows would otherwise copy the whole matrix.
_CHUNK = 1 << 20


# -- reading ---------------------------------------------------------------------------------------
def _known_metrics() -> tuple[str, ...]:
    from nw2.pipeline.metrics.suite import METRICS

    return tuple(METRICS)


def _footers(store: WindowStore, parts: list[str]) -> tuple[list[int], list[set[str]]]:
    rows, columns = [], []
    for rel in parts:
        with store.open_file(rel) as fh:
            meta = pq.read_metadata(fh)
        rows.append(meta.num_rows)
        columns.append(set(meta.schema.to_arrow_schema().names))
    return rows, columns


def store_columns(store_url: str) -> tuple[tuple[str, ...], set[str]]:
    """``(metrics, everywhere)`` from one pass over the part footers: the metric columns some part holds,
    in ``METRICS`` order (the default balancing space), and the columns every part holds.

    A metric only some parts hold is listed among ``metrics``, so that reading it names the parts (a
    metrics run that failed on them) instead of balancing silently without it."""
    store = WindowStore.open(store_url)
    parts = store.parts()
    if not parts:
        return (), set()
    columns = _footers(store, parts)[1]
    anywhere = set.union(*columns)
    return tuple(m for m in _known_metrics() if m in anywhere), set.intersection(*columns)


def scan_rows(store_url: str, metrics: Sequence[str], row_columns: Sequence[str] = ROW_COLUMNS) -> pl.LazyFrame:
    """The lazy frame behind :func:`load_rows`, after the same checks; ``.explain()`` shows which
    columns of the parts it reads (``PROJECT n/N COLUMNS``).

    Local stores are scanned by polars directly, after :func:`verify_columns` has checked the pages of those
    columns; any other fsspec URL is read part by part with pyarrow (the same columns only, verified as they
    are read) and handed to polars.
    """
    metrics = list(metrics)
    if not metrics:
        raise Nw2Error(f"{store_url}: no metrics chosen to balance on")
    store = WindowStore.open(store_url)
    parts = store.parts()
    counts, columns = _footers(store, parts)
    known = _known_metrics()
    everywhere = set.intersection(*columns)
    held = [m for m in known if m in everywhere]
    if not any(m in cols for cols in columns for m in known):
        raise Nw2Error(f"{store_url}: the store has no metric columns; run nw2 metrics {store_url} first")
    for name in metrics:
        if name in everywhere and name in known:
            continue
        lacking = [rel for rel, cols in zip(parts, columns) if name not in cols]
        if name in known and len(lacking) < len(parts):
            raise Nw2Error(f"{store_url}: metric {name} missing from {len(lacking)} of {len(parts)} parts "
                           f"({lacking[0]}, ...); rerun nw2 metrics {store_url}")
        raise Nw2Error(f"{store_url}: metric {name} not in the store; it holds: {', '.join(held) or 'none'}")
    row_columns = list(row_columns)
    for col in row_columns:
        if col not in everywhere:
            raise Nw2Error(f"{store_url}: column {col} missing from the parts; not a window store?")

    wanted = [*row_columns, *metrics]
    if store.is_local:
        verify_columns(store, parts, wanted)
        frame = pl.scan_parquet([store.path(rel) for rel in parts]).select(wanted)
    else:
        frame = pl.concat([pl.from_arrow(store.read_table(rel, columns=wanted)).lazy() for rel in parts])
    part_codes = np.repeat(np.arange(len(parts), dtype=np.uint32), counts)
    starts = np.cumsum([0, *counts[:-1]], dtype=np.int64)
    row = np.arange(part_codes.size, dtype=np.int64) - np.repeat(starts, counts)
    index = pl.DataFrame({
        # Gathering a string view array copies 16-byte views, not the path bytes, per row.
        "part": pl.Series("part", parts, pl.String).gather(part_codes),
        "row": pl.Series("row", row, pl.Int64),
    }).lazy()
    # float32, as the metrics stage writes them: a float64 copy would double the largest columns
    metric_exprs = [pl.col(m).cast(pl.Float32).fill_nan(None) for m in metrics]
    string_exprs = [pl.col(c).cast(pl.String) for c in row_columns]
    return pl.concat([index, frame.select(*string_exprs, *metric_exprs)], how="horizontal")


def verify_columns(store: WindowStore, parts: list[str], columns: Sequence[str]) -> None:
    """Every page of ``columns`` in every part of a local store checked against its checksum (pyarrow decodes them
    and keeps nothing), parts on threads, one per core: polars, which reads them next, does not verify, and a flipped bit in
    a metric would be balanced on as a wrong value. :class:`~nw2.core.errors.ArtifactError` naming the first
    corrupt part in store order."""
    from nw2.core.parquet import CheckedFile

    def one(rel: str) -> None:  # by its path (the store is local): through a Python file object, twice as slow
        CheckedFile(store.path(rel), f"{store.url}/{rel}").verify(list(columns))

    with ThreadPoolExecutor(max(1, min(len(parts), os.cpu_count() or 1))) as pool:
        list(pool.map(one, parts))  # raises the first part's error in part order
    pa.default_memory_pool().release_unused()  # what the decoding held, before polars reads the same columns


def load_rows(store_url: str, metrics: Sequence[str], columns: Sequence[str] = ROW_COLUMNS) -> pl.DataFrame:
    """Every row of a store with its metrics, in store order, reading only the columns needed.

    Parameters
    ----------
    store_url : str
        A window store (local path or fsspec URL) on which ``nw2 metrics`` has run.
    metrics : sequence of str
        Metric columns to read (names as in ``pipeline.metrics.METRICS``).
    columns : sequence of str
        The row columns to read besides ``part`` and ``row`` (default :data:`ROW_COLUMNS`); the
        balance stage reads only the three it uses, which at ten million rows saves about 1.5 GB
        of window ids, group ids and subjects.

    Returns
    -------
    polars.DataFrame
        One row per store row, in store order (parts sorted by name, rows in part order), with
        ``part`` (string, the part's relative path ``data/part-xxx.parquet``), ``row`` (int64, the
        row's index within its part), the :data:`ROW_COLUMNS` (strings) and the metric columns
        (float32 as stored, null where undefined; a stored NaN also reads as null).

    Raises
    ------
    Nw2Error
        One line naming the store: not a window store, an empty store (no parts), a store without
        metric columns ("run nw2 metrics STORE first"), a metric not in the store (with the metrics it
        holds), or a metric some parts lack (a metrics run that failed on them).
    """
    return scan_rows(store_url, metrics, columns).collect()


# -- the feature space -----------------------------------------------------------------------------
def float_values(x) -> np.ndarray:
    """``x`` as a floating array: float32 and float64 stay as they are (the balance stage keeps its metric
    matrix float32, and every transform widens one column at a time); anything else becomes float64."""
    x = np.asarray(x)
    return x if x.dtype.kind == "f" else x.astype(np.float64)


@dataclass(frozen=True)
class FeatureSpec:
    """How windows are placed in the balancing space.

    Attributes
    ----------
    metrics : tuple of str
        Metric columns to use (a list is accepted and stored as a tuple).
    pca : int or None
        Reduce the quantile-transformed metrics to this many principal components (at most the number
        of metrics: a larger value keeps them all, rotated); ``None`` keeps the metrics themselves.
    bins : int
        Quantile bins per dimension of the grid (``bins ** dims`` cells).
    nan_policy : {"own_bin", "exclude"}
        Windows with an undefined chosen metric: in a cell of their own (id -1), or left out of the
        candidates (the caller drops them; :func:`build_features` marks them in ``defined``).
    scale : {"quantile", "robust"}
        How each metric is put on a common scale: its quantile (:func:`quantile_transform`, uniform on
        [0, 1]), or its robust z-score (:func:`robust_scale`: median and IQR, clipped at
        :data:`ROBUST_CLIP`), which keeps distances: a window far from the others stays far.
    """

    metrics: tuple[str, ...] = DEFAULT_METRICS
    pca: int | None = 3
    bins: int = 5
    nan_policy: str = "own_bin"
    scale: str = "quantile"

    def __post_init__(self) -> None:
        metrics = (self.metrics,) if isinstance(self.metrics, str) else tuple(self.metrics)
        object.__setattr__(self, "metrics", metrics)
        if not metrics or not all(isinstance(m, str) and m for m in metrics):
            raise ValueError(f"metrics must be a non-empty list of metric names, got {list(metrics)}")
        if len(set(metrics)) != len(metrics):
            raise ValueError(f"metrics holds a name twice: {list(metrics)}")
        if self.pca is not None and (isinstance(self.pca, bool) or not isinstance(self.pca, (int, np.integer))
                                     or self.pca < 1):
            raise ValueError(f"pca must be a positive number of dimensions or None, got {self.pca!r}")
        if isinstance(self.bins, bool) or not isinstance(self.bins, (int, np.integer)) or self.bins < 1:
            raise ValueError(f"bins must be a positive integer, got {self.bins!r}")
        if self.nan_policy not in NAN_POLICIES:
            raise ValueError(f"nan_policy must be one of {', '.join(NAN_POLICIES)}, got {self.nan_policy!r}")
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {self.scale!r}")


@dataclass
class Features:
    """Windows placed in the balancing space.

    Attributes
    ----------
    z : ndarray, shape (n, k)
        float64 coordinates in [0, 1] per dimension (quantiles of the metrics, or of their PCA scores);
        NaN on every dimension of a row that is not ``defined``.
    defined : ndarray, shape (n,)
        bool: all chosen metrics are defined (finite) on the row.
    components : ndarray, shape (k, d), or None
        PCA loadings on the quantile-transformed metrics (unit rows, the largest absolute loading of each
        positive), or ``None`` without PCA.
    explained : ndarray, shape (k,), or None
        Explained variance ratio of each component, descending.
    """

    z: np.ndarray
    defined: np.ndarray
    components: np.ndarray | None
    explained: np.ndarray | None

    @property
    def dims(self) -> int:
        return self.z.shape[1]


def quantile_transform(x: np.ndarray, fit: np.ndarray | None = None) -> np.ndarray:
    r"""Quantiles (mid-ranks) of the finite values of ``x``; NaN elsewhere.

    .. math:: q_i = \frac{r_i - 1/2}{m}

    where :math:`m` is the number of finite values and :math:`r_i \in [1, m]` the average rank of
    :math:`x_i` among them (tied values share the mean of their ranks, so ties get equal quantiles).
    This is the Hazen plotting position: values lie in :math:`[\frac{1}{2m}, 1 - \frac{1}{2m}]`, their
    mean is exactly 1/2, and reversing the order of the data maps :math:`q` to :math:`1 - q`. Any
    strictly increasing transform of ``x`` gives the same quantiles.

    Parameters
    ----------
    x : array_like, shape (n,)
        Values; NaN (or inf) marks undefined ones.
    fit : ndarray of bool, shape (n,), optional
        Rows that define the ranking; other rows get NaN. Default: the finite values.
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.full(x.shape, np.nan)
    mask = np.isfinite(x) if fit is None else (np.asarray(fit, bool) & np.isfinite(x))
    values = x[mask]
    m = values.size
    if m == 0:
        return out
    order = np.argsort(values)           # tied values get their mean rank, so the sort need not be stable
    ordered = values[order]
    # Tie groups: runs of equal values in sorted order, average rank (start + end + 1) / 2, 1-based.
    new = np.empty(m, bool)
    new[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], m)
    group_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(m)
    ranks[order] = np.repeat(group_rank, ends - starts)
    out[mask] = (ranks - 0.5) / m
    return out


def robust_scale(x: np.ndarray, fit: np.ndarray | None = None) -> tuple[np.ndarray, float, float]:
    r"""Robust z-scores :math:`z_i = \mathrm{clip}((x_i - \mathrm{med}) / \mathrm{IQR}, -c, c)`, NaN where
    undefined, with ``(z, median, IQR)``.

    Median and interquartile range (``np.quantile``'s linear interpolation) come from the finite values
    of the rows ``fit`` (default: all finite values), and every finite value is scaled with them; an
    IQR of 0 is replaced by 1, so a nearly
    constant metric keeps its raw offsets instead of exploding. :math:`c` is :data:`ROBUST_CLIP`.
    """
    x = np.asarray(x, dtype=np.float64)
    ok = np.isfinite(x) if fit is None else (np.asarray(fit, bool) & np.isfinite(x))
    if not ok.any():
        return np.full(x.shape, np.nan), float("nan"), float("nan")
    q25, med, q75 = np.quantile(x[ok], [0.25, 0.5, 0.75])
    iqr = float(q75 - q25)
    z = np.where(np.isfinite(x), (x - med) / (iqr if iqr > 0 else 1.0), np.nan)
    np.clip(z, -ROBUST_CLIP, ROBUST_CLIP, out=z)
    return z, float(med), iqr


def _robust_columns(matrix: np.ndarray, fit: np.ndarray) -> np.ndarray:
    """:func:`robust_scale` of every column into one float64 matrix (a float32 input is widened a column
    at a time, never as a whole)."""
    out = np.empty(matrix.shape)
    for j in range(matrix.shape[1]):
        out[:, j] = robust_scale(matrix[:, j], fit)[0]
    return out


def _quantile_columns(matrix: np.ndarray, fit: np.ndarray) -> np.ndarray:
    """:func:`quantile_transform` of every column, fitted on the rows ``fit``; columns run on threads
    (NumPy's sort releases the GIL), one per core, and the result does not depend on their number."""
    out = np.empty(matrix.shape)

    def one(j: int) -> None:
        out[:, j] = quantile_transform(matrix[:, j], fit)

    workers = max(1, min(matrix.shape[1], os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(matrix.shape[1])))
    return out


def _pca(q: np.ndarray, defined: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, loadings (k x d, deterministic sign) and explained variance ratio of the defined rows."""
    d = q.shape[1]
    m = int(defined.sum())
    total = np.zeros(d)
    gram = np.zeros((d, d))
    for start in range(0, q.shape[0], _CHUNK):
        block = q[start:start + _CHUNK][defined[start:start + _CHUNK]]
        total += block.sum(axis=0)
        gram += block.T @ block
    mean = total / m
    cov = gram / m - np.outer(mean, mean)
    cov = (cov + cov.T) / 2
    eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval, kind="stable")[::-1][:k]
    components = eigvec[:, order].T.copy()
    # Sign convention: the largest absolute loading of each component is positive (as svd_flip).
    pivot = np.argmax(np.abs(components), axis=1)
    signs = np.sign(components[np.arange(k), pivot])
    signs[signs == 0] = 1.0
    components *= signs[:, None]
    eigval = np.clip(eigval, 0.0, None)
    whole = eigval.sum()
    explained = eigval[order] / whole if whole > 0 else np.zeros(k)
    return mean, components, explained


def build_features(values: np.ndarray, spec: FeatureSpec) -> Features:
    r"""Place windows in the balancing space.

    1. Each metric is replaced by its quantile among the rows on which every chosen metric is defined
       (:func:`quantile_transform`, :math:`q = (r - 1/2)/m`), so units and outliers do not dominate.
       Rows with an undefined metric are not used to fit and get NaN.
    1b. With ``spec.scale = "robust"`` instead: each metric's robust z-score (:func:`robust_scale`,
       median and IQR of the defined rows, clipped at :data:`ROBUST_CLIP`); with ``nan_policy`` ``own_bin``
       an undefined value is placed at :data:`UNDEFINED_AT`, so the row keeps its other coordinates
       (``defined`` stays False: the grid puts it in cell -1).
    2. With ``spec.pca = k``: principal components of the quantiles of the defined rows (eigenvectors
       of their covariance :math:`\Sigma = \frac{1}{m}\sum_i (q_i - \bar q)(q_i - \bar q)^\top`, in
       order of decreasing eigenvalue, each with its largest absolute loading positive), scores
       :math:`s_i = W (q_i - \bar q)`, and each score quantile-transformed again so every dimension is
       uniform on [0, 1] and equal-count bins can be cut on it (robust scale: the scores as they are).
       ``k`` is capped at the number of metrics.

    Parameters
    ----------
    values : ndarray, shape (n, d)
        float32 or float64 metric matrix (best column-major: it is read a column at a time), columns in
        ``spec.metrics`` order, NaN (or null converted to NaN) where a metric is undefined.
    spec : FeatureSpec
        The PCA dimensions; ``nan_policy`` does not change the result (undefined rows always get NaN
        coordinates and ``defined=False``: the caller keeps them in the undefined bin or drops them).

    Returns
    -------
    Features

    Raises
    ------
    ValueError
        ``values`` is not 2-D or its column count differs from ``len(spec.metrics)``.
    Nw2Error
        No row has all the chosen metrics defined.
    """
    values = float_values(values)
    if values.ndim != 2:
        raise ValueError(f"values must be a 2-D (rows, metrics) array, got shape {values.shape}")
    n, d = values.shape
    if d != len(spec.metrics):
        raise ValueError(f"values has {d} columns but the spec names {len(spec.metrics)} metrics")
    defined = np.isfinite(values).all(axis=1)
    if n and not defined.any():
        raise Nw2Error(f"no window has all of the metrics {', '.join(spec.metrics)} defined; choose others")
    if spec.scale == "quantile":
        q = _quantile_columns(values, defined)
    else:
        q = _robust_columns(values, defined)
        if spec.nan_policy != "own_bin":
            q[~defined] = np.nan
        else:
            # Robust space: a row keeps its place by the metrics it has; an undefined one sits just
            # outside the clipped range, so "undefined" is a position of its own (the grid still puts
            # the row in cell -1: ``defined`` is unchanged).
            q[~np.isfinite(values)] = UNDEFINED_AT
    if spec.pca is None or n == 0:
        return Features(q, defined, None, None)
    k = min(int(spec.pca), d)
    mean, components, explained = _pca(q, defined, k)
    scores = np.empty((n, k))
    for start in range(0, n, _CHUNK):
        scores[start:start + _CHUNK] = (q[start:start + _CHUNK] - mean) @ components.T
    del q
    if spec.scale == "robust":  # the scores keep their distances too
        if spec.nan_policy != "own_bin":
            scores[~defined] = np.nan
        return Features(scores, defined, components, explained)
    return Features(_quantile_columns(scores, defined), defined, components, explained)
