"""Build a WESAD-layout subject pickle from real recordings (no synthetic signals).

Sources (the first :data:`DURATION_S` seconds of each):

- ``sample("pyphysio_medical")``: synchronised ECG, EDA, BVP and respiration at 2048 Hz (bz2 TSV, no
  header). ECG, EDA and Resp go to the chest (700 Hz), BVP and EDA to the wrist (64 Hz and 4 Hz).
- ``sample("sync_acc")``: a biosignalsplux 3-axis accelerometer at 1000 Hz (OpenSignals text, raw
  16-bit ADC). Converted to g with the biosignalsplux transfer function
  ``g = 2 (ADC - Cmin) / (Cmax - Cmin) - 1`` and the nominal calibration Cmin = 28000, Cmax = 38000,
  then used for the chest ACC (700 Hz, g) and the wrist ACC (32 Hz, in the E4's 1/64 g, i.e. g × 64).

Every signal is resampled with :func:`scipy.signal.resample_poly` (up/down from the reduced rate ratio).
No real source exists for EMG and the temperatures, so the fixture has no ``chest/EMG``,
``chest/Temp`` or ``wrist/TEMP``; the reader lists whatever signals a pickle holds.

The labels are assigned, the signals are real: 1 (WESAD "baseline") for the first half, 2 ("stress") for
the second half, at 700 Hz.

The pickle is written the way the published files were, by Python 2 with protocol 2: array buffers
and ASCII strings are Python 2 ``str`` (``BINSTRING`` opcodes), so Python 3 can load it only with
``encoding="latin1"``, and NumPy's globals are spelled ``numpy.core.multiarray``.
"""

from __future__ import annotations

import bz2
import io
import itertools
import pickle
from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl
from scipy import signal as sps

DURATION_S = 40
MEDICAL_FS = 2048
ACC_FS = 1000
CHEST_FS = 700
WRIST_FS = {"ACC": 32, "BVP": 64, "EDA": 4}
ACC_CMIN, ACC_CMAX = 28000.0, 38000.0


def resample(values: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    ratio = Fraction(fs_out / fs_in).limit_denominator(10000)
    return sps.resample_poly(np.asarray(values, dtype=np.float64), ratio.numerator, ratio.denominator, axis=0)


def read_medical(medical_bz2_path: str | Path, seconds: float = DURATION_S) -> dict[str, np.ndarray]:
    """The first ``seconds`` of the pyphysio recording: ``ecg``, ``eda``, ``bvp``, ``resp`` at 2048 Hz."""
    n = int(seconds * MEDICAL_FS)
    with bz2.open(medical_bz2_path, "rb") as fh:
        frame = pl.read_csv(io.BytesIO(fh.read()), separator="\t", has_header=False, n_rows=n,
                            new_columns=["ecg", "eda", "bvp", "resp"])
    return {name: frame[name].to_numpy().astype(np.float64) for name in frame.columns}


def read_acc_g(acc_txt_path: str | Path, seconds: float = DURATION_S) -> np.ndarray:
    """The first ``seconds`` of the OpenSignals accelerometer as an (n, 3) array in g."""
    with open(acc_txt_path, encoding="utf-8") as fh:
        rows = itertools.islice((line for line in fh if line.strip() and not line.startswith("#")),
                                int(seconds * ACC_FS))
        raw = np.loadtxt(rows, usecols=(2, 3, 4), ndmin=2)  # columns nSeq, DI, CH1, CH2, CH3
    return 2.0 * (raw - ACC_CMIN) / (ACC_CMAX - ACC_CMIN) - 1.0


def build_wesad_dict(medical_bz2_path: str | Path, acc_txt_path: str | Path, subject: str = "S99") -> dict:
    """The subject dict in WESAD's layout (see the module docstring)."""
    med = read_medical(medical_bz2_path)
    acc = read_acc_g(acc_txt_path)
    chest = {
        "ACC": resample(acc, ACC_FS, CHEST_FS),
        "ECG": resample(med["ecg"], MEDICAL_FS, CHEST_FS)[:, None],
        "EDA": resample(med["eda"], MEDICAL_FS, CHEST_FS)[:, None],
        "Resp": resample(med["resp"], MEDICAL_FS, CHEST_FS)[:, None],
    }
    wrist = {
        "ACC": resample(acc, ACC_FS, WRIST_FS["ACC"]) * 64.0,
        "BVP": resample(med["bvp"], MEDICAL_FS, WRIST_FS["BVP"])[:, None],
        "EDA": resample(med["eda"], MEDICAL_FS, WRIST_FS["EDA"])[:, None],
    }
    n = DURATION_S * CHEST_FS
    label = np.where(np.arange(n) < n // 2, 1, 2).astype(np.int32)
    return {"signal": {"chest": chest, "wrist": wrist}, "label": label, "subject": subject}


class Py2StylePickler(pickle._Pickler):
    """Protocol 2 as Python 2 wrote it: ``bytes`` and ASCII ``str`` as Python 2 ``str`` (BINSTRING),
    NumPy globals under ``numpy.core``."""

    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file):
        super().__init__(file, protocol=2)

    def _save_py2_str(self, data: bytes, obj) -> None:
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + len(data).to_bytes(4, "little") + data)
        self.memoize(obj)

    def save_bytes(self, obj) -> None:
        self._save_py2_str(obj, obj)

    def save_str(self, obj) -> None:
        if obj.isascii():
            self._save_py2_str(obj.encode("ascii"), obj)
        else:
            super().save_str(obj)

    def save_global(self, obj, name=None) -> None:
        module = getattr(obj, "__module__", "") or ""
        if module.startswith("numpy._core."):
            qualname = name or obj.__qualname__
            py2_module = "numpy.core." + module[len("numpy._core."):]
            self.write(pickle.GLOBAL + f"{py2_module}\n{qualname}\n".encode("ascii"))
            self.memoize(obj)
            return
        super().save_global(obj, name)

    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


def dumps_py2(obj) -> bytes:
    buf = io.BytesIO()
    Py2StylePickler(buf).dump(obj)
    return buf.getvalue()


def build_wesad_pickle(medical_bz2_path: str | Path, acc_txt_path: str | Path, out_path: str | Path,
                       subject: str = "S99") -> Path:
    """Write the WESAD-layout pickle built from the two real recordings; return its path."""
    out_path = Path(out_path)
    out_path.write_bytes(dumps_py2(build_wesad_dict(medical_bz2_path, acc_txt_path, subject)))
    return out_path
