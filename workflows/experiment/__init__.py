"""``nw2 experiment``: balanced(N) against random(2N), or any arms side by side (see ``stage.py``)."""

from .stage import ExperimentResult, finished_work, run_experiment
from .stats import Comparison, Interval, compare

__all__ = ["ExperimentResult", "run_experiment", "finished_work", "Comparison", "Interval", "compare"]
