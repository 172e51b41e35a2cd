"""Synthetic signals with known dynamics, for tests, benchmarks and the docs' reference table.

Every generator is deterministic given its arguments (noise comes from ``np.random.default_rng(seed)``)
and returns a float64 array. The known values are those of ``docs/metrics.md`` and
``shared/reference-values.md``: logistic map at r=4 (largest Lyapunov exponent ln 2 per step),
Henon map (0.42 per step, correlation dimension 1.21), Lorenz (0.906 per time unit, correlation
dimension 2.05), white/pink/brown noise (DFA alpha 0.5/1.0/1.5).
"""

from __future__ import annotations

import numpy as np


def logistic(n: int, r: float = 4.0, x0: float = 0.1234, discard: int = 1000) -> np.ndarray:
    """The logistic map ``x[t+1] = r x[t] (1 - x[t])``; at r=4 its largest Lyapunov exponent is ln 2
    per step."""
    x, out = x0, np.empty(n)
    for i in range(discard + n):
        x = r * x * (1.0 - x)
        if i >= discard:
            out[i - discard] = x
    return out


def henon(n: int, a: float = 1.4, b: float = 0.3, discard: int = 1000) -> np.ndarray:
    """The x coordinate of the Henon map ``x' = 1 - a x^2 + y, y' = b x``."""
    x, y, out = 0.1, 0.1, np.empty(n)
    for i in range(discard + n):
        x, y = 1.0 - a * x * x + y, b * x
        if i >= discard:
            out[i - discard] = x
    return out


def lorenz(n: int, dt: float = 0.01, sigma: float = 10.0, rho: float = 28.0, beta: float = 8.0 / 3.0,
           coordinate: int = 0, discard: int = 2000, substeps: int = 10) -> np.ndarray:
    """One coordinate of the Lorenz system sampled every ``dt`` time units (fourth-order Runge-Kutta
    with ``substeps`` steps per sample). Sampled this way, ``fs = 1/dt`` makes the Lyapunov exponent
    come out per time unit."""
    def f(s):
        x, y, z = s
        return np.array([sigma * (y - x), x * (rho - z) - y, x * y - beta * z])

    h = dt / substeps
    s = np.array([1.0, 1.0, 1.0])
    out = np.empty(n)
    for i in range(discard + n):
        for _ in range(substeps):
            k1 = f(s)
            k2 = f(s + 0.5 * h * k1)
            k3 = f(s + 0.5 * h * k2)
            k4 = f(s + h * k3)
            s = s + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        if i >= discard:
            out[i - discard] = s[coordinate]
    return out


def white_noise(n: int, seed: int = 0) -> np.ndarray:
    """Gaussian white noise: DFA alpha 0.5, Hurst about 0.5, normalized entropies near 1."""
    return np.random.default_rng(seed).standard_normal(n)


def pink_noise(n: int, seed: int = 0) -> np.ndarray:
    """1/f noise by spectral shaping of white noise: DFA alpha 1.0."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1]
    x = np.fft.irfft(spectrum / np.sqrt(freqs), n)
    return (x - x.mean()) / x.std()


def brown_noise(n: int, seed: int = 0) -> np.ndarray:
    """Brownian motion (cumulative sum of white noise): DFA alpha 1.5."""
    return np.cumsum(np.random.default_rng(seed).standard_normal(n))


def sine(n: int, fs: float = 100.0, freq: float = 1.0, phase: float = 0.0) -> np.ndarray:
    """A pure tone: periodic, so sample entropy near 0 and 0-1 test K near 0."""
    return np.sin(2 * np.pi * freq * np.arange(n) / fs + phase)
