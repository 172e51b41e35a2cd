"""Synthetic data with known dynamics: dysts flows and maps, their true Lyapunov spectra and regimes, and bifurcation sweeps."""
