"""EDF, EDF+ and BDF(+) files, read with ``pyedflib``.

Each signal keeps its own sampling rate (EDF allows one per signal). Only the requested span is read
(``readSignal(chn, start, n)``), in physical units. EDF+ annotation signals are not channels: their
events become ``Record.annotations``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

import re
from pathlib import Path

import numpy as np

from nw2.pipeline.readers.base import (ChannelInfo, InputError, ReadOptions, Record, file_stem, finite_or_nan,
                                       scrubbed, select, shown, time_slice, unique_names)
from nw2.pipeline.records import guess_modality

FORMAT = "edf"
EXTENSIONS = (".edf", ".bdf", ".rec")

# 10-10 system electrode names (Fc5, Cz, AF7, T10, ...), which EEG files often use as bare labels
# (PhysioNet EEGMMIDB writes ``Fc5.``); ``guess_modality`` only knows the word "eeg".
_SITE = r"(?:fp|af|fc|ft|tp|cp|po|f|c|t|p|o|i)(?:z|\d{1,2})"
_ELECTRODE = re.compile(rf"^{_SITE}(?:[-_ ](?:{_SITE}|ref|avg|le|ar))?\.*$", re.IGNORECASE)


def sniff(path: str | Path, head: bytes) -> bool:
    """EDF starts with the version field ``"0"`` padded to 8 bytes; BDF with ``0xFF`` + ``BIOSEMI``."""
    return head.startswith(b"0       ") or head.startswith(b"\xffBIOSEMI")


@contextlib.contextmanager
def _c_stdout_captured(into: list[str]):
    """Route what C code prints on file descriptor 1 into ``into`` (pyedflib's parser prints ``filesize 30000 !=
    2114*60+768`` there on a truncated file, past Python's ``sys.stdout``), so it reaches the file's one-line
    reason instead of the user's terminal."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):  # no real descriptor 1 (an embedding host): nothing to capture
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            sink.seek(0)
            into.append(sink.read(4096).decode("utf-8", "replace").strip())


def _open(path: str | Path):
    """An open ``EdfReader``; pyedflib's ``OSError`` on a bad file becomes :class:`InputError`, with what its
    C parser printed (never on the terminal)."""
    import pyedflib

    printed: list[str] = []
    try:
        with _c_stdout_captured(printed):
            return pyedflib.EdfReader(str(path))
    except FileNotFoundError:
        raise InputError(path, "cannot open (no such file)") from None
    except OSError as err:
        msg = str(err).strip()
        # pyedflib prefixes its message with the file name, which InputError already shows.
        if msg.startswith(f"{path}:"):
            msg = msg[len(f"{path}:"):].strip()
        first = msg.splitlines()[0] if msg else "unreadable"
        said = " ".join(printed).split("\n")[0].strip()[:120]
        raise InputError(path, f"not a valid EDF/BDF file: {scrubbed(first)}"
                         + (f"; the parser says: {scrubbed(said)}" if said else "")
                         ) from None


def _modality(label: str, transducer: str) -> str:
    guess = guess_modality(label, transducer)
    if guess == "other" and _ELECTRODE.match(label.strip()):
        return "eeg"
    return guess


def _channels(path: str | Path, reader, opts: ReadOptions) -> list[ChannelInfo]:
    n_samples = reader.getNSamples()
    infos = []
    labels = [reader.getLabel(i).strip() for i in range(reader.signals_in_file)]
    names = unique_names([label or f"ch{i}" for i, label in enumerate(labels)])
    for i, label in enumerate(labels):
        fs = float(reader.getSampleFrequency(i))
        if not fs > 0:
            raise InputError(path, f"signal {i} ({shown(label)}) has no sampling rate")
        infos.append(ChannelInfo(name=names[i], fs=fs, n_samples=int(n_samples[i]),
                                 modality=opts.modality or _modality(label, reader.getTransducer(i)),
                                 unit=opts.unit or reader.getPhysicalDimension(i).strip()))
    return infos


def probe(path: str | Path, opts: ReadOptions) -> list[ChannelInfo]:
    """Channels from the header; no samples are read."""
    reader = _open(path)
    try:
        return _channels(path, reader, opts)
    finally:
        reader.close()


def _annotations(reader, start_s: float, stop_s: float | None) -> list[tuple[float, float, str]]:
    """EDF+ events that overlap ``[start_s, stop_s)`` (instants: whose onset falls in it)."""
    onsets, durations, texts = reader.readAnnotations()
    events = []
    for onset, duration, text in zip(onsets, durations, texts):
        onset = float(onset)
        duration = float(duration) if np.isfinite(duration) and duration > 0 else 0.0
        if duration:  # an interval: keep it when it overlaps the span
            keep = onset + duration > start_s and (stop_s is None or onset < stop_s)
        else:  # an instant: keep it when it falls inside the span
            keep = onset >= start_s and (stop_s is None or onset < stop_s)
        if keep:
            events.append((onset, duration, str(text).strip()))
    return events


def _subject(reader, path: str | Path, opts: ReadOptions) -> str:
    """``opts.subject``, else the EDF+ patient code (``X`` means unknown), else the file stem."""
    if opts.subject:
        return opts.subject
    # pyedflib turns the EDF+ subfield's underscores into spaces; the stored form makes a better id.
    code = (reader.getPatientCode() or "").strip().replace(" ", "_")
    return code if code and code.upper() != "X" else file_stem(path)


def read(path: str | Path, opts: ReadOptions, channels: list[int] | None = None,
         start_s: float = 0.0, stop_s: float | None = None) -> list[Record]:
    """The selected signals over ``[start_s, stop_s)``, each at its own rate, in physical units."""
    reader = _open(path)
    try:
        infos = _channels(path, reader, opts)
        chosen = select(channels, len(infos), path)
        try:
            start_time = reader.getStartdatetime()
        except (ValueError, OSError):  # an impossible date in the header should not lose the signals
            start_time = None
        events = _annotations(reader, start_s, stop_s)
        subject = _subject(reader, path, opts)
        records = []
        for c in chosen:
            info = infos[c]
            span = time_slice(info.n_samples, info.fs, start_s, stop_s)
            n = span.stop - span.start
            # n is clamped to the signal by time_slice: pyedflib zero-pads reads past the end.
            samples = reader.readSignal(c, span.start, n) if n else np.empty(0)
            records.append(Record(dataset=opts.dataset, subject=subject, record=opts.record or file_stem(path),
                                  channel=info.name, modality=info.modality, unit=info.unit, fs=info.fs,
                                  samples=finite_or_nan(samples), start_time=start_time,
                                  offset_s=span.start / info.fs, annotations=list(events)))
        return records
    except InputError:
        raise
    except Exception as err:  # a read error half-way through a damaged file
        msg = str(err).strip().splitlines()
        raise InputError(path, f"cannot read EDF signals: {scrubbed(msg[0]) if msg else type(err).__name__}") from None
    finally:
        reader.close()
