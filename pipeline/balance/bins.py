"""A quantile grid over the balancing space, and the balance statistics of a cell occupancy.

Each dimension of the feature space is cut into ``bins`` equal-count bins at its quantiles, so a
cell is a region of metric space (e.g. "high entropy, low Lyapunov exponent, middle DFA"), and the
number of windows in a cell says how common that dynamical regime is in the store. Windows whose
metrics are undefined share one extra cell, id -1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """Cut points of a quantile grid.

    Attributes
    ----------
    edges : list of ndarray
        Per dimension, the ``bins - 1`` inner cut points, ascending. A value ``v`` falls in bin
        ``#{edges <= v}`` (a value equal to a cut point goes to the upper bin).
    bins : int
        Bins per dimension.

    A row's cell id is its bins read as the digits of a base-``bins`` number, first dimension most
    significant: ``cell = ((b_0 * bins) + b_1) * bins + b_2 ...``, in ``[0, bins ** dims)``.
    """

    edges: list[np.ndarray]
    bins: int

    @property
    def dims(self) -> int:
        return len(self.edges)

    @property
    def n_cells(self) -> int:
        """Cells of the grid, ``bins ** dims`` (the undefined cell -1 not counted)."""
        return self.bins ** self.dims

    def bin_index(self, z: np.ndarray) -> np.ndarray:
        """(n, dims) int64 bin of each coordinate (NaN coordinates give ``bins``, i.e. out of range)."""
        z = np.asarray(z, dtype=np.float64)
        out = np.empty(z.shape, np.int64)
        for j, cuts in enumerate(self.edges):
            out[:, j] = np.searchsorted(cuts, z[:, j], side="right")
        return out

    def cells(self, z: np.ndarray, defined: np.ndarray) -> np.ndarray:
        """Cell id of each row, -1 where ``defined`` is False.

        Parameters
        ----------
        z : ndarray, shape (n, dims)
            Coordinates (any values: rows outside the fitted range fall in the outer bins).
        defined : ndarray of bool, shape (n,)

        Returns
        -------
        ndarray of int64, shape (n,)
        """
        z = np.asarray(z, dtype=np.float64)
        defined = np.asarray(defined, bool)
        if z.ndim != 2 or z.shape[1] != self.dims:
            raise ValueError(f"z must have shape (n, {self.dims}), got {z.shape}")
        if defined.shape != (z.shape[0],):
            raise ValueError(f"defined must have shape ({z.shape[0]},), got {defined.shape}")
        cell = np.zeros(z.shape[0], np.int64)
        for j, cuts in enumerate(self.edges):
            cell *= self.bins
            cell += np.searchsorted(cuts, z[:, j], side="right")
        cell[~defined] = -1
        return cell

    def to_dict(self) -> dict:
        """JSON-ready definition: ``{"bins", "dims", "cells", "edges": [[cut, ...] per dim]}``."""
        return {"bins": int(self.bins), "dims": self.dims, "cells": self.n_cells,
                "edges": [[float(v) for v in cuts] for cuts in self.edges]}

    @classmethod
    def from_dict(cls, obj: dict) -> "Grid":
        return cls([np.asarray(e, dtype=np.float64) for e in obj["edges"]], int(obj["bins"]))


def fit_grid(z: np.ndarray, defined: np.ndarray, bins: int) -> Grid:
    r"""Equal-count cut points per dimension, from the defined rows.

    With the :math:`m` defined values of a dimension sorted, :math:`v_{(1)} \le \dots \le v_{(m)}`, the
    cut between bins :math:`i-1` and :math:`i` (:math:`i = 1 \dots b-1`) lies midway between the values
    of ranks :math:`c_i = \mathrm{round}(i\,m/b)` and :math:`c_i + 1`:

    .. math:: e_i = \tfrac{1}{2}\,(v_{(c_i)} + v_{(c_i + 1)})

    so, without ties, bin :math:`i` holds exactly :math:`c_{i+1} - c_i` rows: all bins of a dimension
    hold :math:`\lfloor m/b \rfloor` or :math:`\lceil m/b \rceil` rows. Tied values never straddle a cut.
    The order statistics come from ``np.partition`` (O(m), no full sort).

    Parameters
    ----------
    z : ndarray, shape (n, dims)
    defined : ndarray of bool, shape (n,)
        Rows that fit the grid (the others may hold NaN).
    bins : int
        Bins per dimension, at least 1.

    Raises
    ------
    ValueError
        ``bins < 1``, a shape mismatch, or no defined row while ``bins > 1``.
    """
    z = np.asarray(z, dtype=np.float64)
    defined = np.asarray(defined, bool)
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    if z.ndim != 2:
        raise ValueError(f"z must be a 2-D (rows, dims) array, got shape {z.shape}")
    if defined.shape != (z.shape[0],):
        raise ValueError(f"defined must have shape ({z.shape[0]},), got {defined.shape}")
    m = int(defined.sum())
    if bins > 1 and m == 0:
        raise ValueError("cannot fit a grid: no defined row")
    ranks = np.rint(np.arange(1, bins) * m / bins).astype(np.int64)   # c_i
    # Midpoints need v_(c) and v_(c+1): 0-based positions c-1 and c, clipped inside [0, m-1].
    lo = np.clip(ranks - 1, 0, max(m - 1, 0))
    hi = np.clip(ranks, 0, max(m - 1, 0))
    kth = np.unique(np.concatenate([lo, hi]))
    edges = []
    for j in range(z.shape[1]):
        if bins == 1:
            edges.append(np.empty(0))
            continue
        values = z[defined, j]
        part = np.partition(values, kth)
        edges.append((part[lo] + part[hi]) / 2.0)
    return Grid(edges, int(bins))


def occupancy(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Occupied cells (ascending, -1 first when present) and their counts."""
    return np.unique(np.asarray(cells, dtype=np.int64), return_counts=True)


