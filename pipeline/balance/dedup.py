r"""Near-duplicate windows of a store, found before ``nw2 balance`` selects its rows.

Text-corpus pipelines deduplicate before they mix; a window store has the same problem: one recording
ingested under two datasets, a file copied with another gain or offset, a re-export with a little added
noise. A balanced selection that drew both copies would count one window twice. This module finds them
in two steps:

1. :func:`window_signatures` reads **only** the ``samples`` column, one row group of one part at a time
   (bounded memory), and computes per window a few hundred bytes of signature (:class:`Signatures`).
2. :func:`find_duplicates` groups the candidate rows into duplicate groups and keeps the first row of each
   in store order (:class:`Duplicates`), in about O(n): sorts, and a fixed number of comparisons per row.

Every window :math:`x` (length :math:`L`) is first z-scored, :math:`z = (x - \bar x)/s` with its own mean
and population standard deviation (float64 sums taken left to right, compiled without fast-math, so the
same float32 window gives the same bits everywhere), so an affine copy :math:`a x + b` (:math:`a > 0`) has
the same :math:`z` as :math:`x` up to float rounding.

**Exact copies.** :math:`q_t = \mathrm{clip}(\mathrm{rint}(256 z_t), -32768, 32767)` as little-endian
int16 (a grid of 1/256 standard deviation), hashed with XXH64 (seed 0) over those :math:`2L` bytes. XXH64
is integer arithmetic modulo :math:`2^{64}` on explicitly little-endian words, so the hash is the same on
every platform; it is checked against the reference ``xxhash`` package in the tests. A constant window
(max = min; :math:`z` undefined) hashes its length (int64) and value (float64), 16 little-endian bytes,
with seed 1; a window with a NaN or inf hashes its raw float32 bytes with seed 2. An affine copy whose
float32 rounding moves one sample across a grid boundary hashes differently; the near-copy test below
still finds it (its correlation is 1 to within 1e-6).

**Near copies.** Two windows of the same length are near copies when both

- their **spectral signatures** agree, cosine :math:`\ge` ``near_threshold`` (0.995): the rfft power
  :math:`|Z_k|^2` of :math:`z` for :math:`k = 1 .. \lfloor L/2 \rfloor` (DC dropped: it is 0) is averaged
  in 32 equal-width bands of frequency (band :math:`b` holds the bins with
  :math:`\lfloor 32 (k-1) / \lfloor L/2 \rfloor \rfloor = b`), turned into fractions :math:`p_b` of the
  window's power, and :math:`s_b = \ln(p_b + 10^{-4})`; the signature is :math:`s - \bar s` scaled to unit
  length (float32). The floor :math:`10^{-4}` (-40 dB of the window's power) keeps the empty bands of a
  smooth signal from deciding the cosine: white noise at 40 dB SNR adds only about -55 dB per band, so it
  barely moves them, and
- their **time-domain sketches** correlate, :math:`r \ge` ``time_threshold`` (0.98). The sketch is a unit
  64-vector :math:`v` whose dot products estimate the windows' Pearson correlation
  :math:`\rho = \frac1L \sum_t z_{a,t} z_{b,t}`. For :math:`L \ge 64`, :math:`z` is split into its 32 block
  means :math:`m_k` (block :math:`k`: the :math:`n_k` samples from :math:`\lfloor kL/32 \rfloor` to
  :math:`\lfloor (k+1)L/32 \rfloor - 1`) and the residual :math:`e_t = z_t - m_{k(t)}`, which is orthogonal
  to every block mean, so :math:`\rho` is exactly the block-mean part plus the residual part. Then
  :math:`v_k = m_k \sqrt{n_k/L}` (:math:`k < 32`: their dot product *is* the block-mean part) and
  :math:`v_{32..63} = \sqrt{1 - \sum_{k<32} v_k^2}\; c/\lVert c \rVert`, with :math:`c` a count sketch of
  the residual (the samples in a fixed permutation cut into 32 equal buckets, times fixed random signs,
  summed per bucket; permutation and signs from SHAKE-256 of the length), whose cosine estimates the
  residuals' correlation. A window shorter than 64 samples takes :math:`z` at the 64 nearest samples,
  centred. :math:`v` is stored as :math:`\mathrm{rint}(32767 v)` (int16) and
  :math:`r = \sum a_k b_k / \sqrt{\sum a_k^2 \sum b_k^2}` in exact integer sums. The slow shape is compared
  exactly, the fast content through the estimate: on the demo store the estimate errs by 0.004 (one
  standard deviation) for pairs of true correlation 0.98..0.99 and by 0.009 for 0.95..0.98, and none of its
  680,000 pairs below 0.95 passes both tests. A copy of each demo window with white noise at 40 or 30 dB SNR
  is found (all 1167), at 20 dB 60 % of them; affine copies hash alike for 93-99 % of the windows and the
  rest are found as near copies.

The band powers ignore phase, so a window shifted by a quarter period of its main rhythm has (nearly) the
same spectral signature; its correlation with the original, and its sketch's, is near 0, so it is **not** a
near copy.

**Candidates in O(n).** Pairs are never enumerated. Each sketch gets a 128-bit random-hyperplane code
(SimHash: bit :math:`i` is :math:`[h_i \cdot v > 0]`, :math:`h_i \in \{-1, 1\}^{64}` from a fixed
SHAKE-256 stream, so the code is the same everywhere). Two sketches at angle :math:`\theta` differ in a bit
with probability :math:`\theta/\pi`: at :math:`r = 0.98` that is 0.064. The code is cut into 8 bands of 16
bits; for each band the rows are sorted by (length, band bits, the top 32 bits of the other code word), and
each row is compared with the next ``window`` (32) rows of its bucket, so a bucket of up to 33 rows is
compared pair by pair and a larger one (many windows of nearly one shape) by neighbours in that order.
A pair at :math:`r = 0.98` shares at least one band with probability
:math:`1 - (1 - 0.936^{16})^8 \approx 0.97`, at :math:`r = 0.99` 0.994, at :math:`r = 0.999` above
0.99999. A compared pair is first screened by the Hamming distance of the whole 128-bit codes (at most
:func:`max_hamming` of ``time_threshold``, 25 bits at 0.98: the expected 8.2 plus 6 standard deviations),
then by the spectral cosine, then by the sketch correlation. The work is at most
``8 * window`` screens per row.

Verified pairs are joined into groups (union-find, connected components, as MinHash deduplication of text
does: a chain of near copies is one group, so a group's last member may be less like its kept row than the
thresholds: 0.87 at worst on the demo store); each group keeps its first row in store order and drops the
others. Exact copies are grouped by hash first and only their first rows enter the near-copy search.

On the demo store the only near copies are simultaneous channels of the 64-channel EEG record (neighbouring
electrodes, correlated up to 0.999): 62 of its 1167 windows. A caller that wants to keep every channel of a
multichannel window passes one channel per window, or drops only rows whose group spans other windows.

Memory: 293 bytes per row of :class:`Signatures` (2.9 GB for ten million windows), plus about 200 bytes
per candidate while :func:`find_duplicates` runs.
"""

