"""Classification metrics of RadioML predictions (torch-free: the on-board driver uses them too)."""
from __future__ import annotations

import numpy as np

from .classes import CLASSES, SNRS_DB


def summarize(y_true: np.ndarray, y_pred: np.ndarray, snr: np.ndarray) -> dict:
    """Overall accuracy, accuracy per SNR, per class, per class and SNR, confusion matrix.

    Keys of the per-SNR dicts are SNRs in dB as strings (JSON-friendly); rows of
    the confusion matrix are true classes, columns predicted ones, in CLASSES order.
    """
    y_true = np.asarray(y_true, np.int64)
    y_pred = np.asarray(y_pred, np.int64)
    snr = np.asarray(snr)
    n_cls = len(CLASSES)
    ok = y_true == y_pred
    conf = np.bincount(y_true * n_cls + y_pred, minlength=n_cls * n_cls).reshape(n_cls, n_cls)

    def acc(mask):
        return float(ok[mask].mean()) if mask.any() else None

    per_snr = {str(s): acc(snr == s) for s in SNRS_DB if (snr == s).any()}
    per_class = {c: acc(y_true == i) for i, c in enumerate(CLASSES) if (y_true == i).any()}
    per_class_snr = {
        c: {str(s): acc((y_true == i) & (snr == s)) for s in SNRS_DB if ((y_true == i) & (snr == s)).any()}
        for i, c in enumerate(CLASSES) if (y_true == i).any()
    }
    return {
        "frames": int(y_true.size),
        "accuracy": float(ok.mean()) if ok.size else None,
        "accuracy_per_snr": per_snr,
        "accuracy_per_class": per_class,
        "accuracy_per_class_snr": per_class_snr,
        "confusion": conf.tolist(),
        "classes": list(CLASSES),
    }