def balance_stats(cells: np.ndarray, reference_cells: np.ndarray, weights: np.ndarray | None = None) -> dict:
    r"""Balance statistics of the cell occupancy of a selection, against the cells occupied before.

    With :math:`N` the number of cells occupied in ``reference_cells`` (the undefined cell -1 counts
    when present) and :math:`p_c` the fraction of the selection in cell :math:`c` (natural logs):

    - ``normalized_entropy`` :math:`= H / \ln N`, :math:`H = -\sum_c p_c \ln p_c`: 1 when the selection
      is spread evenly over all cells occupied before (defined as 1 when :math:`N = 1`);
    - ``kl_to_uniform`` :math:`= \sum_c p_c \ln(p_c N) = \ln N - H`: 0 for an even spread;
    - ``effective_regimes`` :math:`= e^{H}`: the number of equally filled cells with the same entropy;
    - ``occupied_cells``: cells holding at least one selected row; ``fraction_of_cells_kept`` =
      ``occupied_cells / N``;
    - also ``reference_cells`` (:math:`N`) and ``entropy`` (:math:`H`, nats).

    Parameters
    ----------
    cells : ndarray of int, shape (m,)
        Cell of each selected row (a row drawn twice with replacement appears twice).
    reference_cells : ndarray of int, shape (n,)
        Cell of each row before selection (the candidates).
    weights : ndarray of float, shape (m,), optional
        Per-row weights (``--weights-only``): :math:`p_c` is the share of the total weight in cell
        :math:`c`, so the statistics describe what a trainer sampling with these weights sees.

    Returns
    -------
    dict
        ``occupied_cells`` (int), ``normalized_entropy``, ``fraction_of_cells_kept``, ``kl_to_uniform``,
        ``effective_regimes``, ``entropy`` (floats), ``reference_cells`` (int).

    Raises
    ------
    ValueError
        An empty selection or reference, selected cells not occupied in the reference, or weights of
        the wrong shape, negative, or summing to zero.
    """
    cells = np.asarray(cells, dtype=np.int64)
    ref = np.asarray(reference_cells, dtype=np.int64)
    if ref.size == 0:
        raise ValueError("balance statistics need a non-empty reference")
    if cells.size == 0:
        raise ValueError("balance statistics of an empty selection")
    before = np.unique(ref)
    n_before = before.size
    if weights is None:
        occupied, counts = np.unique(cells, return_counts=True)
        mass = counts.astype(np.float64)
    else:
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != cells.shape:
            raise ValueError(f"weights must have shape {cells.shape}, got {weights.shape}")
        if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError("weights must be finite, non-negative and not all zero")
        occupied, inverse = np.unique(cells, return_inverse=True)
        mass = np.bincount(inverse, weights=weights, minlength=occupied.size)
        keep = mass > 0
        occupied, mass = occupied[keep], mass[keep]
    outside = np.setdiff1d(occupied, before, assume_unique=True)
    if outside.size:
        raise ValueError(f"the selection holds cells not occupied in the reference: {outside[:5].tolist()}")
    p = mass / mass.sum()
    entropy = float(-np.sum(p * np.log(p)))
    log_n = float(np.log(n_before))
    return {
        "occupied_cells": int(occupied.size),
        "reference_cells": int(n_before),
        "entropy": entropy,
        "normalized_entropy": entropy / log_n if n_before > 1 else 1.0,
        "fraction_of_cells_kept": occupied.size / n_before,
        "kl_to_uniform": max(log_n - entropy, 0.0),
        "effective_regimes": float(np.exp(entropy)),
    }
