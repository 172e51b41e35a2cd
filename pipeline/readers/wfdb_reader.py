"""WFDB records (PhysioNet): a ``.hea`` header plus its signal files, read with the ``wfdb`` library.

``path`` may name the header (``208.hea``) or a signal file (``208.dat``); both resolve to the record
``208`` in the same folder. Samples come back in physical units (``p_signal``), already scaled by each
signal's ADC gain and baseline. Only the requested span is read (``sampfrom``/``sampto``).

Options read from ``ReadOptions.extra``:

- ``annotator``: extension of the annotation file to attach (default ``atr``). A missing file is not an
  error: most records have none.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import numpy as np

from nw2.pipeline.readers.base import (ChannelInfo, InputError, ReadOptions, Record, file_stem, finite_or_nan,
                                       named, scrubbed, select, time_slice, unique_names)
from nw2.pipeline.records import guess_modality

FORMAT = "wfdb"
EXTENSIONS = (".hea",)

# Record line: ``name[/nseg] nsig [fs[/counterfreq[(base)]] [nsamp ...]]`` (WFDB header(5)).
_RECORD_LINE = re.compile(rb"^[\w\-.~]+(/\d+)?[ \t]+\d+([ \t]+\d+(\.\d*)?(/\d+(\.\d*)?(\(-?\d+(\.\d*)?\))?)?)?"
                          rb"([ \t]+\d+)?([ \t]|\r?$)")


def sniff(path: str | Path, head: bytes) -> bool:
    """A ``.hea`` file whose first non-comment line is a WFDB record line.

    The extension is required too: a record line is just a few numbers, which plenty of text
    files would match.
    """
    if not str(path).lower().endswith(".hea"):
        return False
    for line in head.splitlines():
        line = line.strip()
        if not line or line.startswith(b"#"):
            continue
        return _RECORD_LINE.match(line) is not None
    return False


def _record_name(path: str | Path) -> str:
    """``dir/208.hea`` or ``dir/208.dat`` -> ``dir/208``, the name ``wfdb`` functions take."""
    p = Path(path)
    return str(p.with_suffix("")) if p.suffix else str(p)


def _short(err: Exception) -> str:
    """First line of a library error, without the traceback noise or what it quotes of the file."""
    text = str(err).strip().splitlines()
    return scrubbed(text[0]) if text else type(err).__name__


def _header(path: str | Path):
    import wfdb

    try:
        header = wfdb.rdheader(_record_name(path))
    except FileNotFoundError as err:
        raise InputError(path, f"cannot open WFDB header ({err.strerror or err})") from None
    except Exception as err:  # wfdb raises bare ValueError/HeaderSyntaxError/IndexError on bad headers
        raise InputError(path, f"not a valid WFDB header: {_short(err)}") from None
    if getattr(header, "n_sig", 0) in (0, None):
        raise InputError(path, "WFDB header lists no signals")
    if not header.fs:
        raise InputError(path, "WFDB header has no sampling rate")
    return header


def _sig_len(path: str | Path, header) -> int:
    """Samples per signal; headers may omit it, in which case the signal file says (one full read)."""
    if header.sig_len:
        return int(header.sig_len)
    import wfdb

    try:
        return int(wfdb.rdrecord(_record_name(path), channels=[0]).sig_len)
    except Exception as err:
        raise InputError(path, f"cannot read WFDB signals: {_signal_problem(path, header, err)}") from None


def _signal_problem(path: str | Path, header, err: Exception) -> str:
    """Say which signal file is missing, rather than wfdb's broadcast or errno message."""
    folder = Path(path).parent
    for name in dict.fromkeys(getattr(header, "file_name", None) or []):
        if not (folder / name).exists():
            return f"missing signal file {named(name)}"
    if isinstance(err, ValueError):  # numpy shape errors: fewer bytes than the header promises
        return f"signal file truncated or corrupt ({_short(err)})"
    return _short(err)


#: Bytes per sample of each uncompressed WFDB format (the FLAC formats 508, 516 and 524 have no fixed size).
_SAMPLE_BYTES = {"8": 1.0, "16": 2.0, "24": 3.0, "32": 4.0, "61": 2.0, "80": 1.0, "160": 2.0, "212": 1.5,
                 "310": 4 / 3, "311": 4 / 3}


