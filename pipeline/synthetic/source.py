"""A ``kind: synthetic`` spec source as ingest inputs: settings, tasks, and the records each setting generates.

A *setting* is one system at one set of parameters. The source's settings are its systems at their default
parameters and the steps of its sweeps; they are grouped into tasks (``SyntheticInput``: one manifest entry
each, ``chunk`` settings at most, never two systems or sweeps in one), and every setting is one piece of its
task. A piece generates its setting's trajectory at every noise level, observes the chosen coordinates (and
the forcing of a forced system) as channels, and labels them with the ground truth; the windows are then cut,
checked, normalized and written exactly as a recording's are.

Subjects (what the split assigns): ``SYSTEM/default`` for a default setting and ``SYSTEM/PARAM/bandB`` for
the steps of a sweep in its ``B``-th contiguous band (``subjects: bands``), or ``SYSTEM`` for every setting of
a system (``subjects: systems``).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from dataclasses import dataclass

import numpy as np

from nw2.core.errors import Nw2Error
from nw2.core.hashing import content_id
from nw2.pipeline.readers.base import ReadOptions
from nw2.pipeline.records import GroundTruth, Record
from nw2.pipeline.spec import SyntheticSourceSpec

#: Changes whenever what a setting generates changes (integration, truth, noise): part of every task's id, so
#: a store built by an older generator is never mistaken for a finished one.
GENERATOR_VERSION = 1
#: Extra seconds generated after the last window, so that a resampler (``fs`` other than the target rate)
#: settles before the end, as a recording's pieces read beyond their windows.
TAIL_S = 2.0


class SettingError(Nw2Error):
    """A setting that cannot be generated: the message names the source, the system and its parameters."""


@dataclass(frozen=True)
class Setting:
    """One system at one set of parameters, and the subject its windows belong to."""

    system: str
    params: tuple[tuple[str, float], ...]
    """Every parameter of the system (defaults filled in), sorted by name."""
    subject: str

    @property
    def params_json(self) -> str:
        return json.dumps(dict(self.params), sort_keys=True)

    def label(self) -> str:
        return f"{self.system} " + " ".join(f"{k}={v!r}" for k, v in self.params)


@dataclass(frozen=True)
class SyntheticInput:
    """One task of a synthetic source: a few settings of one system (the ingest stage's unit of input)."""

    path: str
    """A unique key (the display name): ingest merges pieces by it."""
    display: str
    """``synthetic:GENERATOR/SYSTEM/...``: the manifest's ``path`` and the rows' ``source``."""
    source: SyntheticSourceSpec
    settings: tuple[Setting, ...]
    fs: float
    """Sampling rate of the generated samples."""
    format: str = "synthetic"
    channels: None = None

    @property
    def opts(self) -> ReadOptions:
        return ReadOptions(dataset=dataset_of(self.source))

    @property
    def task_id(self) -> str:
        """What the task's windows depend on (its settings and the source's generation fields)."""
        generation = {k: v for k, v in dataclasses.asdict(self.source).items() if k not in ("systems", "sweeps", "chunk")}
        return content_id("synthetic", GENERATOR_VERSION, json.dumps(generation, sort_keys=True),
                          [dataclasses.astuple(s) for s in self.settings], repr(float(self.fs)))


def dataset_of(src: SyntheticSourceSpec) -> str:
    return src.dataset or src.generator


# -- settings --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Group:
    """Settings that form tasks together (one system's default, or one sweep)."""

    system: str
    label: str
    settings: list[Setting]


def expand(src: SyntheticSourceSpec, target_fs: float) -> tuple[list[SyntheticInput], list[tuple[str, str]]]:
    """The source's tasks, and ``(display, reason)`` for every system or sweep it names that cannot be run (an
    unknown system or parameter): those become failed manifest entries and the rest goes on."""
    generator = _generator(src.generator)
    groups, problems = [], []
    prefix = f"synthetic:{src.generator}"
    names = generator.names() if src.systems is None else list(dict.fromkeys(src.systems))
    for system in names:
        try:
            params = generator.resolve(system, {})
        except ValueError as err:
            problems.append((f"{prefix}/{system}", str(err)))
            continue
        subject = system if src.subjects == "systems" else f"{system}/default"
        groups.append(_Group(system, "default", [Setting(system, _sorted(params), subject)]))
    for system, sweep in _sweeps(src, generator, problems, prefix):
        try:
            grid = generator.grid(system, sweep)
        except ValueError as err:
            problems.append((f"{prefix}/{system}", str(err)))
            continue
        swept, points = grid
        settings = []
        for i, params in enumerate(points):
            band = i * src.bands // len(points)
            subject = system if src.subjects == "systems" else f"{system}/{swept}/band{band}"
            settings.append(Setting(system, _sorted(params), subject))
        groups.append(_Group(system, swept, settings))
    fs = float(src.fs if src.fs is not None else target_fs)
    inputs, seen = [], set()
    for group in groups:
        settings = [s for s in group.settings if (s.system, s.params) not in seen]
        seen.update((s.system, s.params) for s in settings)
        for a in range(0, len(settings), src.chunk):
            part = tuple(settings[a:a + src.chunk])
            where = "" if group.label == "default" else f"/{group.label}[{a}:{a + len(part)}]"
            display = f"{prefix}/{group.system}{where}"
            inputs.append(SyntheticInput(display, display, src, part, fs))
    return inputs, problems


def _sorted(params: dict) -> tuple[tuple[str, float], ...]:
    return tuple(sorted((k, float(v)) for k, v in params.items()))


def _sweeps(src, generator, problems, prefix):
    if src.sweeps == "ready":
        yield from generator.ready()
        return
    for system, sweep in src.sweeps.items():
        if sweep == "ready":
            ready = [(s, w) for s, w in generator.ready() if s == system]
            if not ready:
                problems.append((f"{prefix}/{system}", f"no ready sweep for {system!r} (ready: "
                                                       f"{', '.join(sorted({s for s, _ in generator.ready()}))})"))
            yield from ready
        else:  # one sweep, or a list of them (a system swept in two parameters)
            yield from ((system, one) for one in (sweep if isinstance(sweep, list) else [sweep]))


# -- the three generators --------------------------------------------------------------------------------
class _Dysts:
    """``generator: dysts``: ``pipeline.synthetic.systems`` (integration), ``truth`` and ``sweeps``."""

    @staticmethod
    def names():
        from nw2.pipeline.synthetic.systems import system_names

        return list(system_names())

    @staticmethod
    def resolve(system, params):
        from nw2.pipeline.synthetic.systems import resolve_params

        return resolve_params(system, params)

    @staticmethod
    def ready():
        from nw2.pipeline.synthetic.sweeps import READY_SWEEPS

        return [(system, sweep) for system, sweeps in READY_SWEEPS.items() for sweep in sweeps]

    @staticmethod
    def grid(system, sweep):
        from nw2.pipeline.synthetic.sweeps import Sweep, parse_sweep
        from nw2.pipeline.synthetic.systems import resolve_params

        if not isinstance(sweep, Sweep):
            sweep = parse_sweep(system, sweep)
        points = [resolve_params(system, {**sweep.fixed, sweep.param: float(v)}) for v in sweep.values()]
        return sweep.param, points


class _Simulators:
    """``generator: physio`` (``pipeline.synthetic.physio``) or ``driven`` (``pipeline.synthetic.driven``): modules
    with ``resolve_params`` and ``READY_GRIDS``; a sweep of several parameters is their grid."""

    def __init__(self, module: str, names: str) -> None:
        self.module, self.names_function = module, names

    def _module(self):
        import importlib

        return importlib.import_module(f"nw2.pipeline.synthetic.{self.module}")

    def names(self):
        return list(getattr(self._module(), self.names_function)())

    def resolve(self, system, params):
        return self._module().resolve_params(system, params)

    def ready(self):
        return list(self._module().READY_GRIDS.items())

    def grid(self, system, sweep):
        return _range_grid(system, sweep, self._module().resolve_params)


def _range_grid(system, sweep, resolve_params):
    """A sweep ``{PARAM: [lo, hi], ..., steps: K}`` as ``("PARAM+...", points)``: every combination of ``K`` evenly
    spaced values per parameter (physio and driven)."""
    sweep = dict(sweep)
    steps = sweep.pop("steps", None)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"{system}: a sweep needs 'steps', a positive integer")
    if not sweep:
        raise ValueError(f"{system}: a sweep needs at least one PARAM: [lo, hi]")
    axes = []
    for name, bounds in sweep.items():
        if (not isinstance(bounds, (list, tuple)) or len(bounds) != 2
                or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)):
            raise ValueError(f"{system}.{name}: expected [lo, hi], got {bounds!r}")
        axes.append([(name, float(v)) for v in np.linspace(bounds[0], bounds[1], steps)])
    points = [resolve_params(system, dict(combo)) for combo in itertools.product(*axes)]
    return "+".join(sweep), points


