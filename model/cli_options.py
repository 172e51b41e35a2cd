"""Command-line options made from config dataclass fields: ``nw2 pretrain``'s model and training flags, and
``nw2 evaluate``'s options.

Each option's type comes from its field's annotation (``int``, ``float``, ``str``, a bool as a ``--x/--no-x``
flag; a ``Literal`` field, or a union with ``str`` such as ``str | Sequence[str]``, takes a string, checked and
parsed by the config itself). ``nw2 pretrain``'s options default to None, "not given": the preset, config
file or saved run then decides, so the help shows no default of its own. ``nw2 evaluate``'s default to their
field's default, shown in the help (``with_config_options(..., defaults=True)``). The help texts below are the
command line's (shorter than the field docstrings; some name the field's default).

This module imports no torch (nor do ``nw2.model.config`` and ``nw2.model.evaluate.config``): the command line
builds every command's options when it starts, whichever command it runs.
"""

from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import MISSING, dataclass, fields
from typing import Any, Callable, Literal, Optional, Sequence

from .config import ModelConfig, TrainConfig
from .evaluate.config import EvalConfig

__all__ = ["Flag", "MODEL_FLAGS", "TRAIN_FLAGS", "PRETRAIN_FLAGS", "EVAL_FLAGS", "EVALUATE_FLAGS",
           "config_parameters", "with_config_options"]


@dataclass(frozen=True)
class Flag:
    """One config field as a command-line option."""

    field: str
    help: str
    decls: str | tuple[str, ...] | None = None
    """The option's spelling, or spellings (``("--out", "-o")``); default ``--field-name``, or
    ``--field-name/--no-field-name`` for a bool."""


#: ``nw2 pretrain``'s ModelConfig options, in the order of its help (not every field is a flag).
MODEL_FLAGS: tuple[Flag, ...] = (
    Flag("embed_dim", "Encoder width."),
    Flag("depth", "Encoder layers."),
    Flag("num_heads", "Encoder attention heads."),
    Flag("fuse_freq", "A cross-channel fusion layer after every n-th encoder layer (0: none)."),
    Flag("decoder_embed_dim", "Decoder width."),
    Flag("decoder_depth", "Decoder layers."),
    Flag("decoder_num_heads", "Decoder attention heads."),
    Flag("window_size", "Samples per channel (corpus windows are cropped to it)."),
    Flag("patch_size", "Samples per patch token."),
    Flag("nvar", "Most channels per sample."),
    Flag("causal", "Causal attention over time (must stay on; see docs/model.md)."),
    Flag("token_level_fuse", "Token-level or pooled cross-channel fusion.", "--token-level-fuse/--pooled-fuse"),
    Flag("jepa", "Add the latent-prediction (JEPA) term."),
    Flag("rollout_steps", "k of the k-step latent rollout."),
    Flag("insight_order", "Order of the in-context AR forecast the gate blends in (0: off)."),
    Flag("rate_conditioning", "Condition on each window's sampling rate (corpora of several rates)."),
    Flag("intervention_inputs", "Known-ahead interventions of the corpus that drive the forecast, comma-separated "
                                "(forcing; a categorical one gives an input per category)."),
)

#: ``nw2 pretrain``'s TrainConfig options (``corpus`` and ``out`` are its argument and ``--out``).
TRAIN_FLAGS: tuple[Flag, ...] = (
    Flag("batch_size", "Samples per process per micro-step (default 32)."),
    Flag("accum_iter", "Micro-steps per optimizer step (default 1)."),
    Flag("epochs", "Passes over the training split (default 10)."),
    Flag("warmup_epochs", "Linear warm-up before the cosine decay (default 1)."),
    Flag("save_every_epoch", "Checkpoint every n epochs, and after the last (default 1)."),
    Flag("save_every_steps", "Also checkpoint every n optimizer steps (default 0: off)."),
    Flag("keep_checkpoints", "Newest checkpoints kept (default 2; 0 keeps all)."),
    Flag("blr", "Base learning rate; lr = blr x total batch / 256 (default 1e-3)."),
    Flag("lr", "Absolute learning rate (overrides --blr)."),
    Flag("min_lr", "Floor of the cosine decay (default 1e-6)."),
    Flag("weight_decay", "AdamW weight decay (default 0.05)."),
    Flag("clip_grad", "Clip the gradient norm (default 1.0)."),
    Flag("num_workers", "Loader threads per process (default 0)."),
    Flag("shuffle_buffer", "Samples in each loader worker's shuffle buffer (default 1024)."),
    Flag("random_crop", "Random stretch of longer windows per epoch (default) or their start.",
         "--random-crop/--start-crop"),
    Flag("weighted", "Sample by sample_weight (default: when the corpus has it).", "--weighted/--unweighted"),
    Flag("init_from", "Start from a saved model's weights and config: a model directory or nw2-small."),
    Flag("seed", "Seed of the initialisation and the loader (default 0)."),
    Flag("device", "auto (CUDA when available), cpu or cuda."),
    Flag("precision", "auto (bf16 on CUDA, fp32 on CPU), bf16 or fp32."),
    Flag("log_dir", "TensorBoard directory (default RUN/tensorboard)."),
    Flag("log_every", "Steps between log lines (default 10)."),
    Flag("remark", "A note kept in run.json and the logs."),
)