def _check_signal_files(path: str | Path, header, n: int) -> None:
    """InputError when a signal file is missing or holds fewer samples than the header's ``n`` per signal: a
    header can declare a trillion samples, and what it declares is what ingest plans and reads."""
    names, fmts = getattr(header, "file_name", None), getattr(header, "fmt", None)
    if not names or not fmts:  # a multi-segment header: its segments are records of their own
        return
    spf = getattr(header, "samps_per_frame", None) or [1] * len(names)
    offsets = getattr(header, "byte_offset", None) or [None] * len(names)
    frame_bytes: dict[str, float] = {}
    start: dict[str, int] = {}
    for name, fmt, per_frame, offset in zip(names, fmts, spf, offsets):
        size = _SAMPLE_BYTES.get(str(fmt))
        if size is None:
            return
        frame_bytes[name] = frame_bytes.get(name, 0.0) + size * (per_frame or 1)
        start[name] = int(offset or 0)
    folder = Path(path).parent
    for name, per_frame in frame_bytes.items():
        file = folder / name
        if not file.is_file():
            raise InputError(path, f"cannot read WFDB signals: missing signal file {named(name)}")
        held = max(0, file.stat().st_size - start[name])
        if n * per_frame > held + 1:  # + 1: format 212 packs two samples in three bytes
            raise InputError(path, f"cannot read WFDB signals: signal file truncated or corrupt ({named(name)} holds "
                                   f"{int(held // per_frame)} of the {n} samples per signal its header declares)")


def _channels(path: str | Path, header, opts: ReadOptions) -> list[ChannelInfo]:
    n = _sig_len(path, header)
    _check_signal_files(path, header, n)
    # Multi-segment headers (MultiRecord) may lack per-signal fields; fall back on neutral values.
    names = unique_names(list(getattr(header, "sig_name", None) or [f"ch{i}" for i in range(header.n_sig)]))
    units = list(getattr(header, "units", None) or [""] * header.n_sig)
    return [ChannelInfo(name=name, fs=float(header.fs), n_samples=n,
                        modality=opts.modality or guess_modality(name),
                        unit=opts.unit or (unit or ""))
            for name, unit in zip(names, units)]


def probe(path: str | Path, opts: ReadOptions) -> list[ChannelInfo]:
    """Channels from the header alone (no signal bytes are read when the header gives the length)."""
    return _channels(path, _header(path), opts)


def _start_time(header) -> datetime | None:
    """``base_date`` + ``base_time``; a time without a date says nothing absolute, so ``None``."""
    if getattr(header, "base_date", None) is None or getattr(header, "base_time", None) is None:
        return None
    return datetime.combine(header.base_date, header.base_time)


def _annotations(path: str | Path, opts: ReadOptions, fs: float, start_s: float,
                 stop_s: float | None) -> list[tuple[float, float, str]]:
    """Events from ``<record>.<annotator>`` whose onset falls in ``[start_s, stop_s)``.

    WFDB annotations are instants, so the duration is 0. The text is the beat/event symbol, followed by
    the aux note when there is one (rhythm changes are ``+`` with ``(AFIB`` etc. in the aux note).
    """
    import wfdb

    ext = str(opts.extra.get("annotator", "atr"))
    if not Path(f"{_record_name(path)}.{ext}").exists():
        return []
    try:
        ann = wfdb.rdann(_record_name(path), ext)
    except Exception as err:
        raise InputError(path, f"cannot read WFDB annotations .{ext}: {_short(err)}") from None
    ann_fs = float(ann.fs) if ann.fs else fs
    aux = ann.aux_note or [""] * len(ann.sample)
    events = []
    for sample, symbol, note in zip(ann.sample, ann.symbol, aux):
        onset = float(sample) / ann_fs
        if onset < start_s or (stop_s is not None and onset >= stop_s):
            continue
        note = (note or "").strip("\x00 ")
        events.append((onset, 0.0, f"{symbol} {note}" if note else str(symbol)))
    return events


def read(path: str | Path, opts: ReadOptions, channels: list[int] | None = None,
         start_s: float = 0.0, stop_s: float | None = None) -> list[Record]:
    """The selected channels over ``[start_s, stop_s)``, in physical units."""
    import wfdb

    header = _header(path)
    infos = _channels(path, header, opts)
    chosen = select(channels, len(infos), path)
    fs = float(header.fs)
    span = time_slice(infos[0].n_samples, fs, start_s, stop_s)
    if not chosen:
        return []
    if span.stop > span.start:
        try:
            rec = wfdb.rdrecord(_record_name(path), sampfrom=span.start, sampto=span.stop, channels=chosen)
        except Exception as err:
            raise InputError(path, f"cannot read WFDB signals: {_signal_problem(path, header, err)}") from None
        data = rec.p_signal
        if data is None or data.shape != (span.stop - span.start, len(chosen)):
            raise InputError(path, "WFDB signal file is shorter than its header says")
    else:  # span past the end: nothing to read, and rdrecord refuses an empty range
        data = np.empty((0, len(chosen)))
    events = _annotations(path, opts, fs, start_s, stop_s)
    stem = Path(_record_name(path)).name
    return [Record(dataset=opts.dataset, subject=opts.subject or stem, record=opts.record or file_stem(path),
                   channel=infos[c].name, modality=infos[c].modality, unit=infos[c].unit, fs=fs,
                   samples=finite_or_nan(data[:, i]),
                   start_time=_start_time(header), offset_s=span.start / fs, annotations=list(events))
            for i, c in enumerate(chosen)]
