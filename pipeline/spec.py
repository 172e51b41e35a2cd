"""Corpus specs: YAML files that describe data, never code, loaded into frozen dataclasses.

Unknown fields and wrong types are rejected with a message naming the field and the file. Paths in
``sources`` are relative to the spec file. A source names either ``paths`` (files, folders or globs)
or ``sample`` (a real recording from ``nw2 samples list``, fetched on demand).
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from nw2.core.errors import SpecError
from nw2.pipeline.balance.strategies import CAP_GROUPS, STRATEGIES, ParamError, choices, spec_params
from nw2.pipeline.derive import SERIES as DERIVED_SERIES
from nw2.pipeline.readers import FORMATS
from nw2.pipeline.records import MODALITIES


@dataclass(frozen=True)
class InterventionSpec:
    """One intervention of a file source: a channel, or the per-sample label, stored as an intervention row of
    every window group (``role`` ``known`` or ``observed``) instead of a signal (``docs/ingest.md``,
    "Interventions")."""

    availability: Literal["known", "observed"]
    """``known``: its future is given at forecast time (a planned dose, a protocol's schedule, a forcing);
    ``observed``: known only up to the forecast origin (a measured activity). Never guessed: required."""
    channel: str | None = None
    """The file's channel that holds it (as the reader names it); give this or ``label``."""
    label: bool = False
    """The file's per-sample label (``label_column``, or the reader's own: PAMAP2's activityID, WESAD's
    condition); give this or ``channel``."""
    name: str | None = None
    """The stored channel name; default: the channel's name, or ``label``."""
    kind: Literal["continuous", "categorical"] = "continuous"
    """``continuous`` (stored in the file's units, never normalized or filtered) or ``categorical`` (stored as
    the code of its category, the index in ``categories``)."""
    categories: tuple[str | int, ...] | None = None
    """A categorical intervention's values as the file writes them (``[1, 2, 3]``, ``[baseline, stress]``); a
    value outside them is stored as missing. Required for ``categorical``, refused for ``continuous``."""

    @property
    def stored_name(self) -> str:
        return self.name or self.channel or "label"


@dataclass(frozen=True)
class SourceSpec:
    """One group of input files that share a dataset name and reader options."""

    dataset: str
    """Dataset name stored in every row of these files."""
    kind: Literal["files"] = "files"
    """``files`` (the default); ``synthetic`` makes the source a :class:`SyntheticSourceSpec`."""
    paths: tuple[str, ...] = ()
    """Files, folders (searched recursively) or glob patterns, relative to the spec file."""
    sample: str | None = None
    """A registry sample (``nw2 samples list``) instead of paths; its reader options are filled in."""
    format: str = "auto"
    """Reader name or ``auto`` (extension and content)."""
    fs: float | None = None
    """Sampling rate for formats that carry none."""
    modality: str | None = None
    """Modality of every channel; default: guessed from channel names."""
    unit: str | None = None
    """Physical unit of every channel; default: from the file."""
    channels: tuple[str, ...] | None = None
    """Keep only these channels (names as the reader reports them)."""
    columns: tuple[str, ...] | None = None
    """Column names for headerless tables."""
    time_column: str | None = None
    """Column holding time stamps; gives the rate when ``fs`` is not set."""
    label_column: str | None = None
    """Column or key holding a per-sample label."""
    delimiter: str | None = None
    """CSV field separator; default: sniffed."""
    has_header: bool | None = None
    """Whether a CSV has a header row; default: sniffed."""
    subject: str | None = None
    """Subject id for every file of this source; default: from the file, else its stem."""
    subject_pattern: str | None = None
    """Regular expression on the file's relative path whose first group is the subject id."""
    record_pattern: str | None = None
    """Regular expression on the file's relative path whose first group is the record id; default: the file stem.
    Files of one subject with the same stem (``day1/data.csv``, ``day2/data.csv``) need it, or their windows
    would share ids (such a source is refused before anything is read)."""
    extra: dict = field(default_factory=dict)
    """Format-specific reader options (see each reader's documentation)."""
    derive: tuple[str, ...] | None = None
    """Store slow series derived from the waveforms instead of the waveforms themselves: ``heart_rate`` and
    ``ibi`` (from ECG or PPG beats), ``respiration_rate``, ``eda_tonic`` (``pipeline/derive.py``), each at the
    store's ``target_fs`` (which must lie below the channels' rate: 1 Hz, say, in a spec of its own)."""
    interventions: tuple[InterventionSpec, ...] = ()
    """Channels or the label stored as interventions tied to the windows (:class:`InterventionSpec`)."""


@dataclass(frozen=True)
class SyntheticSourceSpec:
    """A source that generates its windows (``kind: synthetic``), each row carrying its true dynamics in the
    ground-truth columns (``docs/ingest.md``, "Synthetic sources")."""

    kind: Literal["synthetic"]
    """``synthetic``: sets this source apart from the file sources (whose ``kind`` is ``files``, the default)."""
    generator: Literal["dysts", "physio", "driven"]
    """``dysts``: the flows and maps of the dysts package, with their Lyapunov spectrum from the Jacobian;
    ``physio``: NeuroKit2's ECG, PPG, respiration, EDA and EMG simulators (no known exponent); ``driven``:
    systems driven by a switching, piecewise-constant forcing given as the channel ``forcing``
    (``pipeline.synthetic.driven``: ``oscillator``, ``duffing``, ``dose``)."""
    dataset: str | None = None
    """Dataset name of every row; default: the generator's name."""
    systems: tuple[str, ...] | None = None
    """Systems run at their default parameters: dysts class names (``Lorenz``, ``Henon``, ...) or physio signals
    (``ecg ppg rsp eda emg``); ``null`` for all of them, ``[]`` for none (only the sweeps)."""
    sweeps: dict | str = field(default_factory=dict)
    """Parameter sweeps: ``{SYSTEM: {PARAM: [lo, hi], steps: K}}`` (a list of them sweeps a system in several
    parameters; for physio several ranges in one make a grid), or ``{SYSTEM: ready}`` for nw2's ready sweeps of
    that system, or ``ready`` for all of them."""
    points_per_period: int = 50
    """dysts flows: samples per mean period of the system at its default parameters."""
    coordinates: tuple[int, ...] = (0,)
    """dysts: the state coordinates observed, one channel each (``x0``, ``x1``, ...); a forced system adds its
    forcing signal as the channel ``forcing``."""
    noise: tuple[float, ...] = (0.0,)
    """Observation noise levels: Gaussian noise of this standard deviation, as a fraction of the clean channel's,
    added to every observed coordinate; each level is a record of its own."""
    windows: int = 4
    """Windows per setting (system, parameters) and noise level: the trajectory is as long as that many windows."""
    fs: float | None = None
    """Sampling rate the samples are given at (one sample per step of a map, ``points_per_period`` per period of a
    flow); default: ``preprocess.target_fs``. ``true_lyapunov`` is per second at this rate."""
    bands: int = 4
    """A sweep's steps are cut into this many contiguous parameter bands; with ``subjects: bands`` each band is a
    subject, so val and test hold bands that no training window saw."""
    subjects: Literal["bands", "systems"] = "bands"
    """What the split's subjects are: ``bands`` (system, sweep and parameter band) or ``systems`` (every window of
    a system in one split: held-out systems)."""
    seed: int = 0
    """Seed of the initial conditions and the noise: the same spec and seed give the same bytes."""
    chunk: int = 8
    """Settings per task (a task is one manifest entry; each setting is a piece of it)."""


@dataclass(frozen=True)
class PreprocessSpec:
    """Per-channel signal preparation, applied before windowing."""

    target_fs: float = 100.0
    """Every channel is resampled to this rate (polyphase, anti-aliased), unless ``rates`` sets its modality's."""
    rates: dict = field(default_factory=dict)
    """Target rate per modality, overriding ``target_fs`` for channels of recordings of that modality
    (``{eeg: 160, ecg: 250, eda: 4}``); a derived series takes its stored modality's (``hr`` for heart rate)."""
    bandpass: tuple[float, float] | None = None
    """Zero-phase Butterworth band-pass ``[low, high]`` Hz; ``null`` for none."""
    notch: float | None = None
    """Mains notch frequency (50 or 60 Hz); ``null`` for none."""
    clean: bool = True
    """Cleaning: non-finite samples and outlier jumps become missing and are interpolated."""
    outlier_range: float = 1.0
    """A jump is a sample further from its 50 ms rolling median than this multiple of the channel's
    0.5-99.5 percentile range: sparse physiological peaks (R waves) stay, electrode pops go."""
    detrend: bool = True
    """Remove a linear trend from each window."""
    normalize: str = "zscore"
    """Per-window normalization: ``zscore``, ``robust`` (median/IQR) or ``none``. Scale and offset
    are stored so that ``physical = sample * scale + offset``."""

    def rate(self, modality: str) -> float:
        """The target rate of a channel of ``modality``."""
        return float(self.rates.get(modality, self.target_fs))


@dataclass(frozen=True)
class WindowSpec:
    """Fixed-length windows and the quality checks that drop bad ones."""

    length: int = 1024
    """Window length in samples at ``target_fs``."""
    stride: int = 1024
    """Step between window starts in samples at ``target_fs``."""
    max_missing: float = 0.2
    """Drop a window when more than this fraction of samples is missing (NaN/inf); shorter gaps are
    interpolated."""
    max_flat: float = 0.5
    """Drop a window when more than this fraction of it lies in constant runs of ``flat_run_s``."""
    flat_run_s: float = 1.0
    """Shortest constant stretch, in seconds at the source rate, counted as flat-lined."""
    max_clipped: float = 0.2
    """Drop a window when more than this fraction of samples sits at its minimum or maximum."""
    lengths: dict = field(default_factory=dict)
    """Window length per modality, in samples at that modality's rate (``{ecg: 2048, hr: 256}``), overriding
    ``length``; its stride keeps ``stride / length`` unless ``strides`` sets it."""
    strides: dict = field(default_factory=dict)
    """Stride per modality, in samples at its rate, overriding the one ``lengths`` implies."""

    def shape(self, modality: str) -> tuple[int, int]:
        """``(length, stride)`` of the windows of a channel of ``modality``."""
        length = int(self.lengths.get(modality, self.length))
        default = self.stride if modality not in self.lengths else max(1, round(length * self.stride / self.length))
        return length, int(self.strides.get(modality, default))


@dataclass(frozen=True)
class SplitSpec:
    """Subject-disjoint train/val/test assignment, a pure function of the subject key."""

    train: float = 0.8
    val: float = 0.1
    test: float = 0.1
    seed: int = 0
    """Changes the assignment; the same seed gives the same split on any machine."""
    fixed: dict = field(default_factory=dict)
    """``"dataset/subject": split`` overrides, for held-out subjects chosen by hand."""


@dataclass(frozen=True)
class MetricsSpec:
    """Chaos metrics computed per window after ingest (``nw2 metrics`` takes the same section)."""

    enabled: bool = True
    """Run the metrics stage at the end of ``nw2 ingest`` (``--no-metrics`` turns it off)."""
    names: tuple[str, ...] | None = None
    """Metrics to compute (``docs/metrics.md`` lists them); ``null`` for all of them."""
    engine: str = "numba"
    """``numba`` (nw2's kernels) or ``reference`` (the same metrics with nolds/antropy, to cross-check)."""
    params: dict = field(default_factory=dict)
    """Per-metric parameters overriding the defaults, e.g. ``{sample_entropy: {r: 0.15}}``."""


#: Strategies of ``nw2 balance``: the names of the registry ``pipeline.balance.strategies.STRATEGIES``.
BALANCE_STRATEGIES = tuple(STRATEGIES)
#: A strategy name, as the balance section's ``strategy`` field takes it.
StrategyName = Literal[BALANCE_STRATEGIES]
#: Splits a window store holds.
SPLITS = ("train", "val", "test")


def _with_strategy_params(cls):
    """Adds to ``cls`` one field per strategy parameter that a spec sets (``spec_params``: ``by``,
    ``tau``, ...), after its own fields, with the registry's type and default."""
    for name, (strategy, f, hint) in spec_params().items():
        if name in cls.__annotations__:
            raise TypeError(f"strategy {strategy}: parameter {name!r} clashes with the field {cls.__name__}.{name}")
        cls.__annotations__[name] = hint
        setattr(cls, name, field(default=f.default, metadata={**f.metadata, "strategy": strategy}))
    return cls


@dataclass(frozen=True)
@_with_strategy_params
class BalanceSpec:
    """``nw2 balance``: how a store with metrics becomes a balanced corpus (flags override each field).

    After the fields below come the strategies' parameters, one field each (``by`` of ``stratified``,
    ``tau`` of ``temperature``, ...), with the type, default and documentation the registry
    ``pipeline.balance.strategies.STRATEGIES`` gives them (``spec_params()``); every one is checked,
    whichever strategy is chosen."""

    strategy: StrategyName | None = "coverage"
    """A strategy of the registry (``BALANCE_STRATEGIES``, ``docs/corpus_format.md``); ``--strategy``
    overrides it. The default, ``coverage``, is farthest-point selection in the full metric space (``null``,
    as older specs wrote, means the default)."""
    size: int | None = None
    """Rows to select from the balanced splits (``--size``); give this or ``fraction``, not both."""
    fraction: float | None = None
    """Rows to select as a fraction of the candidate rows (``--fraction``), rounded to the nearest row;
    above 1 only with ``replace``."""
    seed: int = 0
    """Seed of every random choice: the same store, spec and seed give a byte-identical corpus."""
    replace: bool = False
    """Draw with replacement: a row may be selected (and written) more than once."""
    weights_only: bool = False
    """Keep every candidate row once and write the strategy's sampling weight in ``sample_weight``
    instead of subsampling (for trainers that sample themselves); ``size``/``fraction`` must be unset."""
    splits: tuple[str, ...] = ("train",)
    """Splits that are balanced; the others are carried into the corpus unchanged."""
    metrics: tuple[str, ...] | None = None
    """Metric columns spanning the balancing space; ``null`` for every metric column the store holds."""
    scale: Literal["robust", "quantile"] = "robust"
    """How each metric is put on a common scale: ``robust`` z-scores (median and IQR, clipped at 5 IQRs:
    distances keep their meaning) or ``quantile`` ranks (uniform on [0, 1])."""
    pca: int | None = None
    """Reduce the scaled metrics to this many principal components (a projection); ``null`` keeps all."""
    bins: int = 5
    """Quantile bins per dimension of the grid (``bins ** dims`` cells at most)."""
    caps: dict | None = None
    """Caps per group of the selection: ``{record: 0.05, subject: 0.1, dataset: 0.5}`` (any of them); a
    float in (0, 1] is a share of the selected rows, an integer a row count. Groups that reach their cap
    are closed and the strategy picks the rest elsewhere (``select_constrained``)."""
    mixture: dict | None = None
    """Target weight per dataset name (``{mitbih: 1, dysts: 2}``): each dataset's quota is its share of
    the weights (water-filled when it has fewer rows), the strategy balancing inside each; a dataset
    left out gets no rows."""
    dedup: bool = True
    """Drop near-duplicate windows of the balanced splits before selecting (exact and affine copies by a
    hash of the quantized z-scored samples, near copies by spectral signature and time-domain correlation
    >= 0.98; ``pipeline/balance/dedup.py``); the first in store order is kept, the counts go to corpus.json."""
    nan_policy: Literal["own_bin", "exclude"] = "own_bin"
    """Rows with an undefined (null) chosen metric: ``own_bin`` (one extra cell, id -1) or ``exclude``
    (left out of the balanced splits; counted in corpus.json)."""


@dataclass(frozen=True)
class ArmSpec:
    """One corpus of ``nw2 experiment``: a strategy and a size, drawn from the store's train split."""

    name: str
    """How the arm is named in the report and in the output directories (letters, digits, ``_``, ``-``)."""
    strategy: str
    """A ``nw2 balance`` strategy (``random`` for the baseline)."""
    size: int
    """Train rows selected for the arm's corpus."""
    balance: dict = field(default_factory=dict)
    """Other ``balance:`` fields for this arm only (``tau``, ``bins``, ``k``, ...), over the spec's section."""


@dataclass(frozen=True)
class ExperimentSpec:
    """``nw2 experiment``: corpora of several strategies from one store, pretrained with the same budget and
    several seeds, evaluated on the same windows. Without ``arms``: NormWear-2's comparison, balanced(``size``)
    with the balance section's strategy against random(2 x ``size``)."""

    size: int | None = None
    """N: rows of the balanced corpus (the random one gets 2N). Needed unless ``arms`` is given."""
    arms: tuple[ArmSpec, ...] | None = None
    """Any list of arms compared side by side, instead of balanced(N) against random(2N)."""
    baseline: str | None = None
    """The arm every other is compared with (default: the random 2N arm, or the last of ``arms``)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """One corpus draw and one training run per arm and seed (at least 3, for confidence intervals)."""
    config: str = "tiny"
    """Model preset (or JSON file) of every run."""
    model: dict = field(default_factory=dict)
    """``ModelConfig`` overrides of every run (``window_size``, ``embed_dim``, ...)."""
    train: dict = field(default_factory=dict)
    """``nw2 pretrain`` settings of every run (``blr``, ``batch_size``, ``warmup_epochs``, ...); ``epochs``
    comes from ``steps``."""
    steps: int = 100
    """The training budget: optimizer steps per run, the same for every arm (a smaller corpus gets more
    epochs; the epochs are rounded, so the steps each run took are reported)."""
    eval_split: str = "test"
    """Split(s) of the store every run is evaluated on (comma-separated, e.g. ``val,test``)."""
    horizons: tuple[int, ...] | None = None
    """Forecast horizons in samples (default: ``nw2 evaluate``'s)."""
    max_windows: int | None = None
    """Evaluate on at most this many windows of the split (the same ones for every run)."""
    bootstrap: int = 2000
    """Bootstrap resamples for the confidence intervals (over windows and seeds)."""
    confidence: float = 0.95
    """Coverage of the confidence intervals."""


@dataclass(frozen=True)
class IngestSpec:
    """A whole ``nw2 ingest`` run."""

    name: str
    sources: tuple[SourceSpec | SyntheticSourceSpec, ...]
    preprocess: PreprocessSpec = PreprocessSpec()
    windows: WindowSpec = WindowSpec()
    split: SplitSpec = SplitSpec()
    metrics: MetricsSpec = MetricsSpec()
    balance: BalanceSpec = BalanceSpec()
    """``nw2 balance`` settings; ``nw2 ingest`` ignores them."""
    experiment: ExperimentSpec = ExperimentSpec()
    """``nw2 experiment`` settings; the other stages ignore them."""
    max_piece_samples: int = 4_000_000
    """Work unit size: a file with more samples (all channels) is split by channels and time so one
    huge file does not serialize the run."""
    base_dir: str = "."
    """Directory that relative paths are resolved against (the spec file's folder)."""


def _convert(value, hint, where: str):
    """Check ``value`` against a type hint, converting lists to tuples and ints to floats."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        if all(dataclasses.is_dataclass(a) for a in args):
            return _build(_by_kind(args, value, where), value, where)
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except SpecError as err:
                errors.append(err)
        raise errors[0]
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin is Literal:  # the type of its values here; whether it is one of them, in the section's checks
        return _convert(value, type(typing.get_args(hint)[0]), where)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise SpecError(f"{where}: expected a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise SpecError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint in (str, bool, dict):
        if not isinstance(value, hint):
            raise SpecError(f"{where}: expected {hint.__name__}, got {value!r}")
        return value
    raise TypeError(f"unsupported type hint {hint}")  # a bug in this module, not user input


def _by_kind(classes, data, where: str):
    """The dataclass of a union that a mapping's ``kind`` field names (the first class's default when absent)."""
    kinds = {typing.get_args(typing.get_type_hints(c)["kind"])[0]: c for c in classes}
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping, got {type(data).__name__}")
    kind = data.get("kind", next(iter(kinds)))
    if kind not in kinds:
        raise SpecError(f"{where}.kind: {kind!r} is not one of {', '.join(kinds)}")
    return kinds[kind]


def _build(cls, data, where: str):
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise SpecError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(sorted(names))})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _convert(data[f.name], hints[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise SpecError(f"{where}: missing required field {f.name!r}")
    return cls(**kwargs)


def _validate(spec: IngestSpec, where: str) -> None:
    if not spec.sources:
        raise SpecError(f"{where}: sources is empty")
    for i, src in enumerate(spec.sources):
        at = f"{where}.sources[{i}]"
        if isinstance(src, SyntheticSourceSpec):
            validate_synthetic(src, at)
            continue
        if bool(src.paths) == bool(src.sample):
            raise SpecError(f"{at}: give exactly one of 'paths' or 'sample'")
        if src.format not in FORMATS:
            raise SpecError(f"{at}.format: {src.format!r} is not one of {', '.join(FORMATS)}")
        if src.modality is not None and src.modality not in MODALITIES:
            raise SpecError(f"{at}.modality: {src.modality!r} is not one of {', '.join(MODALITIES)}")
        if src.fs is not None and src.fs <= 0:
            raise SpecError(f"{at}.fs: must be positive")
        for name in ("subject_pattern", "record_pattern"):
            try:
                re.compile(getattr(src, name) or "")
            except re.error as err:
                raise SpecError(f"{at}.{name}: not a regular expression ({err})") from None
        _validate_interventions(src, at)
        if src.derive is not None:
            unknown = [d for d in src.derive if d not in DERIVED_SERIES]
            if unknown or not src.derive or len(set(src.derive)) != len(src.derive):
                raise SpecError(f"{at}.derive: give distinct derived series among {', '.join(DERIVED_SERIES)}"
                                + (f" ({unknown[0]!r} is none of them)" if unknown else ""))
    pre, win, split = spec.preprocess, spec.windows, spec.split
    if pre.target_fs <= 0:
        raise SpecError(f"{where}.preprocess.target_fs: must be positive")
    for modality, rate in pre.rates.items():
        if modality not in MODALITIES:
            raise SpecError(f"{where}.preprocess.rates: {modality!r} is not a modality ({', '.join(MODALITIES)})")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
            raise SpecError(f"{where}.preprocess.rates.{modality}: must be a positive number of Hz, not {rate!r}")
    generated = _synthetic_modalities(spec)
    for name, keys in (("preprocess.rates", pre.rates), ("windows.lengths", win.lengths),
                       ("windows.strides", win.strides)):
        clash = sorted(generated & set(keys))
        if clash:
            raise SpecError(f"{where}.{name}: {clash[0]!r} is also a modality of this spec's synthetic sources, which "
                            f"are generated at target_fs and windows.length; drop it, or give the synthetic "
                            f"source its own spec")
    for name, rate in [(f"rates.{m}", float(r)) for m, r in pre.rates.items()]:
        if pre.bandpass is not None and not pre.bandpass[1] < rate / 2:
            raise SpecError(f"{where}.preprocess.bandpass: its high edge {pre.bandpass[1]:g} Hz must lie below half "
                            f"of {name} = {rate:g} Hz")
        if pre.notch is not None and not pre.notch < rate / 2:
            raise SpecError(f"{where}.preprocess.notch: {pre.notch:g} Hz must lie below half of {name} = {rate:g} Hz")
    if pre.normalize not in ("zscore", "robust", "none"):
        raise SpecError(f"{where}.preprocess.normalize: {pre.normalize!r} is not one of zscore, robust, none")
    if pre.bandpass is not None and not 0 <= pre.bandpass[0] < pre.bandpass[1] < pre.target_fs / 2:
        raise SpecError(f"{where}.preprocess.bandpass: needs 0 <= low < high < target_fs/2 = {pre.target_fs / 2}")
    if pre.notch is not None and not 0 < pre.notch < pre.target_fs / 2:
        raise SpecError(f"{where}.preprocess.notch: must lie below target_fs/2 = {pre.target_fs / 2}")
    if win.length < 8 or win.stride < 1:
        raise SpecError(f"{where}.windows: length must be >= 8 and stride >= 1")
    for name, least in (("lengths", 8), ("strides", 1)):
        for modality, value in getattr(win, name).items():
            if modality not in MODALITIES:
                raise SpecError(f"{where}.windows.{name}: {modality!r} is not a modality ({', '.join(MODALITIES)})")
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise SpecError(f"{where}.windows.{name}.{modality}: must be an integer >= {least}, not {value!r}")
    for name in ("max_missing", "max_flat", "max_clipped"):
        if not 0 <= getattr(win, name) <= 1:
            raise SpecError(f"{where}.windows.{name}: must lie in [0, 1]")
    fractions = (split.train, split.val, split.test)
    if min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-9:
        raise SpecError(f"{where}.split: train, val and test must be >= 0 and sum to 1")
    bad = [v for v in split.fixed.values() if v not in ("train", "val", "test")]
    if bad:
        raise SpecError(f"{where}.split.fixed: {bad[0]!r} is not one of train, val, test")
    validate_metrics(spec.metrics, f"{where}.metrics")
    validate_balance(spec.balance, f"{where}.balance")
    validate_experiment(spec.experiment, f"{where}.experiment")


def _synthetic_modalities(spec: IngestSpec) -> set[str]:
    """The modalities the spec's synthetic sources generate (``synthetic`` for dysts and driven, the simulators'
    own)."""
    out: set[str] = set()
    for src in spec.sources:
        if isinstance(src, SyntheticSourceSpec):
            if src.generator in ("dysts", "driven"):
                out.add("synthetic")
            else:
                from nw2.pipeline.synthetic.physio import SIGNALS

                names = src.systems or tuple(SIGNALS) + tuple(src.sweeps if isinstance(src.sweeps, dict) else ())
                out |= {SIGNALS[n].modality for n in names if n in SIGNALS}
    return out


def _validate_interventions(src: SourceSpec, at: str) -> None:
    names = []
    for j, iv in enumerate(src.interventions):
        here = f"{at}.interventions[{j}]"
        if iv.availability not in ("known", "observed"):
            raise SpecError(f"{here}.availability: {iv.availability!r} is not one of known, observed")
        if iv.kind not in ("continuous", "categorical"):
            raise SpecError(f"{here}.kind: {iv.kind!r} is not one of continuous, categorical")
        if (iv.channel is None) == (not iv.label):
            raise SpecError(f"{here}: give exactly one of 'channel' (a channel of the file) or 'label: true'")
        if iv.kind == "categorical" and not iv.categories:
            raise SpecError(f"{here}.categories: a categorical intervention lists its values as the file writes "
                            f"them (categories: [0, 1, 2]); they are never guessed from the data")
        if iv.kind == "continuous" and iv.categories is not None:
            raise SpecError(f"{here}.categories: only a categorical intervention has categories")
        if iv.categories is not None and len({str(c) for c in iv.categories}) != len(iv.categories):
            raise SpecError(f"{here}.categories: values must be distinct")
        if iv.label and src.label_column is None and src.format not in ("pamap2", "wesad", "auto"):
            raise SpecError(f"{here}: label: true needs the source's label_column (its {src.format} reader has "
                            f"no label of its own)")
        names.append(iv.stored_name)
    if len(set(names)) != len(names):
        raise SpecError(f"{at}.interventions: two interventions are stored as {sorted(n for n in names if names.count(n) > 1)[0]!r}; "
                        f"give one a name")
    if src.interventions and src.derive:
        raise SpecError(f"{at}: interventions and derive in one source are not supported (the derived series has "
                        f"another rate than the label); give the derived series a source of its own")


def validate_synthetic(src: SyntheticSourceSpec, where: str) -> None:
    """Field checks of a synthetic source. Which systems and parameters exist is the generator's to say: an
    unknown one becomes a failed manifest entry naming it, and the rest of the run goes on."""
    for name in ("generator", "subjects"):
        _check_choice(src, name, where)
    if isinstance(src.sweeps, str) and src.sweeps != "ready":
        raise SpecError(f"{where}.sweeps: {src.sweeps!r}: give a mapping of systems to sweeps, or 'ready'")
    for system, sweep in (src.sweeps.items() if isinstance(src.sweeps, dict) else ()):
        if sweep != "ready" and not isinstance(sweep, dict) and not (
                isinstance(sweep, list) and sweep and all(isinstance(one, dict) for one in sweep)):
            raise SpecError(f"{where}.sweeps.{system}: expected {{PARAM: [lo, hi], steps: K}}, a list of them, "
                            f"or 'ready'")
    if src.points_per_period < 4:
        raise SpecError(f"{where}.points_per_period: must be >= 4")
    if not src.coordinates or min(src.coordinates) < 0 or len(set(src.coordinates)) != len(src.coordinates):
        raise SpecError(f"{where}.coordinates: give distinct coordinate indices >= 0")
    if not src.noise or min(src.noise) < 0 or len(set(src.noise)) != len(src.noise):
        raise SpecError(f"{where}.noise: give distinct noise levels >= 0")
    for name in ("windows", "bands", "chunk"):
        if getattr(src, name) < 1:
            raise SpecError(f"{where}.{name}: must be >= 1")
    if src.fs is not None and src.fs <= 0:
        raise SpecError(f"{where}.fs: must be positive")
    if src.seed < 0:
        raise SpecError(f"{where}.seed: must be >= 0")


def experiment_arms(e: ExperimentSpec, balance: BalanceSpec, where: str = "experiment") -> tuple[ArmSpec, ...]:
    """The arms of an experiment: its ``arms``, or balanced(N) with the balance strategy and random(2N)."""
    if e.arms:
        return e.arms
    if e.size is None:
        raise SpecError(f"{where}: give size (N of balanced(N) against random(2N)) or a list of arms")
    strategy = balance.strategy or "grid"
    if strategy == "random":
        raise SpecError(f"{where}: the balance section's strategy is random; balanced(N) needs another one")
    return (ArmSpec(name="balanced", strategy=strategy, size=e.size), ArmSpec(name="random_2x", strategy="random",
                                                                             size=2 * e.size))


def experiment_baseline(e: ExperimentSpec, arms: tuple[ArmSpec, ...]) -> str:
    return e.baseline or arms[-1].name


def validate_experiment(e: ExperimentSpec, where: str = "experiment") -> None:
    """Field by field checks of an experiment section (an empty section is valid: no experiment)."""
    if e.size is not None and e.size < 1:
        raise SpecError(f"{where}.size: must be a positive number of rows")
    for i, arm in enumerate(e.arms or ()):
        at = f"{where}.arms[{i}]"
        if not re.fullmatch(r"[A-Za-z0-9_-]+", arm.name):
            raise SpecError(f"{at}.name: {arm.name!r} must be letters, digits, '_' or '-'")
        if arm.strategy not in BALANCE_STRATEGIES:
            raise SpecError(f"{at}.strategy: {arm.strategy!r} is not one of {', '.join(BALANCE_STRATEGIES)}")
        if arm.size < 1:
            raise SpecError(f"{at}.size: must be a positive number of rows")
        bad = sorted(set(arm.balance) & {"strategy", "size", "fraction", "seed", "weights_only"})
        if bad:
            raise SpecError(f"{at}.balance: {bad[0]!r} is set by the experiment, not per arm")
    names = [a.name for a in e.arms or ()]
    if len(set(names)) != len(names):
        raise SpecError(f"{where}.arms: two arms are named alike")
    if e.arms is not None and len(e.arms) < 2:
        raise SpecError(f"{where}.arms: compare at least two arms")
    if e.baseline is not None and e.arms and e.baseline not in names:
        raise SpecError(f"{where}.baseline: {e.baseline!r} is not the name of an arm ({', '.join(names)})")
    if len(e.seeds) < 1 or len(set(e.seeds)) != len(e.seeds):
        raise SpecError(f"{where}.seeds: give distinct seeds (3 or more for confidence intervals)")
    if e.steps < 1:
        raise SpecError(f"{where}.steps: must be a positive number of optimizer steps")
    if "epochs" in e.train:
        raise SpecError(f"{where}.train.epochs: the budget is set by steps, the same for every arm")
    if e.bootstrap < 100:
        raise SpecError(f"{where}.bootstrap: use at least 100 resamples")
    if not 0.5 <= e.confidence < 1:
        raise SpecError(f"{where}.confidence: must lie in [0.5, 1)")
    if e.horizons is not None and (not e.horizons or min(e.horizons) < 1):
        raise SpecError(f"{where}.horizons: give positive horizons in samples")
    if e.max_windows is not None and e.max_windows < 1:
        raise SpecError(f"{where}.max_windows: must be positive")


def validate_metrics(metrics: MetricsSpec, where: str) -> None:
    """Metric names, engine and parameters checked against the metric functions' signatures."""
    if metrics.names is None and not metrics.params and metrics.engine in ("numba", "reference"):
        return  # the defaults: nothing to check, and no reason to load the kernels to read a spec
    from nw2.pipeline.metrics.suite import check_selection

    try:
        check_selection(metrics.names, metrics.params, metrics.engine)
    except ValueError as err:
        raise SpecError(f"{where}: {err}") from None