PRETRAIN_FLAGS: tuple[tuple[type, tuple[Flag, ...]], ...] = ((ModelConfig, MODEL_FLAGS), (TrainConfig, TRAIN_FLAGS))

#: ``nw2 evaluate``'s EvalConfig options, in the order of its help (``device`` and ``probe_train_windows`` are
#: Python-only).
EVAL_FLAGS: tuple[Flag, ...] = (
    Flag("split", "Split(s) to evaluate, comma-separated (val,test)."),
    Flag("horizons", "Forecast horizons in samples, comma-separated (default: one patch, two, four, ... up to "
                     "half the model window)."),
    Flag("out", "Report directory (default RUN/eval-<split>); an earlier report there is replaced.", ("--out", "-o")),
    Flag("batch_size", "Windows per model batch."),
    Flag("windows", "Which windows of the split(s): all, real (recordings) or synthetic (a ground-truth system)."),
    Flag("max_windows", "Evaluate a seeded uniform sample of this many windows."),
    Flag("adapt", "Also score the model with test-time adaptation."),
    Flag("probe", "Fit linear probes on frozen embeddings (train split -> evaluated split)."),
    Flag("trained_baselines", "Also fit the linear and MLP baselines on the training split and score them."),
    Flag("bootstrap", "Bootstrap replicates over subjects/records/systems for the intervals (0: none)."),
    Flag("seed", "Seed of the --max-windows sample, the probes' train sample, the trained baselines and the "
                 "bootstrap."),
)

EVALUATE_FLAGS: tuple[tuple[type, tuple[Flag, ...]], ...] = ((EvalConfig, EVAL_FLAGS),)


def _option_type(hint: Any) -> type:
    """The type an option parses: the field's, without ``None``; a ``Literal``'s values' (a string); a string
    for a union with ``str`` (``str | Sequence[str]``: the config parses it)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] if typing.get_origin(hint) is not Literal else []
    if args:  # X | None, or X | Y (| None)
        if len(args) == 1:
            return _option_type(args[0])
        if str in args:
            return str
        raise TypeError(f"no option type for {hint!r}: a union needs str among its types")
    if typing.get_origin(hint) is Literal:
        return type(typing.get_args(hint)[0])
    return hint


def config_parameters(cls: type, flags: Sequence[Flag], defaults: bool = False) -> list[inspect.Parameter]:
    """Typer parameters (``inspect.Parameter`` with a ``typer.Option`` default) for ``flags`` of ``cls``; each
    option defaults to None, or with ``defaults`` to its field's default (which the help then shows)."""
    import typer

    hints = typing.get_type_hints(cls)
    by_name = {f.name: f for f in fields(cls)}
    params = []
    for flag in flags:
        if flag.field not in by_name:
            raise TypeError(f"{cls.__name__} has no field {flag.field!r}")  # a bug in the table above
        kind = _option_type(hints[flag.field])
        dashed = flag.field.replace("_", "-")
        decls = flag.decls or (f"--{dashed}/--no-{dashed}" if kind is bool else f"--{dashed}")
        default = None
        if defaults:
            default = by_name[flag.field].default
            if default is MISSING:
                raise TypeError(f"{cls.__name__}.{flag.field} has no default to show")  # a bug in the table
        params.append(inspect.Parameter(flag.field, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                        default=typer.Option(default, *(decls if isinstance(decls, tuple)
                                                                        else (decls,)), help=flag.help),
                                        annotation=Optional[kind] if default is None else kind))
    return params


def with_config_options(groups: Sequence[tuple[type, Sequence[Flag]]], before: str, defaults: bool = False
                        ) -> Callable:
    """Decorate a typer command that takes ``**overrides``: its signature gets one option per flag of
    ``groups`` (placed before its parameter ``before``), and it is called with the options given (not None)
    in ``overrides``, named by field. With ``defaults``, each option defaults to its field's default (shown in
    the help), so ``overrides`` holds every option whose default is not None."""

    def decorate(func: Callable) -> Callable:
        sig = inspect.signature(func, eval_str=True)
        own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        generated = [p for cls, flags in groups for p in config_parameters(cls, flags, defaults)]
        clash = {p.name for p in own} & {p.name for p in generated}
        if clash:
            raise TypeError(f"{func.__name__}: parameters named like config fields: {', '.join(sorted(clash))}")
        at = [p.name for p in own].index(before)
        params = own[:at] + generated + own[at:]
        names = [p.name for p in generated]

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in names}
            return func(**kwargs, **{k: v for k, v in given.items() if v is not None})

        command.__signature__ = sig.replace(parameters=params)  # what typer reads
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate
