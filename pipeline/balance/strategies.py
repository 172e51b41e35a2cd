"""The seven selection strategies: which candidate windows go into a corpus, and with what weight.

Every strategy is a function of the candidates (their features, grid cells, dataset and modality),
a target size, a seeded generator and its own parameters, and returns a :class:`Selection`: indices
into the candidates in ascending order, the bin of each selected row, and its sample weight.
:func:`select` is the entry point: it validates the request, makes the generator from the seed and
calls the strategy. Each strategy is registered once, in :data:`STRATEGIES`: a :class:`Strategy` with
its name, a one-line description, its function and the frozen dataclass of its parameters (defaults,
documentation, checks); the spec's balance section, ``nw2 balance``'s help and the parameter checks
are derived from it.

=============  ==================================================================  ==========================
strategy       what it does                                                        weight (``weights_only``)
=============  ==================================================================  ==========================
random         uniform subsample, the baseline                                     1
stratified     equal share per dataset (``by="dataset"``) or modality              1 / group size
grid           equal quota per occupied grid cell, water-filling                   1 / cell count
inverse        weighted sampling, weight 1 / cell count                            1 / cell count
temperature    weighted sampling, weight count^(tau - 1): P(cell) ~ count^tau      count^(tau - 1)
kmeans         equal share per k-means cluster (mini-batch, fitted on a sample)    1 / cluster size
coverage       greedy farthest-point (k-center): exact, or two-level (Voronoi)     1
=============  ==================================================================  ==========================

Determinism: all randomness comes from ``np.random.default_rng(seed)``, consumed in a fixed order, so
the same candidates, parameters and seed give the same selection on any machine, and another seed
gives another sample. Cost: ``random``, ``stratified``, ``grid``, ``inverse`` and ``temperature`` are a
few O(n) NumPy passes (plus one radix or merge sort of small integer codes); ``kmeans`` fits on a
sample and then assigns every row in one O(1)-memory Numba pass; ``coverage`` is exact greedy
k-center, O(size x pool x dims) in a Numba kernel, up to ``exact_budget``, and beyond it two-level:
k-center centres on the pool, every row assigned to its nearest centre in a parallel Numba pass
(O(n x centres x dims)), equal quotas per Voronoi cell, O(n) memory (ten million rows, a million
selected, 13 dims: 24 s on two shared cores, 0.46 GiB above the candidates).

:func:`select_constrained` composes any strategy with a dataset mixture (a quota per dataset, the
strategy run inside each) and caps per record, subject or dataset (over-cap groups trimmed, closed
and the strategy rerun on the rest), with a JSON-ready report.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Literal

import numpy as np


@dataclass
class Candidates:
    """The rows a strategy chooses from: the rows of the balanced splits (after the NaN policy).

    Attributes
    ----------
    z : ndarray, shape (n, k)
        float64 features (:class:`pipeline.balance.space.Features`), NaN on undefined rows.
    cells : ndarray, shape (n,)
        int64 grid cells (:meth:`pipeline.balance.bins.Grid.cells`), -1 for undefined rows.
    dataset : ndarray, shape (n,)
        Dataset of each row: names (str or object array, or anything ``np.asarray`` takes) or integer
        codes (cheaper for millions of rows; strategies only tell the groups apart).
    modality : ndarray, shape (n,)
        Modality of each row, the same way.
    record, subject : ndarray, shape (n,), optional
        Record and subject of each row, the same way (labels or integer codes); only
        :func:`select_constrained`'s caps read them. ``None`` (the default): no cap on them.

    The arrays are coerced on construction (no copy when they already have the right type).
    """

    z: np.ndarray
    cells: np.ndarray
    dataset: np.ndarray
    modality: np.ndarray
    record: np.ndarray | None = None
    subject: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.z = np.asarray(self.z, dtype=np.float64)
        if self.z.ndim == 1:
            self.z = self.z[:, None]
        self.cells = np.asarray(self.cells, dtype=np.int64)
        self.dataset = np.asarray(self.dataset)
        self.modality = np.asarray(self.modality)
        for name in ("record", "subject"):
            if getattr(self, name) is not None:
                setattr(self, name, np.asarray(getattr(self, name)))
        n = self.cells.shape[0]
        if self.z.ndim != 2 or self.cells.ndim != 1:
            raise ValueError(f"z must be (n, k) and cells (n,), got {self.z.shape} and {self.cells.shape}")
        for name in ("z", "dataset", "modality", "record", "subject"):
            if getattr(self, name) is not None and getattr(self, name).shape[0] != n:
                raise ValueError(f"candidates: {name} has {getattr(self, name).shape[0]} rows, cells has {n}")

    def __len__(self) -> int:
        return int(self.cells.shape[0])

    @property
    def defined(self) -> np.ndarray:
        """(n,) bool: the row has finite features (its cell is not the undefined one)."""
        return np.isfinite(self.z).all(axis=1)

    def take(self, rows: np.ndarray) -> Candidates:
        """The candidates ``rows`` (indices), in that order."""
        opt = {name: None if getattr(self, name) is None else getattr(self, name)[rows]
               for name in ("record", "subject")}
        return Candidates(self.z[rows], self.cells[rows], self.dataset[rows], self.modality[rows], **opt)


@dataclass
class Selection:
    """What a strategy chose.

    Attributes
    ----------
    index : ndarray of int64, shape (m,)
        Indices into the candidates, ascending (repeated with replacement).
    bin_id : ndarray of int64, shape (m,)
        The grid cell of each selected row (``kmeans``: its cluster id); -1 for undefined rows.
    sample_weight : ndarray of float64, shape (m,)
        1.0 for a subsample (the corpus itself is balanced); with ``weights_only`` the strategy's
        per-row sampling weight normalized to mean 1 over the candidates.
    order : ndarray of int64, shape (m,), or None
        For a strategy that picks rows one after another (``coverage``): the position at which each
        selected row was picked (0 first), so ``index[np.argsort(order)]`` is the pick order; ``None``
        for the others (their rows are exchangeable).
    """

    index: np.ndarray
    bin_id: np.ndarray
    sample_weight: np.ndarray
    order: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.index.shape[0])


# -- parameters ------------------------------------------------------------------------------------
class ParamError(ValueError):
    """A bad strategy parameter: ``field`` and what is wrong with its value (``problem``); ``strategy``
    once known. Reads ``"<strategy>: <field> <problem>"``, e.g. ``kmeans: k must be a positive integer, got 0``."""

    def __init__(self, field: str, problem: str, strategy: str | None = None):
        self.field, self.problem, self.strategy = field, problem, strategy
        super().__init__(f"{strategy + ': ' if strategy else ''}{field} {problem}")


def _positive_int(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"must be a positive integer, got {value!r}")
    return int(value)


def _finite_non_negative(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value < 0:
        raise ValueError(f"must be a finite number >= 0, got {value!r}")
    return float(value)


def _param(default, doc: str, check: Callable | None = None, spec: bool = True):
    """A field of a strategy's parameters: its default, its documentation (one clause, also the help of its
    command-line flag), ``check`` (returns the value, converted, or raises ``ValueError`` with what is wrong)
    and ``spec``: whether the balance section of a spec (and ``nw2 balance``) sets it, or only :func:`select`."""
    return field(default=default, metadata={"doc": doc, "check": check, "spec": spec})


def choices(cls, name: str) -> tuple:
    """The values a ``Literal[...]`` field of dataclass ``cls`` allows (``Optional`` unwrapped); () for another type."""
    hint = typing.get_type_hints(cls)[name]
    if typing.get_origin(hint) is typing.Literal:
        return typing.get_args(hint)
    return tuple(v for arg in typing.get_args(hint) if typing.get_origin(arg) is typing.Literal
                 for v in typing.get_args(arg))


def _or(values) -> str:
    values = [repr(v) for v in values]
    return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} or {values[-1]}"


@dataclass(frozen=True)
class Params:
    """A strategy's parameters (subclassed per strategy; this one: no parameters). Construction checks
    every field, a ``Literal[...]`` field against its choices and the others with their ``check``, and
    raises :class:`ParamError` with the field and the reason."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            allowed = choices(type(self), f.name)
            if allowed and value not in allowed:
                raise ParamError(f.name, f"must be {_or(allowed)}, got {value!r}")
            if f.metadata.get("check") is not None:
                try:
                    object.__setattr__(self, f.name, f.metadata["check"](value))
                except ValueError as err:
                    raise ParamError(f.name, str(err)) from None


@dataclass(frozen=True)
class StratifiedParams(Params):
    by: Literal["dataset", "modality"] = _param("dataset", "equal share per dataset or per modality")


@dataclass(frozen=True)
class TemperatureParams(Params):
    tau: float = _param(0.5, "cells drawn in proportion to count**tau, 0 uniform over cells, 1 like random",
                        _finite_non_negative)


@dataclass(frozen=True)
class KmeansParams(Params):
    k: int = _param(32, "number of clusters", _positive_int)
    fit_sample: int = _param(100_000, "rows sampled to fit the clusters", _positive_int)
    batch: int = _param(1024, "rows per mini-batch step", _positive_int, spec=False)
    iterations: int = _param(100, "mini-batch steps", _positive_int, spec=False)


def _positive_number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"must be a finite number > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class CoverageParams(Params):
    """``coverage``'s parameters. ``exact_budget`` and ``centres`` are cost knobs of :func:`select`
    only (``spec=False``, like ``kmeans``' ``batch``): they change how long the search takes, not what
    a corpus is meant to be, and a spec's balance section (:mod:`pipeline.spec`) stays as it is."""

    pool: int = _param(200_000, "candidates sampled before the greedy selection", _positive_int)
    exact_budget: float = _param(2e10, "largest size x pool x dims searched by the exact greedy k-center (10-15 s "
                                 "on one core); above it the two-level search", _positive_number, spec=False)
    centres: int = _param(1024, "Voronoi cells of the two-level search (centres chosen by exact k-center on the "
                          "pool)", _positive_int, spec=False)


@dataclass(frozen=True)
class Strategy:
    """One selection strategy, as :data:`STRATEGIES` registers it: its name, what it does in one line,
    the function that selects (``fn(cand, size, rng, replace, weights_only, **params)``) and the frozen
    dataclass of its parameters (:class:`Params` for none)."""

    name: str
    description: str
    select: Callable[..., Selection]
    params: type[Params] = Params

    @property
    def param_names(self) -> tuple[str, ...]:
        """Every parameter, in order."""
        return tuple(f.name for f in fields(self.params))

    @property
    def spec_params(self) -> tuple[str, ...]:
        """The parameters a spec's balance section (and ``nw2 balance``) sets: fields of :class:`BalanceSpec`."""
        return tuple(f.name for f in fields(self.params) if f.metadata.get("spec", True))

    def defaults(self) -> dict:
        return asdict(self.params())

    def resolve(self, params: dict | None = None) -> dict:
        """The full parameters: the defaults updated with ``params`` (``None`` values mean "the default"),
        checked. Raises ``ValueError`` (:class:`ParamError` for a bad value)."""
        given = {k: v for k, v in (params or {}).items() if v is not None}
        unknown = sorted(set(given) - set(self.param_names))
        if unknown:
            takes = ", ".join(self.param_names) if self.param_names else "no parameters"
            raise ValueError(f"strategy {self.name} does not take {', '.join(map(repr, unknown))}; it takes: {takes}")
        try:
            return asdict(self.params(**given))
        except ParamError as err:
            raise ParamError(err.field, err.problem, self.name) from None


def resolve_params(strategy: str, params: dict | None = None) -> dict:
    """The full parameters of ``strategy`` (:meth:`Strategy.resolve`): its defaults updated with
    ``params`` (``None`` values mean "the default"), validated.

    Raises
    ------
    ValueError
        An unknown strategy (the valid ones are listed), a parameter the strategy does not take (its
        parameters are listed), or a bad value (``tau < 0``, ``k < 1``, ``by`` not dataset/modality...).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; valid strategies: {', '.join(STRATEGIES)}")
    return STRATEGIES[strategy].resolve(params)


# -- shared building blocks ------------------------------------------------------------------------
def _factorize_ints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(codes, labels, counts)``: labels ascending, ``labels[codes] == values``. O(n) through
    ``bincount`` when the values span a range comparable to n, else ``np.unique``."""
    values = np.asarray(values, dtype=np.int64)
    if values.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    lo, hi = int(values.min()), int(values.max())
    span = hi - lo + 1
    if span <= max(4 * values.size, 1 << 16):
        shifted = values - lo
        counts = np.bincount(shifted, minlength=span)
        present = np.flatnonzero(counts)
        lookup = np.full(span, -1, np.int64)
        lookup[present] = np.arange(present.size)
        return lookup[shifted], present + lo, counts[present]
    labels, codes, counts = np.unique(values, return_inverse=True, return_counts=True)
    return codes.astype(np.int64), labels, counts


def _factorize_labels(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(codes, labels, counts)`` of group labels, sorted: integer codes directly (:func:`_factorize_ints`),
    strings through polars (a missing label reads as ""), so ten million labels take about two seconds."""
    import polars as pl

    if np.asarray(values).dtype.kind in "iub":
        return _factorize_ints(values)
    series = pl.Series("v", np.asarray(values), dtype=pl.String).fill_null("")
    labels = series.unique().sort()
    codes = series.replace_strict(labels, pl.Series(np.arange(labels.len(), dtype=np.int64)),
                                  return_dtype=pl.Int64).to_numpy()
    counts = np.bincount(codes, minlength=labels.len())
    return codes, np.asarray(labels.to_list(), dtype=object), counts


def _compact(codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Codes in the narrowest unsigned type, so that a stable argsort is a radix sort (<= 16 bits)."""
    if n_groups <= 1 << 8:
        return codes.astype(np.uint8)
    if n_groups <= 1 << 16:
        return codes.astype(np.uint16)
    return codes


def _water_fill(capacity: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    r"""Equal quotas under capacities: ``total`` split over the groups as evenly as they allow.

    Groups are filled to a common level :math:`t`, :math:`q_g = \min(c_g, t)`; a group with fewer rows
    than its share gives all of them and the leftover goes to the others. With the capacities sorted,
    :math:`c_{(1)} \le \dots \le c_{(G)}`, the groups :math:`j` with
    :math:`c_{(j)} \le \lfloor (T - \sum_{i<j} c_{(i)}) / (G - j + 1) \rfloor` are saturated (a prefix);
    the others get that integer share, and the remainder (fewer than their number) goes one each to
    groups chosen uniformly by ``rng``. So unsaturated groups differ by at most one, and no saturated
    group exceeds them. Requires ``total <= sum(capacity)``.
    """
    capacity = np.asarray(capacity, dtype=np.int64)
    g = capacity.size
    quotas = np.zeros(g, np.int64)
    if total <= 0 or g == 0:
        return quotas
    order = np.argsort(capacity, kind="stable")
    cap = capacity[order]
    before = np.concatenate([[0], np.cumsum(cap)[:-1]])
    left = np.arange(g, 0, -1)
    share = (total - before) // left
    open_ = np.flatnonzero(cap > share)
    if open_.size == 0:                    # total == sum(capacity): everything
        return capacity.copy()
    j = int(open_[0])
    quotas[order[:j]] = cap[:j]
    level = int(share[j])
    rest = order[j:]
    quotas[rest] = level
    remainder = int(total - before[j] - level * rest.size)
    if remainder:
        quotas[rng.choice(np.sort(rest), remainder, replace=False)] += 1
    return quotas


def _equal_quotas(n_groups: int, total: int, rng: np.random.Generator) -> np.ndarray:
    """With replacement: ``total // G`` per group, the remainder one each to groups chosen by ``rng``."""
    quotas = np.full(n_groups, total // n_groups, np.int64)
    remainder = total % n_groups
    if remainder:
        quotas[rng.choice(n_groups, remainder, replace=False)] += 1
    return quotas


def _quota_sample(codes: np.ndarray, counts: np.ndarray, size: int, rng: np.random.Generator,
                  replace: bool) -> np.ndarray:
    """Sorted indices: equal quotas per group (water-filling without replacement), uniform within a group.

    Without replacement the rows are shuffled (``rng.permutation``), grouped by a stable sort of
    their codes (so each group's block is in random order), and the first ``quota`` rows of each
    block are kept. With replacement each group's quota is drawn uniformly from its rows.
    """
    n_groups = counts.size
    narrow = _compact(codes, n_groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    if not replace:
        quotas = _water_fill(counts, size, rng)
        if np.array_equal(quotas, counts):
            return np.arange(codes.size, dtype=np.int64)
        perm = rng.permutation(codes.size)
        order = perm[np.argsort(narrow[perm], kind="stable")]
        rank = np.arange(codes.size, dtype=np.int64) - np.repeat(starts, counts)
        chosen = order[rank < np.repeat(quotas, counts)]
    else:
        quotas = _equal_quotas(n_groups, size, rng)
        order = np.argsort(narrow, kind="stable")
        group = np.repeat(np.arange(n_groups), quotas)
        chosen = order[starts[group] + rng.integers(0, counts[group])]
    chosen.sort()
    return chosen.astype(np.int64, copy=False)


def _weighted_sample(weights: np.ndarray, size: int, rng: np.random.Generator, replace: bool) -> np.ndarray:
    r"""Sorted indices drawn with probability proportional to ``weights``.

    Without replacement: Efraimidis-Spirakis (2006) A-ES with exponential keys,
    :math:`k_i = -\ln(u_i) / w_i = E_i / w_i` with :math:`E_i \sim \mathrm{Exp}(1)`; the ``size``
    smallest keys (``np.argpartition``, O(n)) are a weighted sample without replacement, i.e. the same
    distribution as drawing one row at a time with probability :math:`w_i / \sum_{j \text{ left}} w_j`.
    With replacement: inverse-CDF sampling, ``searchsorted(cumsum(w), u * sum(w))`` (what
    ``rng.choice(n, size, p=w / sum(w))`` does, without its tolerance check on the sum of ``p``).
    """
    n = weights.size
    if replace:
        cdf = np.cumsum(weights)
        u = rng.random(size) * cdf[-1]
        chosen = np.minimum(np.searchsorted(cdf, u, side="right"), n - 1)
    else:
        if size == n:
            return np.arange(n, dtype=np.int64)
        keys = rng.standard_exponential(n)
        keys /= weights
        chosen = np.argpartition(keys, size - 1)[:size]
    chosen.sort()
    return chosen.astype(np.int64, copy=False)


def _normalized(weights: np.ndarray) -> np.ndarray:
    return weights * (weights.size / weights.sum())


def _result(cand: Candidates, index: np.ndarray, bins: np.ndarray | None = None,
            weights: np.ndarray | None = None) -> Selection:
    bin_id = (cand.cells if bins is None else bins)[index]
    weight = np.ones(index.size) if weights is None else weights
    return Selection(index, np.ascontiguousarray(bin_id, dtype=np.int64), np.asarray(weight, dtype=np.float64))


def _by_groups(cand: Candidates, codes: np.ndarray, counts: np.ndarray, size: int | None, rng, replace: bool,
               weights_only: bool, bins: np.ndarray | None = None) -> Selection:
    if weights_only:
        index = np.arange(len(cand), dtype=np.int64)
        return _result(cand, index, bins, _normalized(1.0 / counts[codes]))
    return _result(cand, _quota_sample(codes, counts, size, rng, replace), bins)


# -- the strategies --------------------------------------------------------------------------------
def random_strategy(cand: Candidates, size: int | None, rng: np.random.Generator, replace: bool = False,
                    weights_only: bool = False) -> Selection:
    """Uniform subsample: ``size`` distinct rows (``rng.choice(n, size, replace=False)``), or ``size``
    independent uniform draws with replacement. Weight 1 for every row."""
    n = len(cand)
    if weights_only:
        return _result(cand, np.arange(n, dtype=np.int64))
    if replace:
        index = rng.integers(0, n, size)
    elif size == n:
        index = np.arange(n, dtype=np.int64)
    else:
        index = rng.choice(n, size, replace=False, shuffle=False)
    index = np.sort(index).astype(np.int64, copy=False)
    return _result(cand, index)


def stratified(cand: Candidates, size: int | None, rng: np.random.Generator, replace: bool = False,
               weights_only: bool = False, by: str = StratifiedParams.by) -> Selection:
    """Equal share per dataset (``by="dataset"``) or modality, regardless of dynamics.

    Without replacement the shares are water-filled (:func:`_water_fill`): a group with fewer rows than
    its share gives all of them and the leftover goes to the others; with replacement every group gets
    ``size // groups`` (+1 for ``size % groups`` groups chosen by the generator). Uniform within a group.
    Weights: :math:`w_i = 1 / n_{g(i)}`, the inverse size of the row's group.
    """
    codes, _, counts = _factorize_labels(cand.dataset if by == "dataset" else cand.modality)
    return _by_groups(cand, codes, counts, size, rng, replace, weights_only)


def grid(cand: Candidates, size: int | None, rng: np.random.Generator, replace: bool = False,
         weights_only: bool = False) -> Selection:
    """Equal quota per occupied grid cell (the undefined cell -1 counts as one when present).

    Quotas by integer division, the remainder one each to cells chosen by the generator; a cell with
    fewer windows than its quota gives all of them and the leftover is spread over the cells that
    still have windows (water-filling, :func:`_water_fill`). Uniform within a cell. With replacement
    every cell gets an equal quota whatever its size. Weights: :math:`w_i = 1 / n_{c(i)}`.
    """
    codes, _, counts = _factorize_ints(cand.cells)
    return _by_groups(cand, codes, counts, size, rng, replace, weights_only)


def inverse(cand: Candidates, size: int | None, rng: np.random.Generator, replace: bool = False,
            weights_only: bool = False) -> Selection:
    r"""Weighted sampling with :math:`w_i = 1 / n_{c(i)}`, the inverse count of the row's cell.

    Every cell then has the same total weight, so each draw lands in a uniformly chosen occupied cell;
    unlike ``grid`` the quotas are random (multinomial-like), not fixed. Without replacement:
    Efraimidis-Spirakis keys (:func:`_weighted_sample`); with replacement: independent draws.
    """
    return temperature(cand, size, rng, replace, weights_only, tau=0.0)


def temperature(cand: Candidates, size: int | None, rng: np.random.Generator, replace: bool = False,
                weights_only: bool = False, tau: float = TemperatureParams.tau) -> Selection:
    r"""Weighted sampling with :math:`w_i = n_{c(i)}^{\tau - 1}`, so a cell's probability is

    .. math:: P(c) = \frac{n_c \cdot n_c^{\tau-1}}{\sum_{c'} n_{c'}^{\tau}} = \frac{n_c^{\tau}}{\sum_{c'} n_{c'}^{\tau}}

    ``tau = 0``: uniform over the occupied cells (``inverse``); ``tau = 1``: proportional to the cell
    counts (all weights 1, a uniform random sample); values in between interpolate, values above 1
    favour the common regimes further. Efraimidis-Spirakis keys without replacement.
    """
    codes, _, counts = _factorize_ints(cand.cells)
    cell_weight = counts.astype(np.float64) ** (tau - 1.0)
    weights = cell_weight[codes]
    if weights_only:
        return _result(cand, np.arange(len(cand), dtype=np.int64), None, _normalized(weights))
    return _result(cand, _weighted_sample(weights, size, rng, replace))


# -- kmeans ----------------------------------------------------------------------------------------
def _nearest(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Nearest centre of each row of ``x`` (-1 where the row holds NaN), :func:`kernels.nearest_centre`."""
    from nw2.pipeline.balance.kernels import nearest_centre

    return nearest_centre(np.asarray(x, dtype=np.float64), np.array(centres, dtype=np.float64, order="C"))


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    r"""k-means++ seeding (Arthur & Vassilvitskii 2007): the first centre uniform, each next one drawn
    with probability :math:`D(x)^2 / \sum D^2`, :math:`D` the distance to the nearest centre so far.
    Stops early when every point coincides with a centre (fewer than k distinct points)."""
    centres = [x[rng.integers(0, x.shape[0])]]
    d2 = np.sum((x - centres[0]) ** 2, axis=1)
    while len(centres) < k:
        total = d2.sum()
        if not total > 0:
            break
        pick = int(np.searchsorted(np.cumsum(d2), rng.random() * total, side="right"))
        pick = min(pick, x.shape[0] - 1)
        centres.append(x[pick])
        d2 = np.minimum(d2, np.sum((x - x[pick]) ** 2, axis=1))
    return np.array(centres, dtype=np.float64)


def fit_minibatch_kmeans(x: np.ndarray, k: int, rng: np.random.Generator, batch: int = KmeansParams.batch,
                         iterations: int = KmeansParams.iterations) -> np.ndarray:
    r"""Centres of mini-batch k-means (Sculley 2010) on ``x``, seeded by k-means++.

    Each step draws ``batch`` rows uniformly (with replacement), assigns each to its nearest centre
    and moves that centre towards it with a per-centre learning rate :math:`\eta = 1/v_c`, :math:`v_c`
    the number of rows the centre has received so far: :math:`c \leftarrow (1-\eta)\,c + \eta\,x`.
    Applied to a whole batch this is the running mean
    :math:`c \leftarrow (v_c\,c + \sum_{x \to c} x) / (v_c + b_c)`.

    Returns
    -------
    ndarray, shape (k', dims)
        ``k' <= k`` centres (fewer when ``x`` holds fewer than k distinct points).
    """
    centres = _kmeans_pp(x, k, rng)
    kk, dims = centres.shape
    seen = np.zeros(kk)
    for _ in range(iterations):
        rows = x[rng.integers(0, x.shape[0], batch)]
        label = _nearest(rows, centres)
        hits = np.bincount(label, minlength=kk).astype(np.float64)
        sums = np.stack([np.bincount(label, weights=rows[:, j], minlength=kk) for j in range(dims)], axis=1)
        moved = hits > 0
        total = seen + hits
        centres[moved] = (centres[moved] * seen[moved, None] + sums[moved]) / total[moved, None]
        seen = total
    return centres


def kmeans_labels(cand: Candidates, rng: np.random.Generator, k: int = KmeansParams.k,
                  fit_sample: int = KmeansParams.fit_sample, batch: int = KmeansParams.batch,
                  iterations: int = KmeansParams.iterations) -> np.ndarray:
    """Cluster id of every candidate (-1 for undefined rows): mini-batch k-means fitted on at most
    ``fit_sample`` defined rows drawn by ``rng``, then every defined row assigned to its nearest centre."""
    defined = cand.defined
    rows = np.flatnonzero(defined)
    if rows.size == 0:
        return np.full(len(cand), -1, np.int64)
    fit_rows = rows if rows.size <= fit_sample else np.sort(rng.choice(rows, fit_sample, replace=False))
    centres = fit_minibatch_kmeans(cand.z[fit_rows], k, rng, batch, iterations)
    return _nearest(cand.z, centres)            # undefined (NaN) rows get -1


def kmeans(cand: Candidates, size: int | None, rng: np.random.Generator, replace: bool = False,
           weights_only: bool = False, k: int = KmeansParams.k, fit_sample: int = KmeansParams.fit_sample,
           batch: int = KmeansParams.batch, iterations: int = KmeansParams.iterations) -> Selection:
    """Equal share per k-means cluster in feature space (:func:`kmeans_labels`), water-filled as in
    ``grid``; undefined rows form a group of their own (id -1). ``bin_id`` is the cluster id.
    Weights: :math:`w_i = 1 / n_{k(i)}`, the inverse size of the row's cluster."""
    labels = kmeans_labels(cand, rng, k, fit_sample, batch, iterations)
    codes, _, counts = _factorize_ints(labels)
    return _by_groups(cand, codes, counts, size, rng, replace, weights_only, bins=labels)


# -- coverage --------------------------------------------------------------------------------------
def coverage(cand: Candidates, size: int | None, rng: np.random.Generator, replace: bool = False,
             weights_only: bool = False, pool: int = CoverageParams.pool,
             exact_budget: float = CoverageParams.exact_budget, centres: int = CoverageParams.centres) -> Selection:
    r"""Greedy farthest-point selection (Gonzalez 1985), a 2-approximation of the k-center problem:
    choose :math:`S` to minimize :math:`\max_i \min_{s \in S} \lVert z_i - z_s \rVert`.

    With :math:`n` candidates, :math:`d` feature dimensions, :math:`P = \min(n, \text{pool})` and
    :math:`m` = ``size``, one of two modes:

    **Exact** when :math:`m \le P` and :math:`m \cdot P \cdot d \le` ``exact_budget``. The search runs
    on a pool of :math:`P` candidates drawn uniformly by the generator (all of them when
    :math:`n \le` ``pool``). It starts from a pool row chosen by the generator, then repeatedly adds the
    row farthest (Euclidean, in feature space) from everything chosen so far, keeping each row's
    distance to its nearest chosen row up to date (:func:`kernels.farthest_points`,
    O(:math:`m P d`) time, O(:math:`P`) memory). Undefined rows count as one point infinitely far from
    the rest, so one of them is chosen (second) when the pool holds any. Ties go to the first row in
    index order. ``bin_id`` is the grid cell, as for the other strategies.

    **Two-level** otherwise (so ``size`` may exceed ``pool``; memory O(:math:`n`)):

    1. the pool is :math:`P' = \min(n_{def}, \text{pool})` *defined* rows drawn uniformly; exact greedy
       k-center on it picks :math:`C = \min(m - u, \text{centres}, P')` centres (at least 1), with
       :math:`u = 1` when there are undefined candidates, else 0: O(:math:`C P' d`);
    2. every candidate goes to its nearest centre (:func:`kernels.nearest_centre_parallel`, ``prange``,
       ties to the earlier centre, a result independent of the thread count; a centre always in its
       own cell): O(:math:`n C d`), the dominant cost;
    3. the :math:`G = C + u` cells (the Voronoi cells, plus one cell of all undefined rows) get equal
       quotas under their sizes (:func:`_water_fill`), so every cell is represented when
       :math:`m \ge G`;
    4. inside cell :math:`c` with quota :math:`q_c` and :math:`n_c` rows: the centre first, then greedy
       farthest-point from it over a uniform pool of
       :math:`p_c = \min(n_c, \max(q_c, \lfloor \alpha q_c \rfloor))` of the cell's rows, one factor
       :math:`\alpha` for all cells, the largest with :math:`d \sum_c q_c p_c \le B` = ``exact_budget``
       (:func:`_cell_pools`; so the cells together cost at most about :math:`B`). When
       :math:`\alpha \le 1` (a tight budget: e.g. ten million rows and a million selected) every pool
       is its quota: the centre plus a uniform sample of the cell. The undefined cell is a uniform
       sample. Cells run in parallel (:func:`kernels.cell_farthest`).

    In two-level mode ``bin_id`` is the row's Voronoi cell: its centre's position in the greedy order
    (0 to :math:`C-1`), -1 for the undefined cell. Total O(:math:`C P' d + n C d + B + n \log n`)
    (the last a radix sort of the cell codes after a permutation).

    :attr:`Selection.order` is the pick order (exact: the greedy's; two-level: round robin over the
    cells, all centres first, then every cell's second pick, ...), used by :func:`select_constrained`
    to keep the earliest picks when a cap trims a group. Weights: 1. Refuses replacement: it selects
    distinct windows. Deterministic for a seed in both modes.
    """
    n = len(cand)
    if weights_only:
        return _result(cand, np.arange(n, dtype=np.int64))
    if replace:
        raise ValueError("coverage selects distinct windows; it cannot sample with replacement")
    dims = cand.z.shape[1]
    pool_rows = min(n, pool)
    if size <= pool_rows and size * pool_rows * dims <= exact_budget:
        return _coverage_exact(cand, size, rng, pool)
    return _coverage_two_level(cand, size, rng, pool, exact_budget, centres)


def _coverage_exact(cand: Candidates, size: int, rng: np.random.Generator, pool: int) -> Selection:
    n = len(cand)
    if n > pool:
        members = np.sort(rng.choice(n, pool, replace=False, shuffle=False)).astype(np.int64)
    else:
        members = np.arange(n, dtype=np.int64)
    xt = np.ascontiguousarray(cand.z[members].T)
    undefined = ~np.isfinite(xt).all(axis=0)
    if undefined.any():
        # One shared point far outside the data: farther from every defined row than any two defined
        # rows are from each other, at distance 0 from the other undefined rows.
        span = float(np.ptp(xt[:, ~undefined])) if (~undefined).any() else 0.0
        xt[:, undefined] = float(np.max(xt[:, ~undefined], initial=0.0)) + 1e6 * (span + 1.0)
    start = int(rng.integers(0, members.size))
    from nw2.pipeline.balance.kernels import farthest_points

    chosen = farthest_points(xt, start, int(size))
    rows = members[chosen]
    index = np.argsort(rows, kind="stable")
    sel = _result(cand, rows[index])
    sel.order = index.astype(np.int64, copy=False)
    return sel


def _cell_pools(counts: np.ndarray, quotas: np.ndarray, budget: float) -> np.ndarray:
    r"""Pool size per cell for the in-cell greedy: :math:`p_c = \min(n_c, \max(q_c, \lfloor \alpha q_c
    \rfloor))`, one oversampling factor :math:`\alpha \ge 1` for all cells, the largest with
    :math:`\sum_c q_c p_c \le` ``budget`` over the cells that search (:math:`p_c > q_c`; water-filling:
    cells with :math:`n_c \le \alpha q_c` take all their rows and leave the rest of the budget to the
    others)."""
    counts = counts.astype(np.float64)
    q = quotas.astype(np.float64)
    trivial = counts <= q                       # nothing to choose: the whole cell, no search
    full = trivial.copy()
    while True:
        spent = float(np.sum(q[full & ~trivial] * counts[full & ~trivial]))
        rest = float(np.sum(q[~full] ** 2))
        alpha = (budget - spent) / rest if rest > 0 else np.inf
        newly = ~full & (counts <= alpha * q)
        if not newly.any():
            break
        full |= newly
    alpha = max(alpha, 1.0)
    pools = np.where(full, counts, np.floor(np.minimum(alpha * q, counts)))
    return np.maximum(pools, q).astype(np.int64)


def _coverage_two_level(cand: Candidates, size: int, rng: np.random.Generator, pool: int, exact_budget: float,
                        centres: int) -> Selection:
    from nw2.pipeline.balance.kernels import cell_farthest, farthest_points, nearest_centre_parallel

    n, dims = cand.z.shape
    defined_rows = np.flatnonzero(cand.defined)
    u = int(defined_rows.size < n)
    if defined_rows.size:
        n_pool = min(defined_rows.size, pool)
        members = defined_rows if n_pool == defined_rows.size else \
            defined_rows[np.sort(rng.choice(defined_rows.size, n_pool, replace=False, shuffle=False))]
        start = int(rng.integers(0, n_pool))
        k = max(1, min(size - u, centres, n_pool))
        centre_rows = members[farthest_points(np.ascontiguousarray(cand.z[members].T), start, k)]
        labels = nearest_centre_parallel(cand.z, np.ascontiguousarray(cand.z[centre_rows]))
        labels[centre_rows] = np.arange(k)     # a centre tied with an identical earlier one: its own cell
    else:
        k, centre_rows = 0, np.zeros(0, np.int64)
        labels = np.full(n, -1, np.int64)
    g = k + u
    codes = np.where(labels >= 0, labels, k)   # the undefined cell last
    counts = np.bincount(codes, minlength=g)
    quotas = _water_fill(counts, size, rng)
    narrow = _compact(codes, g)
    perm = rng.permutation(n)
    order = perm[np.argsort(narrow[perm], kind="stable")]
    del perm, narrow
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    first = np.concatenate([centre_rows, np.full(u, -1, np.int64)]).astype(np.int64)
    pools = _cell_pools(counts[:k], quotas[:k], exact_budget / dims)
    pools = np.concatenate([pools, quotas[k:]]).astype(np.int64)   # the undefined cell: a uniform sample
    cost = np.where(pools > quotas, quotas * pools, 0)
    schedule = np.argsort(-cost, kind="stable").astype(np.int64)
    rows, pick = cell_farthest(cand.z, order, starts, first, quotas.astype(np.int64), pools, schedule)
    del order
    cell = np.repeat(np.arange(g, dtype=np.int64), quotas)
    rank = np.argsort(pick * g + cell, kind="stable")          # round robin over the cells
    position = np.empty(rows.size, np.int64)
    position[rank] = np.arange(rows.size)
    index = np.argsort(rows, kind="stable")
    bins = np.where(cell < k, cell, -1)[index]
    sel = Selection(rows[index], np.ascontiguousarray(bins, dtype=np.int64), np.ones(rows.size))
    sel.order = position[index]
    return sel


# -- entry point -----------------------------------------------------------------------------------
#: The one registry of the strategies, in the order they are listed everywhere: the names a spec takes
#: (``pipeline.spec.BALANCE_STRATEGIES``), the fields of its balance section (:func:`spec_params`), the
#: command line's help and the parameters :func:`select` fills in and checks all come from here.
STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("random", "uniform subsample, the baseline", random_strategy),
    Strategy("stratified", "equal share per dataset or per modality, regardless of dynamics", stratified,
             StratifiedParams),
    Strategy("grid", "equal quota per occupied grid cell, water-filling", grid),
    Strategy("inverse", "weighted sampling, weight 1 / cell count", inverse),
    Strategy("temperature", "weighted sampling, cells drawn in proportion to count**tau", temperature,
             TemperatureParams),
    Strategy("kmeans", "equal share per k-means cluster in the balancing space", kmeans, KmeansParams),
    Strategy("coverage", "greedy farthest-point (k-center) rows: exact on a pool, or two-level over Voronoi cells",
             coverage,
             CoverageParams),
)}

#: Every strategy's parameters and their defaults (a view of :data:`STRATEGIES`).
DEFAULT_PARAMS: dict[str, dict] = {name: s.defaults() for name, s in STRATEGIES.items()}


def spec_params() -> dict[str, tuple[str, object, object]]:
    """The strategy parameters a spec's balance section sets, in registry order:
    ``{name: (strategy, dataclass field, type hint)}``. Their names are shared by all strategies (one
    flat section), so two strategies may not register the same one."""
    out: dict[str, tuple[str, object, object]] = {}
    for s in STRATEGIES.values():
        hints = typing.get_type_hints(s.params)
        for f in fields(s.params):
            if not f.metadata.get("spec", True):
                continue
            if f.name in out:
                raise TypeError(f"strategies {out[f.name][0]} and {s.name} both register the parameter {f.name!r}")
            out[f.name] = (s.name, f, hints[f.name])
    return out


def select(strategy: str, cand: Candidates, size: int | None, seed: int, replace: bool = False,
           weights_only: bool = False, **params) -> Selection:
    """Choose rows of ``cand`` with a strategy.

    Parameters
    ----------
    strategy : str
        A name of :data:`STRATEGIES`.
    cand : Candidates
    size : int or None
        Rows to select (with replacement it may exceed the candidates). ``None`` means as many as there
        are candidates: all of them without replacement, a bootstrap of that size with replacement.
        Ignored with ``weights_only``.
    seed : int
        Non-negative; the only source of randomness (``np.random.default_rng(seed)``).
    replace : bool
        Sample with replacement: a row can be selected more than once (it then appears once per draw).
    weights_only : bool
        Select nothing: return every candidate once, in order, with the strategy's sampling weight
        normalized to mean 1 (see :class:`Selection`); ``kmeans`` still fits its clusters (seeded).
    **params
        The strategy's parameters (its :attr:`Strategy.params`; ``None`` values take the default).

    Returns
    -------
    Selection

    Raises
    ------
    ValueError
        An unknown strategy (the valid ones are listed), an unknown or bad parameter, no candidates,
        ``size < 1``, ``size`` larger than the candidates without replacement (both numbers), a
        negative or non-integer seed, ``coverage`` with replacement.
    """
    resolved = resolve_params(strategy, params)
    size = _checked_request(cand, size, seed, replace, weights_only)
    rng = np.random.default_rng(int(seed))
    return STRATEGIES[strategy].select(cand, size, rng, bool(replace), bool(weights_only), **resolved)


def _checked_request(cand: Candidates, size, seed, replace: bool, weights_only: bool) -> int | None:
    """:func:`select`'s checks of the candidates, the seed and the size; the size as an int (``None``
    resolved to the number of candidates; ``None`` kept with ``weights_only``)."""
    if not isinstance(cand, Candidates):
        raise ValueError(f"cand must be Candidates, got {type(cand).__name__}")
    n = len(cand)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if n == 0:
        raise ValueError("no candidate windows to select from")
    if not weights_only:
        if size is None:
            size = n
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
            raise ValueError(f"size must be an integer, got {size!r}")
        size = int(size)
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        if size > n and not replace:
            raise ValueError(f"size {size} is larger than the {n} candidate windows; "
                             f"ask for at most {n} or sample with replacement")
    return size


# -- caps and mixture ------------------------------------------------------------------------------
#: The groups :func:`select_constrained` can cap, in the order the caps are applied.
CAP_GROUPS = ("record", "subject", "dataset")


def _largest_remainder(total: int, weights: np.ndarray) -> np.ndarray:
    """``total`` split in proportion to ``weights`` (> 0) in integers: the floors of the exact shares,
    then one more each to the largest fractional parts (ties to the earlier group). Deterministic."""
    raw = total * (weights / weights.sum())
    out = np.floor(raw).astype(np.int64)
    rest = int(total - out.sum())
    if rest > 0:
        out[np.argsort(-(raw - out), kind="stable")[:rest]] += 1
    return out


def _proportional_fill(total: int, weights: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    r"""``total`` split over groups in proportion to ``weights`` under ``capacity`` (``inf``: none):
    the shares :math:`q_g = T w_g / \sum w` (:func:`_largest_remainder`); every group whose share
    exceeds its capacity gives all it has and leaves the mixture, and the rest is split again over the
    others in proportion to their weights, until no share exceeds a capacity. Groups of weight 0 get
    nothing. The sum is ``min(total, capacity of the groups of weight > 0)``."""
    weights = np.asarray(weights, dtype=np.float64)
    capacity = np.asarray(capacity, dtype=np.float64)
    quotas = np.zeros(weights.size, np.int64)
    active = (weights > 0) & (capacity > 0)
    left = int(total)
    while left > 0 and active.any():
        idx = np.flatnonzero(active)
        share = _largest_remainder(left, weights[idx])
        over = share > capacity[idx]
        if not over.any():
            quotas[idx] += share
            break
        full = idx[over]
        quotas[full] = capacity[full].astype(np.int64)
        left -= int(capacity[full].sum())
        active[full] = False
    return quotas


def _derived_seed(*entropy: int) -> int:
    """A non-negative 63-bit seed from integers (``np.random.SeedSequence``), for a part or a round."""
    state = np.random.SeedSequence([int(e) for e in entropy]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def _label_key(label) -> int:
    """A stable non-negative integer for a dataset label: the code itself, or the CRC-32 of the name."""
    import zlib

    if isinstance(label, (int, np.integer)) and not isinstance(label, bool) and label >= 0:
        return int(label)
    return zlib.crc32(str(label).encode("utf-8"))


def _json_label(label) -> str:
    return str(label.item() if isinstance(label, np.generic) else label)


def _cap_limit(key: str, value, size: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"caps.{key} must be a fraction of size in (0, 1] or a row count >= 1, got {value!r}")
    if isinstance(value, (int, np.integer)):
        if value < 1:
            raise ValueError(f"caps.{key} must be a row count >= 1 (an int) or a fraction in (0, 1], got {value!r}")
        return int(value)
    if not (math.isfinite(value) and 0 < value <= 1):
        raise ValueError(f"caps.{key} must be a fraction in (0, 1] (a float) or a row count >= 1, got {value!r}")
    return max(1, math.floor(value * size + 1e-9))


def _mixture_weights(mixture: dict, labels: np.ndarray) -> np.ndarray:
    """The weight of each dataset label (in ``labels``' order) from ``mixture``; 0 for the others."""
    if not isinstance(mixture, dict) or not mixture:
        raise ValueError(f"mixture must be a non-empty mapping of datasets to weights, got {mixture!r}")
    where = {_json_label(v): i for i, v in enumerate(labels)}
    weights = np.zeros(labels.size)
    seen: dict[int, object] = {}
    for key, w in mixture.items():
        name = _json_label(key)
        if name not in where:
            raise ValueError(f"mixture names dataset {key!r}, which has no candidate windows; the datasets "
                             f"are: {', '.join(map(_json_label, labels))}")
        i = where[name]
        if i in seen:
            raise ValueError(f"mixture names dataset {name!r} twice ({seen[i]!r} and {key!r})")
        seen[i] = key
        if isinstance(w, bool) or not isinstance(w, (int, float, np.integer, np.floating)) \
                or not math.isfinite(w) or w < 0:
            raise ValueError(f"mixture weight of {name!r} must be a finite number >= 0, got {w!r}")
        weights[i] = float(w)
    if not weights.sum() > 0:
        raise ValueError("mixture: at least one weight must be > 0")
    return weights


def select_constrained(strategy: str, cand: Candidates, size: int | None, seed: int, *,
                       caps: dict[str, float | int] | None = None, mixture: dict[int | str, float] | None = None,
                       replace: bool = False, weights_only: bool = False, dataset_names=None,
                       **params) -> tuple[Selection, dict]:
    r"""Choose rows with a strategy (:func:`select`) under a dataset mixture and caps per group.

    Parameters
    ----------
    strategy, cand, size, seed, replace, **params
        As for :func:`select`; checked the same way.
    caps : dict, optional
        ``{"record": x, "subject": y, "dataset": z}`` (any of them): no record (subject, dataset) holds
        more than its cap of the selected rows. A float in (0, 1] is a fraction of ``size``,
        :math:`\max(1, \lfloor x \cdot \text{size} \rfloor)`; an int >= 1 a row count (so ``1.0`` is all
        of ``size`` and ``1`` one row). ``record`` and ``subject`` need ``cand.record`` /
        ``cand.subject``. With replacement a row drawn twice counts twice.
    mixture : dict, optional
        Target weight per dataset, keyed by the labels of ``cand.dataset`` (names, or the integer codes
        when the candidates carry codes). Dataset :math:`d` gets the quota
        :math:`q_d = \text{size} \cdot w_d / \sum w` (largest-remainder rounding, ties to the earlier
        dataset), water-filled (:func:`_proportional_fill`): a dataset with fewer candidates than its
        quota gives them all and the rest goes to the others in proportion to their weights. A dataset
        of the candidates missing from ``mixture`` has weight 0 (no rows; listed in the report's
        ``mixture.excluded``); a key that is not a dataset of the candidates is refused (a typo would
        otherwise drop a dataset silently). The strategy then runs inside each dataset, on its rows
        only, for its quota.
    dataset_names : sequence of str, optional
        When ``cand.dataset`` holds integer codes: the name of each code, by which ``mixture`` is then
        keyed and the report names the datasets.
    weights_only : bool
        Refused together with ``caps`` or ``mixture`` (a weighting keeps every row, so there is nothing
        to cap or to mix); without them this is :func:`select`.

    Algorithm
    ---------
    Rounds :math:`r = 1, 2, \dots`; each dataset of weight > 0 (without ``mixture``: all candidates as
    one part) has a target, its quota. In a round every part requests its missing rows
    (target minus rows kept) from its *open* candidates: not in a closed group, and, without
    replacement, not already selected; what a part cannot supply goes to the other parts in
    proportion to their weights (their targets grow). The strategy runs in each part with its
    request and a seed: ``seed`` itself in round 1 without a mixture (so when no cap binds the result
    is :func:`select`'s), else ``SeedSequence([seed, key, r])``, ``key`` the dataset's code or the CRC-32
    of its name (0 without a mixture). Then for each cap, in the order of :data:`CAP_GROUPS`, every
    group holding more than its cap (rows kept in earlier rounds plus this round's) keeps only as
    many of this round's rows as fit: the earliest picks when the strategy reports its pick order
    (:attr:`Selection.order`, ``coverage``), else a seeded uniform subset
    (``SeedSequence([seed, 0x74726D, r])``). Every group that reached its cap is closed: its other
    candidates leave the open set. The rounds stop when ``size`` rows are kept or when no part can
    supply a row; then fewer rows are selected and ``short_by`` says how many are missing. A round that
    trims closes at least one group that was open, so there are at most (number of groups + 2) rounds.

    Rerun rounds do not see the rows kept before (a strategy only sees its part's open candidates), so
    ``coverage`` may place a rerun pick near a kept one; ``bin_id`` is what the strategy gave in its
    part and round (``kmeans`` cluster ids and ``coverage`` cells are numbered per run, grid cells
    are global).

    Returns
    -------
    (Selection, dict)
        The rows (ascending, weight 1, ``order`` None) and a JSON-ready report::

            {"strategy", "requested", "selected", "short_by", "rounds", "trim": "pick order" | "seeded random",
             "per_round": [{"round", "requested", "drawn", "dropped"}],
             "datasets": {name: selected rows},
             "mixture": null | {"weights", "excluded", "capacity", "quotas", "targets", "selected"},
             "caps": {group: {"given", "cap", "groups", "groups_trimmed", "rows_dropped", "groups_at_cap",
                              "max_selected"}}}

        (``quotas``: the water-filled quotas before any cap; ``targets``: after the spill of rows a
        dataset could not supply.)

    Raises
    ------
    ValueError
        Whatever :func:`select` refuses; an unknown cap group, a bad cap value, a cap on ``record`` or
        ``subject`` without those labels, a mixture key that is not a dataset of the candidates, a bad
        weight or all weights 0, ``weights_only`` with caps or a mixture.
    """
    resolved = resolve_params(strategy, params)
    size = _checked_request(cand, size, seed, replace, weights_only)
    constrained = bool(caps) or mixture is not None
    if weights_only:
        if constrained:
            raise ValueError("weights_only keeps every candidate (with a weight): caps and mixture select rows, "
                             "so they cannot be combined with it")
        sel = select(strategy, cand, None, seed, weights_only=True, **resolved)
        return sel, {"strategy": strategy, "requested": None, "selected": len(sel), "short_by": 0, "rounds": 1,
                     "weights_only": True, "mixture": None, "caps": {}}
    n = len(cand)
    replace = bool(replace)
    fn = STRATEGIES[strategy].select
    # The cap groups: codes per row, the limit and the rows selected per group.
    limits: dict[str, dict] = {}
    for key, value in (caps or {}).items():
        if key not in CAP_GROUPS:
            raise ValueError(f"caps: unknown group {key!r}; valid: {', '.join(CAP_GROUPS)}")
        labels = getattr(cand, key)
        if labels is None:
            raise ValueError(f"caps.{key} needs the candidates' {key} (Candidates.{key} is None)")
        codes, _, counts = _factorize_labels(labels)
        limits[key] = {"given": value, "cap": _cap_limit(key, value, size), "codes": codes,
                       "taken": np.zeros(counts.size, np.int64), "trimmed": 0, "dropped": 0}
    limits = {k: limits[k] for k in CAP_GROUPS if k in limits}
    # The parts: the datasets of weight > 0 (mixture), or all candidates.
    d_codes, d_labels, d_counts = _factorize_labels(cand.dataset)
    shown = d_labels if dataset_names is None else np.array([dataset_names[int(v)] for v in d_labels], object)
    if mixture is not None:
        weights = _mixture_weights(mixture, shown)
        part_of = d_codes
        keys = [_label_key(v) for v in d_labels]
        capacity = np.where(d_counts > 0, np.inf, 0.0) if replace else d_counts
        quotas = _proportional_fill(size, weights, capacity)
    else:
        weights = np.ones(1)
        part_of = np.zeros(n, np.int64)
        keys = [0]
        quotas = np.array([size], np.int64)
    n_parts = weights.size
    target = quotas.copy()
    kept_by_part = np.zeros(n_parts, np.int64)
    open_ = np.ones(n, bool)
    kept: list[np.ndarray] = []
    kept_bins: list[np.ndarray] = []
    total_kept = 0
    rounds: list[dict] = []
    has_order = False
    for r in range(1, 3 + sum(v["taken"].size for v in limits.values()) + 1):
        if total_kept >= size:
            break
        avail = np.bincount(part_of[open_], minlength=n_parts).astype(np.float64)
        if replace:
            avail = np.where(avail > 0, np.inf, 0.0)
        missing = target - kept_by_part
        take = np.minimum(missing, avail).astype(np.int64)
        spill = int((missing - take).sum())
        if spill > 0:
            take += _proportional_fill(spill, weights, avail - take)
        target = kept_by_part + take
        if take.sum() == 0:
            break
        new_rows, new_bins, new_prio = [], [], []
        for p in np.flatnonzero(take):
            if mixture is None and r == 1:
                sub_rows, sub = None, cand
                sub_seed = int(seed)
            else:
                sub_rows = np.flatnonzero(open_ & (part_of == p))
                sub = cand.take(sub_rows)
                sub_seed = _derived_seed(int(seed), keys[p], r)
            sel = fn(sub, int(take[p]), np.random.default_rng(sub_seed), replace, False, **resolved)
            rows = sel.index if sub_rows is None else sub_rows[sel.index]
            new_rows.append(rows)
            new_bins.append(sel.bin_id)
            if sel.order is not None:
                has_order = True
                new_prio.append(sel.order.astype(np.float64))
            else:
                new_prio.append(None)
        rows = np.concatenate(new_rows)
        bins = np.concatenate(new_bins)
        if any(q is None for q in new_prio) and limits:
            trim_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x74726D, r]))
            prio = trim_rng.random(rows.size)
        else:
            prio = np.concatenate([q if q is not None else np.zeros(0) for q in new_prio]) if limits else None
        drawn = int(rows.size)
        keep = np.ones(rows.size, bool)
        for lim in limits.values():
            g = lim["codes"][rows]
            live = np.flatnonzero(keep)
            count = np.bincount(g[live], minlength=lim["taken"].size)
            over = np.flatnonzero(lim["taken"] + count > lim["cap"])
            if over.size == 0:
                continue
            allowed = lim["cap"] - lim["taken"]
            by = np.lexsort((prio[live], g[live]))          # per group, earliest pick first
            sorted_g = g[live][by]
            starts = np.searchsorted(sorted_g, sorted_g, side="left")
            rank = np.arange(by.size) - starts
            drop = live[by[rank >= allowed[sorted_g]]]
            keep[drop] = False
            lim["trimmed"] += int(over.size)
            lim["dropped"] += int(drop.size)
        rows, bins = rows[keep], bins[keep]
        kept.append(rows)
        kept_bins.append(bins)
        total_kept += int(rows.size)
        kept_by_part += np.bincount(part_of[rows], minlength=n_parts)
        if not replace:
            open_[rows] = False
        for lim in limits.values():
            lim["taken"] += np.bincount(lim["codes"][rows], minlength=lim["taken"].size)
            full = lim["taken"] >= lim["cap"]
            if full.any():
                open_ &= ~full[lim["codes"]]
        rounds.append({"round": r, "requested": int(take.sum()), "drawn": drawn, "dropped": int(drawn - rows.size)})
    rows = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    bins = np.concatenate(kept_bins) if kept_bins else np.zeros(0, np.int64)
    by = np.argsort(rows, kind="stable")
    result = Selection(rows[by].astype(np.int64, copy=False), np.ascontiguousarray(bins[by], dtype=np.int64),
                       np.ones(rows.size))
    per_dataset = np.bincount(d_codes[result.index], minlength=d_labels.size)
    report = {
        "strategy": strategy, "requested": int(size), "selected": int(rows.size), "short_by": int(size - rows.size),
        "rounds": len(rounds), "trim": "pick order" if has_order else "seeded random", "per_round": rounds,
        "datasets": {_json_label(v): int(c) for v, c in zip(shown, per_dataset)},
        "mixture": None if mixture is None else {
            "weights": {_json_label(v): float(w) for v, w in zip(shown, weights)},
            "excluded": [_json_label(v) for v, w in zip(shown, weights) if w == 0],
            "capacity": {_json_label(v): int(c) for v, c in zip(shown, d_counts)},
            "quotas": {_json_label(v): int(q) for v, q in zip(shown, quotas)},
            "targets": {_json_label(v): int(q) for v, q in zip(shown, target)},
            "selected": {_json_label(v): int(c) for v, c in zip(shown, per_dataset)}},
        "caps": {key: {"given": lim["given"] if isinstance(lim["given"], (int, float)) else float(lim["given"]),
                       "cap": int(lim["cap"]), "groups": int(lim["taken"].size),
                       "groups_trimmed": int(lim["trimmed"]), "rows_dropped": int(lim["dropped"]),
                       "groups_at_cap": int(np.sum(lim["taken"] >= lim["cap"])),
                       "max_selected": int(lim["taken"].max(initial=0))} for key, lim in limits.items()},
    }
    return result, report