_GENERATORS = {"dysts": _Dysts, "physio": _Simulators("physio", "signal_names"),
               "driven": _Simulators("driven", "system_names")}


def _generator(name: str):
    return _GENERATORS[name]


# -- one setting's records -------------------------------------------------------------------------------
def samples_needed(n_target: int, fs: float, target_fs: float) -> int:
    """Source samples that cover ``n_target`` samples at the target rate, plus :data:`TAIL_S`."""
    if fs == target_fs:
        return n_target
    return int(math.ceil((n_target / target_fs + TAIL_S) * fs))


def generate(item: SyntheticInput, index: int, n_target: int, target_fs: float) -> list[Record]:
    """The records of setting ``index`` of ``item``: one per noise level and observed channel, each with its
    ground truth; ``n_target`` samples at the target rate are covered. Raises :class:`SettingError` naming the
    source, system and parameters when the setting cannot be generated."""
    setting, src = item.settings[index], item.source
    n = samples_needed(n_target, item.fs, target_fs)
    seed = int(content_id("synthetic-seed", src.seed, setting.system, setting.params)[:8], 16)
    try:
        if src.generator == "dysts":
            channels, truth = _dysts_channels(setting, src, n, item.fs, seed)
        elif src.generator == "driven":
            channels, truth = _driven_channels(setting, src, n, item.fs, seed)
        else:
            channels, truth = _physio_channels(setting, n, item.fs, seed)
    except SettingError:
        raise
    except Exception as err:  # a simulator that raises, an integration that blows up: this setting only
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SettingError(f"{item.display}: {setting.label()}: {text}") from None
    records = []
    for noise in src.noise:
        truth_here = dataclasses.replace(truth, noise=float(noise))
        # the seed too: two sources of one dataset that differ only by it give other trajectories, other ids
        record = f"{setting.label()} noise={noise!r} seed={src.seed}"
        for name, modality, values, observed in channels:
            if observed and noise > 0:
                rng = np.random.default_rng(int(content_id("noise", seed, noise, name)[:16], 16))
                values = values + noise * float(values.std()) * rng.standard_normal(values.size)
            # an unobserved channel is the forcing: a known-ahead intervention of its window group
            records.append(Record(dataset=dataset_of(src), subject=setting.subject, record=record, channel=name,
                                  modality=modality, unit="", fs=item.fs, samples=values, truth=truth_here,
                                  role="signal" if observed else "known"))
    return records