from __future__ import annotations

import functools
import hashlib
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numba import float32, float64, int16, int64, njit, types, uint8, uint64, void

from nw2.artifacts.store import WindowStore
from nw2.core.parquet import CheckedFile
from nw2.core.errors import Nw2Error

__all__ = ["Signatures", "Duplicates", "window_signatures", "find_duplicates", "max_hamming",
           "SPECTRAL_BANDS", "SKETCH_POINTS", "QUANT_STEPS", "SPECTRAL_FLOOR",
           "NEAR_THRESHOLD", "TIME_THRESHOLD", "WINDOW", "LSH_BANDS", "LSH_BITS"]

#: Frequency bands of the spectral signature.
SPECTRAL_BANDS = 32
#: Values of the time-domain sketch: 32 block means and a 32-bucket count sketch of the residual.
SKETCH_POINTS = 64
#: Grid of the exact hash: z-scores are rounded to 1/QUANT_STEPS of a standard deviation.
QUANT_STEPS = 256
#: Floor added to the band power fractions before the log (-40 dB of the window's power).
SPECTRAL_FLOOR = 1e-4
#: Default spectral cosine and sketch correlation of a near copy.
NEAR_THRESHOLD = 0.995
TIME_THRESHOLD = 0.98
#: Rows of a bucket each row is compared with (per band).
WINDOW = 32
#: Bits of the sketch code, and its bands.
CODE_BITS = 128
LSH_BANDS = 8
LSH_BITS = CODE_BITS // LSH_BANDS
#: Bits of the spectral SimHash.
SIMHASH_BITS = 64

#: ``Signatures.status``: not computed, a signal (near copies searched), constant, NaN/inf in it (the last two
#: match exact copies only).
NOT_COMPUTED, SIGNAL, CONSTANT, NON_FINITE = 0, 1, 2, 3
_SKETCH_SCALE = 32767.0
_VERSION = "nw2.dedup.v1"
_QUANT = float(QUANT_STEPS)
#: Windows per batch of the signature computation.
_CHUNK = 256


def _planes(name: str, count: int, dims: int) -> np.ndarray:
    """``count`` hyperplanes with entries +-1 in ``dims`` dimensions, from SHAKE-256 of a fixed name: the
    same bits on every machine and NumPy version (a NumPy random stream is not promised to stay the same)."""
    raw = hashlib.shake_256(f"{_VERSION}|{name}".encode()).digest(count * dims // 8)
    bits = np.unpackbits(np.frombuffer(raw, np.uint8), bitorder="little")[:count * dims]
    return np.where(bits.reshape(count, dims) == 1, 1.0, -1.0).astype(np.float32)


_SPECTRAL_PLANES = _planes("spectral", SIMHASH_BITS, SPECTRAL_BANDS)
_SKETCH_PLANES = _planes("sketch", CODE_BITS, SKETCH_POINTS)


# -- kernels ----------------------------------------------------------------------------------------
_P1 = np.uint64(11400714785074694791)
_P2 = np.uint64(14029467366897019727)
_P3 = np.uint64(1609587929392839161)
_P4 = np.uint64(9650029242287828579)
_P5 = np.uint64(2870177450012600261)


@njit(uint64(uint64, uint64), cache=True, inline="always")
def _rotl(x, r):  # pragma: no cover - compiled
    return (x << r) | (x >> (np.uint64(64) - r))


@njit(uint64(uint8[::1], int64), cache=True, inline="always")
def _read64(b, p):  # pragma: no cover - compiled
    # little-endian by construction, whatever the machine's byte order
    v = np.uint64(0)
    for i in range(8):
        v |= np.uint64(b[p + i]) << np.uint64(8 * i)
    return v


@njit(uint64(uint64, uint64), cache=True, inline="always")
def _round(acc, lane):  # pragma: no cover - compiled
    acc = acc + lane * _P2
    acc = _rotl(acc, np.uint64(31))
    return acc * _P1


@njit(uint64(uint8[::1], uint64), cache=True)
def xxh64(b, seed):  # pragma: no cover - compiled
    """XXH64 of the bytes ``b`` (the reference algorithm of Yann Collet's xxHash, 64-bit variant)."""
    n = b.size
    p = 0
    if n >= 32:
        v1 = seed + _P1 + _P2
        v2 = seed + _P2
        v3 = seed
        v4 = seed - _P1
        while p + 32 <= n:
            v1 = _round(v1, _read64(b, p))
            v2 = _round(v2, _read64(b, p + 8))
            v3 = _round(v3, _read64(b, p + 16))
            v4 = _round(v4, _read64(b, p + 24))
            p += 32
        h = _rotl(v1, np.uint64(1)) + _rotl(v2, np.uint64(7)) + _rotl(v3, np.uint64(12)) + _rotl(v4, np.uint64(18))
        for v in (v1, v2, v3, v4):
            h = (h ^ _round(np.uint64(0), v)) * _P1 + _P4
    else:
        h = seed + _P5
    h += np.uint64(n)
    while p + 8 <= n:
        h ^= _round(np.uint64(0), _read64(b, p))
        h = _rotl(h, np.uint64(27)) * _P1 + _P4
        p += 8
    if p + 4 <= n:
        w = np.uint64(0)
        for i in range(4):
            w |= np.uint64(b[p + i]) << np.uint64(8 * i)
        h ^= w * _P1
        h = _rotl(h, np.uint64(23)) * _P2 + _P3
        p += 4
    while p < n:
        h ^= np.uint64(b[p]) * _P5
        h = _rotl(h, np.uint64(11)) * _P1
        p += 1
    h ^= h >> np.uint64(33)
    h *= _P2
    h ^= h >> np.uint64(29)
    h *= _P3
    h ^= h >> np.uint64(32)
    return h


@njit(uint64[::1](uint8[:, ::1], uint64), cache=True, nogil=True)
def _xxh64_rows(data, seed):  # pragma: no cover - compiled
    out = np.empty(data.shape[0], np.uint64)
    for i in range(data.shape[0]):
        out[i] = xxh64(data[i], seed)
    return out


@njit(uint64[:, ::1](float32[:, ::1], float32[:, ::1]), cache=True, nogil=True)
def _sign_codes(x, planes):  # pragma: no cover - compiled
    """Random-hyperplane codes: bit ``i`` of row ``r`` (word ``i // 64``, bit ``i % 64``) is
    ``planes[i] . x[r] > 0``, summed in float64 in a fixed order (so the bits do not depend on BLAS)."""
    n, d = x.shape
    bits = planes.shape[0]
    out = np.zeros((n, bits // 64), np.uint64)
    for r in range(n):
        for i in range(bits):
            s = 0.0
            for j in range(d):
                s += np.float64(planes[i, j]) * np.float64(x[r, j])
            if s > 0.0:
                out[r, i // 64] |= np.uint64(1) << np.uint64(i % 64)
    return out


@njit(int64(int64[::1], int64), cache=True, inline="always")
def _find(parent, i):  # pragma: no cover - compiled
    while parent[i] != i:
        parent[i] = parent[parent[i]]  # path halving
        i = parent[i]
    return i


@njit(int64(uint64), cache=True, inline="always")
def _popcount(x):  # pragma: no cover - compiled
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@njit(void(int64[::1], uint64[::1], int64[::1], uint64[:, ::1], float32[:, ::1], int16[:, ::1], int64[::1],
           int64, int64, float64, float64, int64[::1]), cache=True, nogil=True)
def _near_pass(order, key, rows, codes, spectral, sketch, parent, window, max_ham, cos_min, corr_min,
               stats):  # pragma: no cover - compiled
    """One LSH band. ``order`` lists positions ``0..m-1`` sorted by bucket; ``key``, ``rows`` (store rows)
    and ``codes`` (sketch codes) are in that sorted order, so the screen reads memory in sequence; the
    signature arrays ``spectral`` and ``sketch`` are indexed by store row, touched only by pairs that pass
    the Hamming screen. Each sorted position is screened against the next ``window`` ones with the same
    key; a verified pair joins its groups in ``parent`` (indexed by position; the root of a group is its
    smallest position, i.e. its first row in store order). ``stats`` += screened, verified pairs."""
    m = order.size
    words = codes.shape[1]
    for a in range(m):
        ka = key[a]
        stop = min(m, a + 1 + window)
        for b in range(a + 1, stop):
            if key[b] != ka:
                break
            stats[0] += 1
            ham = 0
            for w in range(words):
                ham += _popcount(codes[a, w] ^ codes[b, w])
            if ham > max_ham:
                continue
            ra = rows[a]
            rb = rows[b]
            c = 0.0
            for j in range(spectral.shape[1]):
                c += np.float64(spectral[ra, j]) * np.float64(spectral[rb, j])
            if c < cos_min:
                continue
            sab = 0
            saa = 0
            sbb = 0
            for j in range(sketch.shape[1]):
                xa = int64(sketch[ra, j])
                xb = int64(sketch[rb, j])
                sab += xa * xb
                saa += xa * xa
                sbb += xb * xb
            if saa == 0 or sbb == 0 or sab < corr_min * math.sqrt(np.float64(saa) * np.float64(sbb)):
                continue
            stats[1] += 1
            x = _find(parent, order[a])
            y = _find(parent, order[b])
            if x != y:
                if x < y:
                    parent[y] = x
                else:
                    parent[x] = y


# x may be a read-only view of Arrow's values: a read-only signature (a writeable array matches it too)
@njit(void(types.Array(float32, 2, "C", readonly=True), float64[:, ::1], int16[:, ::1]), cache=True, nogil=True)
def _zscore_quantize(x, z, q):  # pragma: no cover - compiled
    """``z`` = the rows of ``x`` z-scored (float64, population sd) and ``q`` = clip(rint(256 z)) as int16.
    Sums run left to right in IEEE float64 (no fast-math reordering), so ``q`` and the exact hash are the
    same on every platform. Rows must be finite and not constant."""
    n, length = x.shape
    for r in range(n):
        s = 0.0
        for t in range(length):
            s += np.float64(x[r, t])
        mean = s / length
        ss = 0.0
        for t in range(length):
            d = np.float64(x[r, t]) - mean
            ss += d * d
        sd = math.sqrt(ss / length)
        for t in range(length):
            v = (np.float64(x[r, t]) - mean) / sd
            z[r, t] = v
            g = np.rint(v * _QUANT)
            q[r, t] = int16(min(32767.0, max(-32768.0, g)))


@njit(float64[:, ::1](float64[:, ::1], int64[::1], int64[::1], float64[::1]), cache=True, nogil=True)
def _sketch_rows(z, edges, perm, sign):  # pragma: no cover - compiled
    """The sketch ``v`` of windows of >= 64 samples (module docstring): ``edges`` (33) bound the 32 blocks,
    ``perm`` and ``sign`` give the count sketch of the residual (bucket j: ``perm[(jL)//32 .. ((j+1)L)//32 - 1]``)."""
    n, length = z.shape
    half = edges.size - 1
    out = np.zeros((n, 2 * half))
    block = np.empty(length, np.int64)
    for k in range(half):
        for t in range(edges[k], edges[k + 1]):
            block[t] = k
    means = np.empty(half)
    for r in range(n):
        e = 0.0
        for k in range(half):
            s = 0.0
            for t in range(edges[k], edges[k + 1]):
                s += z[r, t]
            cnt = edges[k + 1] - edges[k]
            means[k] = s / cnt
            low = means[k] * math.sqrt(cnt / length)   # sum of low_a * low_b: the block-mean part of rho
            out[r, k] = low
            e += low * low
        c2 = 0.0
        for j in range(half):
            c = 0.0
            for i in range((j * length) // half, ((j + 1) * length) // half):
                t = perm[i]
                c += sign[i] * (z[r, t] - means[block[t]])
            out[r, half + j] = c
            c2 += c * c
        w = math.sqrt(max(0.0, 1.0 - e)) / math.sqrt(c2) if c2 > 0.0 else 0.0
        norm = 0.0
        for j in range(half):
            out[r, half + j] *= w
        for k in range(2 * half):
            norm += out[r, k] * out[r, k]
        if norm > 0.0:
            norm = math.sqrt(norm)
            for k in range(2 * half):
                out[r, k] /= norm
    return out


# -- signatures -------------------------------------------------------------------------------------
@dataclass
class Signatures:
    """Per-row signatures of a window store, in store order (parts sorted by name, rows in part order, as
    :func:`pipeline.balance.space.load_rows`). Rows that were not computed have ``status`` 0 and zeros.

    Attributes
    ----------
    exact : ndarray of uint64, shape (n,)
        XXH64 of the quantized z-scored window (module docstring); equal for exact and affine copies.
    spectral : ndarray of float32, shape (n, 32)
        Centred log band powers of the z-scored window, unit length (zeros for constant windows).
    simhash : ndarray of uint64, shape (n,)
        64-bit random-hyperplane code of ``spectral`` (bit i: ``h_i . spectral > 0``, fixed planes).
    sketch : ndarray of int16, shape (n, 64)
        ``rint(32767 v)``, ``v`` the unit 64-vector whose dot products estimate correlations: 32 block means,
        then a count sketch of the residual (module docstring). Zeros for constant and non-finite windows.
    sketch_code : ndarray of uint64, shape (n, 2)
        128-bit random-hyperplane code of ``v``: the keys of the near-copy search.
    length : ndarray of int32, shape (n,)
        Samples of the window.
    status : ndarray of uint8, shape (n,)
        0 not computed, 1 a signal, 2 constant, 3 NaN/inf in it (2 and 3 match exact copies only).
    parts : tuple of str
        The store's parts, in order; ``part_rows`` their row counts.
    """

    exact: np.ndarray
    spectral: np.ndarray
    simhash: np.ndarray
    sketch: np.ndarray
    sketch_code: np.ndarray
    length: np.ndarray
    status: np.ndarray
    parts: tuple[str, ...] = ()
    part_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @classmethod
    def empty(cls, n: int, parts: Sequence[str] = (), part_rows=None) -> "Signatures":
        return cls(np.zeros(n, np.uint64), np.zeros((n, SPECTRAL_BANDS), np.float32), np.zeros(n, np.uint64),
                   np.zeros((n, SKETCH_POINTS), np.int16), np.zeros((n, CODE_BITS // 64), np.uint64),
                   np.zeros(n, np.int32), np.zeros(n, np.uint8), tuple(parts),
                   np.asarray(part_rows if part_rows is not None else [n], np.int64))

    @property
    def n(self) -> int:
        return int(self.status.size)

    @property
    def computed(self) -> np.ndarray:
        return self.status != NOT_COMPUTED

    def digest(self) -> str:
        """sha256 over every array's bytes (and the part names): equal digests, equal signatures."""
        h = hashlib.sha256()
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                h.update(f.name.encode() + str(value.dtype).encode() + str(value.shape).encode())
                h.update(np.ascontiguousarray(value).tobytes())
            else:
                h.update(repr(value).encode())
        return h.hexdigest()


def _band_layout(length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For rfft bins 1..L//2: the start of each non-empty band, which bands those are, and their bin counts."""
    half = length // 2
    band = ((np.arange(half, dtype=np.int64)) * SPECTRAL_BANDS) // half
    present, starts, counts = np.unique(band, return_index=True, return_counts=True)
    return starts, present, counts


@functools.lru_cache(maxsize=64)
def _sketch_layout(length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For windows of ``length`` >= 64 samples: the 33 edges of the 32 blocks, and the permutation of the
    samples and their signs of the residual's count sketch, from SHAKE-256 of the length."""
    half = SKETCH_POINTS // 2
    edges = (np.arange(half + 1, dtype=np.int64) * length) // half
    raw = hashlib.shake_256(f"{_VERSION}|residual|{length}".encode()).digest(9 * length)
    perm = np.argsort(np.frombuffer(raw[:8 * length], "<u8"), kind="stable").astype(np.int64)
    sign = np.where(np.frombuffer(raw[8 * length:], np.uint8) & 1, 1.0, -1.0)
    return edges, perm, sign


def _sketch(z: np.ndarray) -> np.ndarray:
    """The unit 64-vector ``v`` of each z-scored window (rows of ``z``, float64) whose dot products estimate
    the windows' correlations (module docstring)."""
    m, length = z.shape
    if length < SKETCH_POINTS:  # too short to split: the window at 64 nearest samples
        at = ((2 * np.arange(SKETCH_POINTS) + 1) * length) // (2 * SKETCH_POINTS)
        v = z[:, at] - z[:, at].mean(axis=1, keepdims=True)
        norm = np.sqrt((v * v).sum(axis=1, keepdims=True))
        return np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)
    return _sketch_rows(np.ascontiguousarray(z), *_sketch_layout(length))


def _signal_signatures(x: np.ndarray) -> dict:
    """Signatures of finite, non-constant float32 windows of one length (shape (m, L))."""
    m, length = x.shape
    z = np.empty((m, length))
    q = np.empty((m, length), np.int16)
    _zscore_quantize(np.ascontiguousarray(x, dtype=np.float32), z, q)
    if q.dtype.byteorder == ">" or (q.dtype.byteorder == "=" and sys.byteorder == "big"):
        q = q.byteswap()  # the hash is over little-endian int16
    exact = _xxh64_rows(q.view(np.uint8).reshape(m, 2 * length), np.uint64(0))

    power = np.fft.rfft(z, axis=1)
    power = (power.real ** 2 + power.imag ** 2)[:, 1:length // 2 + 1]
    bands = np.zeros((m, SPECTRAL_BANDS))
    if power.shape[1]:
        starts, present, counts = _band_layout(length)
        bands[:, present] = np.add.reduceat(power, starts, axis=1) / counts
    total = bands.sum(axis=1, keepdims=True)
    frac = np.divide(bands, total, out=np.zeros_like(bands), where=total > 0)
    s = np.log(frac + SPECTRAL_FLOOR)
    s -= s.mean(axis=1, keepdims=True)
    norm = np.sqrt((s * s).sum(axis=1, keepdims=True))
    spectral = np.divide(s, norm, out=np.zeros_like(s), where=norm > 0).astype(np.float32)

    u = _sketch(z)
    u32 = u.astype(np.float32)
    sketch = np.rint(u * _SKETCH_SCALE).astype(np.int16)
    return {"exact": exact, "spectral": spectral, "simhash": _sign_codes(spectral, _SPECTRAL_PLANES)[:, 0],
            "sketch": sketch, "sketch_code": _sign_codes(u32, _SKETCH_PLANES),
            "status": np.full(m, SIGNAL, np.uint8)}


def _batch_signatures(x: np.ndarray, out: Signatures, rows: np.ndarray) -> None:
    """Signatures of the equal-length float32 windows ``x`` (m, L) into ``out`` at store rows ``rows``."""
    m, length = x.shape
    out.length[rows] = length
    if m == 0:
        return
    finite = np.isfinite(x).all(axis=1)
    if length:
        hi, lo = x.max(axis=1, initial=-np.inf), x.min(axis=1, initial=np.inf)
        constant = finite & (hi == lo)
    else:
        constant = np.ones(m, bool)
    bad = ~finite
    if bad.any():  # raw float32 bytes, seed 2: such a window matches only its exact copy
        raw = np.ascontiguousarray(x[bad].astype("<f4")).view(np.uint8).reshape(int(bad.sum()), 4 * length)
        out.exact[rows[bad]] = _xxh64_rows(raw, np.uint64(2))
        out.status[rows[bad]] = NON_FINITE
    if constant.any():  # length and value, seed 1
        c = int(constant.sum())
        value = x[constant, 0].astype("<f8") if length else np.zeros(c, "<f8")
        buf = np.empty((c, 2), "<i8")
        buf[:, 0] = length
        buf[:, 1] = value.view("<i8")
        out.exact[rows[constant]] = _xxh64_rows(buf.view(np.uint8).reshape(c, 16), np.uint64(1))
        out.status[rows[constant]] = CONSTANT
    which = np.flatnonzero(finite & ~constant)
    for a in range(0, which.size, _CHUNK):  # chunks keep the float64 temporaries in cache
        pick = which[a:a + _CHUNK]
        sig = _signal_signatures(x[pick] if pick.size < m else x)
        for name, value in sig.items():
            getattr(out, name)[rows[pick]] = value


def _list_parts(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (int64, from 0) and float32 values of a list<float> array, zero-copy where possible."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
        raise Nw2Error(f"samples is {arr.type}, not a list of floats")
    if arr.null_count:
        raise Nw2Error("samples holds a null window")
    offsets = np.asarray(arr.offsets).astype(np.int64)
    values = arr.values
    if values.type != pa.float32():
        values = values.cast(pa.float32())
    values = np.asarray(values)[offsets[0]:offsets[-1]]
    return offsets - offsets[0], values


def _rows_signatures(arr: pa.Array, out: Signatures, rows: np.ndarray) -> None:
    offsets, values = _list_parts(arr)
    lengths = np.diff(offsets)
    if lengths.size and (lengths == lengths[0]).all():
        # equal lengths: the flat values are the (m, L) matrix, no copy
        _batch_signatures(values.reshape(lengths.size, int(lengths[0])), out, rows)
        return
    for length in np.unique(lengths):  # ragged: one vectorized gather per distinct length
        which = np.flatnonzero(lengths == length)
        x = values[offsets[which][:, None] + np.arange(int(length))]
        _batch_signatures(x.reshape(which.size, int(length)), out, rows[which])


def _selected(rows, n: int) -> np.ndarray | None:
    if rows is None:
        return None
    rows = np.asarray(rows)
    if rows.dtype == bool:
        if rows.shape != (n,):
            raise ValueError(f"rows mask has shape {rows.shape}, the store has {n} rows")
        return rows
    if rows.size and not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(f"rows must be a boolean mask or an integer index, got dtype {rows.dtype}")
    rows = rows.astype(np.int64).ravel()
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise ValueError(f"rows index out of range for a store of {n} rows")
    mask = np.zeros(n, bool)
    mask[rows] = True
    return mask


def window_signatures(store_url: str, rows=None, progress: bool = False) -> Signatures:
    """Signatures of the windows of a store, for :func:`find_duplicates`.

    Reads only the ``samples`` column, one row group of one part at a time, so memory holds one row group
    of signals (about 4 MB at 1024 rows of 1024 samples) plus the output (293 bytes per row). Windows of
    one length are handled as a 2-D view of the Arrow values (no copy, no Python loop per row); ragged
    parts are processed one distinct length at a time. The formulas are in the module docstring.

    Parameters
    ----------
    store_url : str
        A window store (local path or fsspec URL).
    rows : ndarray of bool, shape (n,), or of int, optional
        Store rows to compute (store order: parts sorted by name, rows in part order); the others get
        ``status`` 0 and zeros, and row groups without a selected row are not read. Default: every row.
    progress : bool
        A tqdm bar over the parts.

    Returns
    -------
    Signatures
        The same bytes for the same store on the same machine (:meth:`Signatures.digest`); the exact
        hashes and codes are computed with integer or fixed-order arithmetic.

    Raises
    ------
    Nw2Error
        Not a window store, an empty one, or a part without a ``samples`` list column.
    ValueError
        ``rows`` does not fit the store.
    """
    store = WindowStore.open(store_url)
    parts = store.parts()
    metas = []
    for rel in parts:
        with store.open_file(rel) as fh:
            meta = pq.read_metadata(fh)
        if "samples" not in meta.schema.to_arrow_schema().names:
            raise Nw2Error(f"{store.path(rel)}: no samples column; not a window store part?")
        metas.append(meta)
    counts = np.array([m.num_rows for m in metas], np.int64)
    n = int(counts.sum())
    mask = _selected(rows, n)
    out = Signatures.empty(n, parts, counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)

    from tqdm.auto import tqdm

    for rel, meta, start in tqdm(list(zip(parts, metas, starts)), desc="signatures", unit="part",
                                 disable=not progress):
        groups = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        g0 = start + np.concatenate([[0], np.cumsum(groups)[:-1]]).astype(np.int64)
        wanted = [g for g, (a, k) in enumerate(zip(g0, groups))
                  if k and (mask is None or mask[a:a + k].any())]
        if not wanted:
            continue
        with store.open_file(rel) as fh:
            pf = CheckedFile(fh, f"{store.url}/{rel}")
            for g in wanted:
                arr = pf.read_row_group(g, columns=["samples"]).column("samples")
                rows_g = np.arange(g0[g], g0[g] + groups[g], dtype=np.int64)
                if mask is not None:
                    pick = np.flatnonzero(mask[rows_g])
                    if pick.size < rows_g.size:
                        arr = arr.combine_chunks().take(pa.array(pick))
                        rows_g = rows_g[pick]
                _rows_signatures(arr, out, rows_g)
    return out


# -- duplicates -------------------------------------------------------------------------------------
@dataclass
class Duplicates:
    """Duplicate groups among the candidate rows.

    Attributes
    ----------
    rows : ndarray of int64, shape (k,)
        Store rows of the candidates, in the order given (ascending for a mask).
    keep : ndarray of bool, shape (k,)
        True for the first row in store order of each duplicate group and for every row without copies.
    representative : ndarray of int64, shape (k,)
        Store row of the kept row of each candidate's group (its own row when it is kept).
    exact_dropped, near_dropped : int
        Rows dropped as exact copies (same hash as an earlier candidate), and as near copies (after that).
    groups : int
        Groups of two or more candidates (exact and near copies together).
    screened, verified : int
        Pairs screened by the near-copy search, and pairs that passed every test (for diagnostics).
    """

    rows: np.ndarray
    keep: np.ndarray
    representative: np.ndarray
    exact_dropped: int
    near_dropped: int
    groups: int
    screened: int = 0
    verified: int = 0

    @property
    def dropped(self) -> int:
        return self.exact_dropped + self.near_dropped

    def summary(self) -> dict:
        """The counts, as a JSON-ready dict (``candidates``, ``kept``, ``exact_dropped``, ``near_dropped``,
        ``groups``)."""
        return {"candidates": int(self.rows.size), "kept": int(self.keep.sum()),
                "exact_dropped": int(self.exact_dropped), "near_dropped": int(self.near_dropped),
                "groups": int(self.groups)}


def max_hamming(time_threshold: float, bits: int = CODE_BITS) -> int:
    r"""Largest Hamming distance between the sketch codes of a pair that is still screened:
    :math:`\lceil b p + 6 \sqrt{b p (1 - p)} \rceil` with :math:`p = \arccos(t)/\pi` the bit-flip probability
    of two sketches at correlation :math:`t` and :math:`b` the code bits (25 at :math:`t = 0.98`)."""
    p = math.acos(max(-1.0, min(1.0, float(time_threshold)))) / math.pi
    return int(min(bits, math.ceil(bits * p + 6.0 * math.sqrt(bits * p * (1.0 - p)))))


def _candidate_rows(sig: Signatures, candidates) -> np.ndarray:
    c = np.asarray(candidates)
    if c.dtype == bool:
        if c.shape != (sig.n,):
            raise ValueError(f"candidates mask has shape {c.shape}, the signatures have {sig.n} rows")
        return np.flatnonzero(c).astype(np.int64)
    if c.size and not np.issubdtype(c.dtype, np.integer):
        raise ValueError(f"candidates must be a boolean mask or an integer index, got dtype {c.dtype}")
    c = c.astype(np.int64).ravel()
    if c.size and (c.min() < 0 or c.max() >= sig.n):
        raise ValueError(f"candidates index out of range for {sig.n} rows")
    if np.unique(c).size != c.size:
        raise ValueError("candidates index holds a row twice")
    return c


def find_duplicates(sig: Signatures, candidates, near_threshold: float = NEAR_THRESHOLD,
                    time_threshold: float = TIME_THRESHOLD, window: int = WINDOW) -> Duplicates:
    r"""Group the candidates into exact and near copies; keep the first of each group in store order.

    1. **Exact**: candidates with equal ``exact`` hashes form a group (a 64-bit hash: among ten million
       windows a false match has probability about :math:`n^2 / 2^{65} \approx 3 \cdot 10^{-6}`).
    2. **Near**: among the first rows of those groups with ``status`` 1, banded LSH over the 128-bit sketch
       codes (8 bands of 16 bits; in each, rows sorted by length, band bits, then the top 32 bits of the
       other code word; each compared with the next ``window`` rows of its bucket). A pair is a near copy
       when its codes differ in at most :func:`max_hamming` bits (a screen, 25 at 0.98), its spectral
       signatures have cosine :math:`\ge` ``near_threshold`` and its sketches correlation
       :math:`\ge` ``time_threshold``. Near copies join groups transitively (union-find).

    Parameters
    ----------
    sig : Signatures
        From :func:`window_signatures`; every candidate must have been computed.
    candidates : ndarray of bool, shape (n,), or of int
        The rows to deduplicate (e.g. the balanced split), a mask or distinct store rows.
    near_threshold : float
        Cosine of the spectral signatures (default 0.995).
    time_threshold : float
        Correlation of the 64-point sketches (default 0.98).
    window : int
        Rows of its bucket each row is compared with, per band (default 32): the cost is at most
        ``8 * window`` screens per row.

    Returns
    -------
    Duplicates

    Raises
    ------
    ValueError
        A candidate without signature, a row given twice, or thresholds outside (0, 1].
    """
    if not (0.0 < near_threshold <= 1.0 and 0.0 < time_threshold <= 1.0):
        raise ValueError(f"thresholds must lie in (0, 1], got {near_threshold} and {time_threshold}")
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    given = _candidate_rows(sig, candidates)
    if given.size and not sig.computed[given].all():
        raise ValueError(f"{int((~sig.computed[given]).sum())} candidate(s) have no signature; compute them "
                         f"with window_signatures(..., rows=...)")
    back = np.argsort(given, kind="stable")
    rows = given[back]                                   # candidates in store order
    k = rows.size

    # exact groups: sort by hash (stable, so each run is in store order) and point every row at the run's first
    by_hash = np.argsort(sig.exact[rows], kind="stable")
    h = sig.exact[rows][by_hash]
    first = np.ones(k, bool)
    if k:
        first[1:] = h[1:] != h[:-1]
    run_first = by_hash[np.maximum.accumulate(np.where(first, np.arange(k), 0))] if k else by_hash
    exact_rep = np.empty(k, np.int64)
    exact_rep[by_hash] = run_first                        # position (in store order) of its exact representative
    is_rep = exact_rep == np.arange(k)

    # near groups among the exact representatives that are signals (not constant, finite)
    parent = np.arange(k, dtype=np.int64)
    stats = np.zeros(2, np.int64)
    pos = np.flatnonzero(is_rep & (sig.status[rows] == SIGNAL)).astype(np.int64)
    if pos.size > 1:
        sub_rows = rows[pos]
        codes = np.ascontiguousarray(sig.sketch_code)
        lengths = sig.length[sub_rows]
        _, length_id = np.unique(lengths, return_inverse=True)
        sub_parent = np.arange(pos.size, dtype=np.int64)
        words = CODE_BITS // 64
        ham = max_hamming(time_threshold)
        spectral = np.ascontiguousarray(sig.spectral)
        sketch = np.ascontiguousarray(sig.sketch)
        sub_codes = codes[sub_rows]
        one_key = length_id.max() < (1 << 16)
        for band in range(LSH_BANDS):
            word, shift = divmod(band * LSH_BITS, 64)
            bits = (sub_codes[:, word] >> np.uint64(shift)) & np.uint64((1 << LSH_BITS) - 1)
            primary = (length_id.astype(np.uint64) << np.uint64(LSH_BITS)) | bits
            other = sub_codes[:, (word + 1) % words] >> np.uint64(32)
            # bucket = (length, band bits); inside it, the other word's top bits bring similar codes together;
            # stable, so ties stay in store order
            if one_key:
                order = np.argsort((primary << np.uint64(32)) | other, kind="stable")
            else:
                order = np.lexsort((other, primary))
            order = order.astype(np.int64)
            _near_pass(order, primary[order], sub_rows[order], np.ascontiguousarray(sub_codes[order]), spectral,
                       sketch, sub_parent, int(window), ham, float(near_threshold), float(time_threshold), stats)
            del order
        # flatten: every position's root (the first position of its group, as unions keep the smaller)
        roots = sub_parent.copy()
        while True:
            nxt = roots[roots]
            if (nxt == roots).all():
                break
            roots = nxt
        parent[pos] = pos[roots]

    final = parent[exact_rep]                             # exact copies follow their representative's group
    keep_sorted = final == np.arange(k)
    exact_groups = int(is_rep.sum())
    sizes = np.bincount(final, minlength=k) if k else np.zeros(0, np.int64)
    representative = np.empty(k, np.int64)
    keep = np.empty(k, bool)
    representative[back] = rows[final]
    keep[back] = keep_sorted
    return Duplicates(rows=given, keep=keep, representative=representative,
                      exact_dropped=k - exact_groups, near_dropped=exact_groups - int(keep_sorted.sum()),
                      groups=int((sizes >= 2).sum()), screened=int(stats[0]), verified=int(stats[1]))
