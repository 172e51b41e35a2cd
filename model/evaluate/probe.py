"""Linear probes on frozen embeddings, and the scores they are judged by.

- :func:`fit_logistic`: L2-regularised multinomial logistic regression, fitted with L-BFGS in float64 torch on
  standardised features, with class-balanced sample weights;
- :func:`fit_ridge`: ridge regression in closed form, for continuous targets;
- :func:`auroc` (binary, from ranks, ties averaged), :func:`auroc_ovr` (one-vs-rest macro average) and
  :func:`balanced_accuracy`;
- :func:`run_classification` / :func:`run_regression`: one probe task from train and evaluation embeddings,
  returning its section of ``metrics.json`` (or a ``skipped`` reason).

No scikit-learn: the pieces are small and their definitions are in ``docs/evaluate.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import rankdata

__all__ = ["LOGISTIC_L2", "RIDGE_L2", "auroc", "auroc_ovr", "balanced_accuracy", "fit_logistic", "fit_ridge",
           "run_classification", "run_regression", "Standardiser", "Logistic"]

#: L2 penalty of the logistic probe: loss = weighted mean cross-entropy + LOGISTIC_L2 / 2 * ||W||^2.
LOGISTIC_L2 = 1e-3
#: Ridge penalty: minimises mean squared error + RIDGE_L2 * ||w||^2 on standardised features.
RIDGE_L2 = 1e-2
LBFGS_MAX_ITER = 500


# -- scores -----------------------------------------------------------------------------------------
def auroc(scores, positive) -> float:
    """Area under the ROC curve of ``scores`` for the boolean ``positive``: the Mann-Whitney statistic
    ``(R+ - n+(n+ + 1)/2) / (n+ n-)`` with ``R+`` the sum of the positives' ranks (ties share their mean
    rank, so a tie counts one half). NaN without positives or without negatives."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(positive, dtype=bool).ravel()
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s, method="average")
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auroc_ovr(proba, y, classes=None) -> float:
    """Macro one-vs-rest AUROC: the mean of :func:`auroc` of column ``c`` of ``proba`` for ``y == c`` over the
    classes ``c`` with at least one positive and one negative in ``y`` (``classes``: the column indices to
    consider, default all). With two classes this equals the binary AUROC. NaN when no class qualifies."""
    proba = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y)
    cols = range(proba.shape[1]) if classes is None else classes
    vals = [auroc(proba[:, c], y == c) for c in cols]
    vals = [v for v in vals if not np.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


def balanced_accuracy(y_true, y_pred) -> float:
    """Mean over the classes present in ``y_true`` of the fraction of their samples predicted right."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    classes = np.unique(y_true)
    if classes.size == 0:
        return float("nan")
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in classes]))


# -- models -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Standardiser:
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> "Standardiser":
        X = np.asarray(X, dtype=np.float64)
        sd = X.std(0)
        return cls(X.mean(0), np.where(sd > 1e-8, sd, 1.0))

    def __call__(self, X) -> np.ndarray:
        return (np.asarray(X, dtype=np.float64) - self.mean) / self.std


@dataclass(frozen=True)
class Logistic:
    scaler: Standardiser
    weight: np.ndarray  # (D, K)
    bias: np.ndarray    # (K,)

    def proba(self, X) -> np.ndarray:
        logits = self.scaler(X) @ self.weight + self.bias
        logits -= logits.max(1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        return np.argmax(self.proba(X), axis=1)


def fit_logistic(X, y, n_classes: int | None = None, l2: float = LOGISTIC_L2,
                 max_iter: int = LBFGS_MAX_ITER) -> Logistic:
    """Multinomial logistic regression of integer labels ``y`` (0..K-1) on ``X`` (n, D): features standardised
    with the training mean and std; minimises ``sum_i w_i CE_i / sum_i w_i + l2/2 ||W||^2`` (bias not
    penalised) with ``w_i = n / (K n_{y_i})`` (every class weighs the same), by L-BFGS with a strong-Wolfe line
    search in float64, from zero. Deterministic."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    K = int(n_classes if n_classes is not None else y.max() + 1)
    scaler = Standardiser.fit(X)
    Xt = torch.from_numpy(scaler(X))
    yt = torch.from_numpy(y)
    counts = np.bincount(y, minlength=K).astype(np.float64)
    w = torch.from_numpy(len(y) / (K * np.maximum(counts, 1.0)))[yt]
    W = torch.zeros(X.shape[1], K, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(K, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-10, tolerance_change=1e-14,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        ce = torch.nn.functional.cross_entropy(Xt @ W + b, yt, reduction="none")
        loss = (w * ce).sum() / w.sum() + 0.5 * l2 * (W * W).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return Logistic(scaler, W.detach().numpy().copy(), b.detach().numpy().copy())


@dataclass(frozen=True)
class Ridge:
    scaler: Standardiser
    weight: np.ndarray
    intercept: float

    def predict(self, X) -> np.ndarray:
        return self.scaler(X) @ self.weight + self.intercept


def fit_ridge(X, y, l2: float = RIDGE_L2) -> Ridge:
    """Ridge regression on standardised features: minimises ``mean_i (y_i - b - x_i w)^2 + l2 ||w||^2``,
    i.e. ``w = (Xc^T Xc + n l2 I)^{-1} Xc^T (y - mean y)``, ``b = mean y``."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    scaler = Standardiser.fit(X)
    Z = scaler(X)
    n, d = Z.shape
    ym = float(y.mean())
    w = np.linalg.solve(Z.T @ Z + n * l2 * np.eye(d), Z.T @ (y - ym))
    return Ridge(scaler, w, ym)


# -- tasks ------------------------------------------------------------------------------------------
def run_classification(train_X, train_y, eval_X, eval_y) -> dict:
    """Fit the logistic probe on the train embeddings/labels (strings) and score it on the evaluation ones.

    Skipped (``{"skipped": reason, ...}``) when there are no train rows, one train class, no evaluation rows,
    or no evaluation row whose class occurs in train. Evaluation rows of classes unseen in train are left
    out and counted (``eval_unseen``). AUROC is the binary one for two train classes, else macro one-vs-rest
    over the evaluated classes; it is null when the evaluation rows hold a single class."""
    train_y = np.asarray(train_y, dtype=object)
    eval_y = np.asarray(eval_y, dtype=object)
    info: dict = {"kind": "classification", "train_windows": int(train_y.size), "eval_windows": int(eval_y.size)}
    classes = sorted(set(train_y.tolist()))
    info["classes"] = classes
    if train_y.size == 0:
        return {**info, "skipped": "no labelled windows in the train split"}
    if len(classes) < 2:
        return {**info, "skipped": f"one class in the train split ({classes[0]!r}): nothing to tell apart"}
    if eval_y.size == 0:
        return {**info, "skipped": "no labelled windows in the evaluated split"}
    index = {c: i for i, c in enumerate(classes)}
    seen = np.array([v in index for v in eval_y.tolist()], dtype=bool)
    info["eval_unseen"] = int((~seen).sum())
    info["eval_scored"] = int(seen.sum())
    if not seen.any():
        unseen = sorted(set(eval_y.tolist()))
        return {**info, "skipped": f"no evaluated class occurs in train (evaluated: {', '.join(map(str, unseen))})"}
    ytr = np.array([index[v] for v in train_y.tolist()])
    yev = np.array([index[v] for v in eval_y[seen].tolist()])
    model = fit_logistic(train_X, ytr, len(classes))
    proba = model.proba(np.asarray(eval_X)[seen])
    present = sorted(set(yev.tolist()))
    info["eval_classes"] = [classes[i] for i in present]
    if len(classes) == 2:
        auc = auroc(proba[:, 1], yev == 1)
    else:
        auc = auroc_ovr(proba, yev, present)
    info["auroc"] = None if np.isnan(auc) else auc
    if info["auroc"] is None:
        info["auroc_note"] = "undefined: the evaluated windows hold one class"
    info["balanced_accuracy"] = balanced_accuracy(yev, np.argmax(proba, axis=1))
    info["train_accuracy"] = float(np.mean(model.predict(train_X) == ytr))
    return info


def run_regression(train_X, train_y, eval_X, eval_y) -> dict:
    """Fit the ridge probe on finite train targets and score it on the finite evaluation targets: ``r2`` =
    ``1 - SSE / SST`` (SST around the evaluation mean) and ``pearson`` between prediction and target. Skipped
    with fewer than 3 finite values on either side or a constant train target."""
    train_y = np.asarray(train_y, dtype=np.float64)
    eval_y = np.asarray(eval_y, dtype=np.float64)
    ok_tr, ok_ev = np.isfinite(train_y), np.isfinite(eval_y)
    info: dict = {"kind": "regression", "train_windows": int(ok_tr.sum()), "eval_windows": int(ok_ev.sum())}
    if ok_tr.sum() < 3:
        return {**info, "skipped": "fewer than 3 train windows with a defined value"}
    if ok_ev.sum() < 3:
        return {**info, "skipped": "fewer than 3 evaluated windows with a defined value"}
    if np.ptp(train_y[ok_tr]) == 0:
        return {**info, "skipped": "the target is constant on the train split"}
    model = fit_ridge(np.asarray(train_X)[ok_tr], train_y[ok_tr])
    pred = model.predict(np.asarray(eval_X)[ok_ev])
    t = eval_y[ok_ev]
    sst = float(np.sum((t - t.mean()) ** 2))
    info["r2"] = None if sst == 0 else 1.0 - float(np.sum((t - pred) ** 2)) / sst
    sp, st = np.std(pred), np.std(t)
    info["pearson"] = None if sp == 0 or st == 0 else float(np.corrcoef(pred, t)[0, 1])
    return info