def _dysts_channels(setting: Setting, src: SyntheticSourceSpec, n: int, fs: float, seed: int):
    from nw2.pipeline.synthetic.systems import simulate, system_info
    from nw2.pipeline.synthetic.truth import truth as true_dynamics

    params = dict(setting.params)
    info = system_info(setting.system)
    # a coordinate the system lacks is left out (a 1-D map gives x0 only); none at all is an error
    observed = [c for c in src.coordinates if c < info.dimension]
    if not observed:
        raise SettingError(f"synthetic:dysts/{setting.system}: no coordinate among {list(src.coordinates)} "
                           f"({setting.system} has {info.dimension})")
    known = true_dynamics(setting.system, params, seed=seed)
    # the windows start where the truth's averaging did: a long transient never passes for the labelled dynamics
    trajectory = simulate(setting.system, params, n, points_per_period=src.points_per_period, seed=seed,
                          transient=known.settled_after)
    # exponent per time unit (flows) or per step (maps) -> per sample (x dt) -> per second (x fs)
    per_second = float(known.largest) * trajectory.dt * fs
    truth = GroundTruth(setting.system, setting.params_json, per_second, known.regime, 0.0)
    channels = [(f"x{c}", "synthetic", np.ascontiguousarray(trajectory.values[:, c], np.float64), True)
                for c in observed]
    if trajectory.forcing is not None:  # the intervention the next stages condition on: never noised
        channels.append(("forcing", "synthetic", np.ascontiguousarray(trajectory.forcing, np.float64), False))
    return channels, truth


def _physio_channels(setting: Setting, n: int, fs: float, seed: int):
    from nw2.pipeline.synthetic.physio import SIGNALS, simulate

    signal = SIGNALS[setting.system]
    values = simulate(setting.system, dict(setting.params), n, fs, seed)
    truth = GroundTruth(f"neurokit2.{signal.function}", setting.params_json, None, None, 0.0)
    return [(setting.system, signal.modality, values, True)], truth


def _driven_channels(setting: Setting, src: SyntheticSourceSpec, n: int, fs: float, seed: int):
    """The response as ``x0`` and the switching forcing as ``forcing`` (an intervention: never noised)."""
    from nw2.pipeline.synthetic.driven import regime, simulate, true_lyapunov

    params = dict(setting.params)
    x, u = simulate(setting.system, params, n, fs, seed)
    # the time constants are in seconds: the exponent is per second at any fs
    truth = GroundTruth(f"driven.{setting.system}", setting.params_json, true_lyapunov(setting.system, params),
                        regime(setting.system, params), 0.0)
    return [("x0", "synthetic", x, True), ("forcing", "synthetic", u, False)], truth