def validate_balance(b: BalanceSpec, where: str = "balance") -> None:
    """Field by field checks of a balance section (the store-dependent ones, such as a size larger than
    the candidate rows or a metric the store lacks, are made by ``nw2 balance`` itself)."""
    _check_choice(b, "strategy", where)
    if b.seed < 0:
        raise SpecError(f"{where}.seed: must be >= 0, got {b.seed}")
    if b.size is not None and b.fraction is not None:
        raise SpecError(f"{where}: give size or fraction, not both")
    if b.size is not None and b.size < 1:
        raise SpecError(f"{where}.size: must be >= 1, got {b.size}")
    if b.fraction is not None and not (b.fraction > 0 and (b.fraction <= 1 or b.replace)):
        raise SpecError(f"{where}.fraction: must lie in (0, 1] (above 1 only with replace), got {b.fraction:g}")
    if b.weights_only and (b.size is not None or b.fraction is not None):
        raise SpecError(f"{where}.weights_only: keeps every candidate row; leave size and fraction unset")
    if not b.splits:
        raise SpecError(f"{where}.splits: is empty")
    for s in b.splits:
        if s not in SPLITS:
            raise SpecError(f"{where}.splits: {s!r} is not one of {', '.join(SPLITS)}")
    if len(set(b.splits)) != len(b.splits):
        raise SpecError(f"{where}.splits: names a split twice")
    if b.metrics is not None:
        if not b.metrics:
            raise SpecError(f"{where}.metrics: is empty (null for every metric the store holds)")
        if len(set(b.metrics)) != len(b.metrics):
            raise SpecError(f"{where}.metrics: names a metric twice")
    if b.pca is not None and b.pca < 1:
        raise SpecError(f"{where}.pca: must be >= 1 (null keeps every metric), got {b.pca}")
    if b.bins < 2:
        raise SpecError(f"{where}.bins: must be >= 2, got {b.bins}")
    _check_choice(b, "nan_policy", where)
    _check_choice(b, "scale", where)
    for name, value in (b.caps or {}).items():
        if name not in CAP_GROUPS:
            raise SpecError(f"{where}.caps: {name!r} is not one of {', '.join(CAP_GROUPS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                (isinstance(value, int) and value >= 1) or (isinstance(value, float) and 0 < value <= 1)):
            raise SpecError(f"{where}.caps.{name}: a share in (0, 1] or a row count >= 1, got {value!r}")
    if b.mixture is not None:
        bad = [k for k, v in b.mixture.items()
               if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0]
        if bad:
            raise SpecError(f"{where}.mixture.{bad[0]}: a weight >= 0, got {b.mixture[bad[0]]!r}")
        if not b.mixture or not sum(b.mixture.values()) > 0:
            raise SpecError(f"{where}.mixture: needs a positive weight for at least one dataset")
    if (b.caps or b.mixture) and b.weights_only:
        raise SpecError(f"{where}: caps and mixture select rows; they do not apply with weights_only")
    for strategy in STRATEGIES.values():  # the registry's checks, of every strategy's fields
        try:
            strategy.params(**{name: getattr(b, name) for name in strategy.spec_params})
        except ParamError as err:
            raise SpecError(f"{where}.{err.field}: {err.problem}") from None


def _check_choice(spec, name: str, where: str) -> None:
    """A ``Literal[...]`` field of a spec section holds one of the values its annotation allows (or None)."""
    value, allowed = getattr(spec, name), choices(type(spec), name)
    if value is not None and value not in allowed:
        raise SpecError(f"{where}.{name}: {value!r} is not one of {', '.join(allowed)}")


def balance_from_dict(data: dict, where: str = "balance", base: BalanceSpec | None = None) -> BalanceSpec:
    """A balance section from a mapping, over ``base`` (command-line flags over the spec's section)."""
    merged = dataclasses.asdict(base) if base is not None else {}
    merged.update(data)
    spec = _build(BalanceSpec, merged, where)
    validate_balance(spec, where)
    return spec


def spec_from_dict(data: dict, where: str = "spec", base_dir: str | Path = ".") -> IngestSpec:
    """Build and validate a spec from a mapping (parsed YAML)."""
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping at the top level")
    data = dict(data)
    data.setdefault("base_dir", str(base_dir))
    spec = _build(IngestSpec, data, where)
    _validate(spec, where)
    return spec


def load_spec(path: str | Path) -> IngestSpec:
    """Read a YAML spec file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise SpecError(f"{path}: cannot read ({err.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    return spec_from_dict(data, where=str(path), base_dir=path.parent.resolve())
