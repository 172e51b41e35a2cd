"""The forecasting protocol and the per-window scores of the model and the baselines.

**Protocol** (:func:`plan`). Every evaluated row is one single-channel sample. With the model's window ``W``,
patch ``P``, the longest horizon ``Hmax`` and the shortest evaluated row ``L`` (``L >= W`` is required):

```
origin  t0 = min(W, L - Hmax)              the forecast starts here, the same sample for every row
context c  = floor(t0 / P) * P             the last whole patches before t0 (so at most W samples)
context    = row[t0 - c : t0]
truth      = row[t0 : t0 + Hmax]          every horizon H scores the first H samples of the forecast
```

One forecast of ``Hmax`` samples is made per method and window; since the model and every baseline forecast
step by step, the forecast for ``H`` is the first ``H`` samples of it.

**Scores** per window, method and horizon ``H`` (:class:`Scorer`), on the stored (normalised) samples:
``mse``, ``mae``; ``mae_physical = mae * |scale|`` (the row's physical unit: ``physical = samples * scale +
offset``, so the offset cancels); ``lsd`` and ``spectral_corr`` (:mod:`.spectra`); ``latent_distance`` =
``1 - cos(embed(ctx ++ forecast[:H]), embed(ctx ++ truth[:H]))`` with the model's ``embed``, which keeps the
last whole patches of the sequence that fit its window.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from nw2.core.errors import Nw2Error

from . import baselines, spectra
from .config import horizon_values
from .relative import in_sample_scale
from .trained import TRAINED_BASELINES

__all__ = ["METHODS", "METRICS", "Protocol", "parse_horizons", "default_horizons", "plan", "Scorer",
           "VALID_THRESHOLD", "valid_samples"]

#: Forecasters, in report order: the model, the model with test-time adaptation, the baselines fitted on each
#: context, then those trained on the training split (:mod:`.trained`).
#: ``without_interventions``: a model with intervention inputs forecasting without them (only for such a model).
METHODS = ("model", "adapted", "without_interventions") + baselines.BASELINES + TRAINED_BASELINES
#: Per-window scores.
METRICS = ("mse", "mae", "mae_physical", "lsd", "spectral_corr", "latent_distance")


@dataclass(frozen=True)
class Protocol:
    window_size: int
    patch_size: int
    horizons: tuple[int, ...]
    min_length: int
    origin: int
    context: int

    @property
    def max_horizon(self) -> int:
        return max(self.horizons)

    @property
    def need(self) -> int:
        """Samples read per row: the context and the longest horizon, and at least one model window."""
        return max(self.origin + self.max_horizon, self.window_size)

    def to_dict(self) -> dict:
        return {"window_size": self.window_size, "patch_size": self.patch_size, "horizons": list(self.horizons),
                "min_window_length": self.min_length, "origin": self.origin, "context": self.context,
                "context_start": self.origin - self.context}


def default_horizons(window_size: int, patch_size: int) -> tuple[int, ...]:
    """One patch, two patches, four, ... while at most half the window."""
    out, h = [], patch_size
    while h <= window_size // 2:
        out.append(h)
        h *= 2
    return tuple(out) or (max(spectra.MIN_LENGTH, window_size // 2),)


def parse_horizons(horizons, window_size: int, patch_size: int) -> tuple[int, ...]:
    """``None`` (the defaults), a comma-separated string or a sequence of ints -> sorted unique horizons;
    :class:`Nw2Error` for one that is not an integer, shorter than the spectra need
    (:func:`.config.horizon_values`), or longer than half the model window."""
    values = horizon_values(horizons)
    if values is None:
        return default_horizons(window_size, patch_size)
    for h in values:
        if h > window_size // 2:
            raise Nw2Error(f"horizon {h} is longer than half the model window ({window_size // 2} of {window_size} "
                           f"samples)")
    return values


def plan(window_size: int, patch_size: int, horizons: tuple[int, ...], min_length: int, adapt: bool,
         where: str = "data") -> Protocol:
    """The protocol for rows of at least ``min_length`` samples (see the module); :class:`Nw2Error` when the
    rows are shorter than the model window or the context would be too short."""
    W, P = window_size, patch_size
    if min_length < W:
        raise Nw2Error(f"{where}: windows of {min_length} samples are shorter than the model window ({W} samples)")
    hmax = max(horizons)
    if hmax > min_length - 2 * P:
        raise Nw2Error(f"{where}: horizon {hmax} leaves less than two patches of context in windows of "
                       f"{min_length} samples")
    origin = min(W, min_length - hmax)
    context = origin // P * P
    if context < 2 * P:
        raise Nw2Error(f"{where}: a context of {context} samples is shorter than two patches ({2 * P})")
    if adapt and context < 4 * P:
        raise Nw2Error(f"a context of {context} samples is too short for test-time adaptation (four patches, "
                       f"{4 * P} samples); pass --no-adapt or shorter horizons")
    return Protocol(W, P, tuple(horizons), int(min_length), int(origin), int(context))


@dataclass
class Scores:
    """One batch's results: ``forecasts[method]`` (B, Hmax), ``scores[method][metric]`` (B, n_horizons),
    ``fell_back`` (B,) (seasonal naive without a period), ``embedding`` (B, D) of the first window (or None),
    ``mase_scale`` (B,) the in-sample MAE of seasonal naive on the context (:func:`.relative.in_sample_scale`),
    ``valid_samples[method]`` (B,) the valid prediction time in samples (:func:`valid_samples`)."""

    forecasts: dict[str, np.ndarray]
    scores: dict[str, dict[str, np.ndarray]]
    fell_back: np.ndarray
    embedding: np.ndarray | None
    mase_scale: np.ndarray
    valid_samples: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Scorer:
    """Scores batches of rows under a :class:`Protocol`; keeps the seconds spent per forecaster. ``trained``
    holds the baselines fitted on the training split (:func:`.trained.fit_trained_baselines`), by name."""

    model: torch.nn.Module
    protocol: Protocol
    adapt: bool = True
    device: str = "cpu"
    embed_windows: bool = False
    trained: dict = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(m for m in METHODS if (self.adapt or m != "adapted")
                     and (m != "without_interventions" or self.model.config.interventions)
                     and (m not in TRAINED_BASELINES or m in self.trained))

    def _tick(self, name: str, t0: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[:, :, None].to(self.device)

    def __call__(self, x: np.ndarray, scale: np.ndarray, fs: np.ndarray | None = None,
                 u: np.ndarray | None = None) -> Scores:
        """Score a batch of rows ``x`` (B, need) with their ``scale``; ``fs`` (B,) their sampling rates, for a
        model with ``rate_conditioning`` (``None``: its reference rate); ``u`` (B, need, K) their known-ahead
        interventions, for a model with intervention inputs (NaN, or ``None``: none), given over the context and
        the horizon."""
        pr = self.protocol
        rates = None if fs is None else torch.from_numpy(np.asarray(fs, dtype=np.float32)).to(self.device)
        ctx = x[:, pr.origin - pr.context:pr.origin]
        truth = x[:, pr.origin:pr.origin + pr.max_horizon].astype(np.float64)
        H = pr.max_horizon
        drive = None
        if u is not None and self.model.config.interventions:
            drive = torch.from_numpy(np.ascontiguousarray(u[:, pr.origin - pr.context:pr.origin + H],
                                                          np.float32)).to(self.device)
        preds: dict[str, np.ndarray] = {}
        with torch.no_grad():
            t0 = time.perf_counter()
            preds["model"] = self.model.predict(self._tensor(ctx), H, fs=rates,
                                                interventions=drive)[:, :, 0].double().cpu().numpy()
            self._tick("model", t0)
            if self.adapt:
                t0 = time.perf_counter()
                preds["adapted"] = self.model.predict(self._tensor(ctx), H, adapt=True, fs=rates,
                                                      interventions=drive)[:, :, 0].double().cpu().numpy()
                self._tick("adapted", t0)
            if "without_interventions" in self.methods:
                t0 = time.perf_counter()
                preds["without_interventions"] = (preds["model"] if drive is None else self.model.predict(
                    self._tensor(ctx), H, fs=rates)[:, :, 0].double().cpu().numpy())
                self._tick("without_interventions", t0)
        c64 = ctx.astype(np.float64)
        t0 = time.perf_counter()
        preds["last_value"] = baselines.last_value(c64, H)
        self._tick("last_value", t0)
        t0 = time.perf_counter()
        period = baselines.seasonal_period(c64)
        preds["seasonal_naive"], fell_back = baselines.seasonal_naive(c64, H, period)
        self._tick("seasonal_naive", t0)
        t0 = time.perf_counter()
        preds["mean"] = baselines.window_mean(c64, H)
        self._tick("mean", t0)
        t0 = time.perf_counter()
        preds["ar"] = baselines.ar_forecast(c64, H)
        self._tick("ar", t0)
        for name, forecaster in self.trained.items():
            t0 = time.perf_counter()
            preds[name] = forecaster(c64, H)
            self._tick(name, t0)

        t0 = time.perf_counter()
        scale = np.abs(np.asarray(scale, dtype=np.float64))
        out: dict[str, dict[str, np.ndarray]] = {}
        for m in self.methods:
            cols: dict[str, list[np.ndarray]] = {k: [] for k in METRICS if k != "latent_distance"}
            for h in pr.horizons:
                err = preds[m][:, :h] - truth[:, :h]
                mae = np.abs(err).mean(1)
                cols["mse"].append((err * err).mean(1))
                cols["mae"].append(mae)
                cols["mae_physical"].append(mae * scale)
                cols["lsd"].append(spectra.log_spectral_distance(preds[m][:, :h], truth[:, :h]))
                cols["spectral_corr"].append(spectra.spectral_correlation(preds[m][:, :h], truth[:, :h]))
            out[m] = {k: np.stack(v, axis=1) for k, v in cols.items()}
        self._tick("scores", t0)

        t0 = time.perf_counter()
        B = x.shape[0]
        with torch.no_grad():
            dist = {m: [] for m in self.methods}
            for h in pr.horizons:
                seqs = np.concatenate([np.concatenate([c64, s[:, :h]], axis=1)
                                       for s in [truth] + [preds[m] for m in self.methods]], axis=0)
                e = self.model.embed(self._tensor(seqs), fs=None if rates is None else rates.repeat(
                    1 + len(self.methods))).double().cpu()
                e = torch.nn.functional.normalize(e, dim=1, eps=1e-12)
                et = e[:B]
                for i, m in enumerate(self.methods):
                    em = e[(i + 1) * B:(i + 2) * B]
                    dist[m].append((1.0 - (em * et).sum(1)).clamp_min(0.0).numpy())
            for m in self.methods:
                out[m]["latent_distance"] = np.stack(dist[m], axis=1)
            emb = None
            if self.embed_windows:
                emb = self.model.embed(self._tensor(x[:, :pr.window_size]), fs=rates).double().cpu().numpy()
        self._tick("embed", t0)
        unit = c64.std(1)
        valid = {m: valid_samples(preds[m], truth, unit) for m in self.methods}
        return Scores(preds, out, fell_back, emb, in_sample_scale(c64, period), valid)


#: Normalised error above which a forecast is no longer valid (Wikner et al. 2021; dysts' forecasting benchmark).
VALID_THRESHOLD = 0.4


def valid_samples(forecast: np.ndarray, truth: np.ndarray, unit: np.ndarray,
                  threshold: float = VALID_THRESHOLD) -> np.ndarray:
    """Per window, the number of forecast samples before the normalised error
    ``|f_t - y_t| / sigma`` first exceeds ``threshold`` (``sigma`` the context's standard deviation; the
    whole horizon when it never does; NaN for a flat context). float64 (B,)."""
    sigma = np.asarray(unit, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        bad = np.abs(np.asarray(forecast, np.float64) - truth) > threshold * sigma[:, None]
    first = np.where(bad.any(1), bad.argmax(1), truth.shape[1]).astype(np.float64)
    return np.where(sigma > 1e-12, first, np.nan)


def windows_per_second(windows: int, seconds: float) -> float | None:
    if windows <= 0 or seconds <= 0 or not math.isfinite(seconds):
        return None
    return windows / seconds
