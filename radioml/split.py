"""The ITU-ML5G-PS-007 challenge's train/test split, and a validation split carved from train.

The rule is the challenge sandbox's, so accuracies compare with its leaderboard:
numpy's legacy global RNG seeded with 2018; for each class, for each SNR, the
block of frames of that (class, SNR) is shuffled with np.random.shuffle and the
first ceil(0.1 * block) frames go to test, the rest to train. A RandomState
seeded with 2018 draws the same stream as the sandbox's global np.random.seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CHALLENGE_SEED = 2018
TEST_FRACTION = 0.1


@dataclass(frozen=True)
class Split:
    """Frame indices (sorted, int64) of each part of the dataset."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def challenge_split(n_classes: int, n_snrs: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices exactly as the challenge sandbox draws them, in draw order."""
    rs = np.random.RandomState(CHALLENGE_SEED)
    n_test = math.ceil(TEST_FRACTION * block)
    train = np.empty((n_classes * n_snrs, block - n_test), np.int64)
    test = np.empty((n_classes * n_snrs, n_test), np.int64)
    for mod in range(n_classes):
        for snr_idx in range(n_snrs):
            start = n_snrs * block * mod + block * snr_idx
            idx = np.arange(start, start + block, dtype=np.int64)
            rs.shuffle(idx)
            b = mod * n_snrs + snr_idx
            test[b], train[b] = idx[:n_test], idx[n_test:]
    return train, test


def make_split(n_classes: int, n_snrs: int, block: int, snrs_db: np.ndarray | None = None,
               min_train_snr: float | None = None, val_fraction: float = 0.0) -> Split:
    """Challenge split plus options.

    min_train_snr drops training (and validation) frames below that SNR; the test
    split is never touched. val_fraction carves a validation set out of the
    training frames of every (class, SNR) block (the first frames of each block's
    shuffled train part), so test frames never steer training.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    train, test = challenge_split(n_classes, n_snrs, block)
    n_val = math.ceil(val_fraction * train.shape[1]) if val_fraction > 0 else 0
    val, train = train[:, :n_val], train[:, n_val:]
    if min_train_snr is not None:
        if snrs_db is None:
            raise ValueError("min_train_snr needs the SNR grid")
        keep = np.tile(np.asarray(snrs_db) >= min_train_snr, n_classes)
        train, val = train[keep], val[keep]
    return Split(np.sort(train.ravel()), np.sort(val.ravel()), np.sort(test.ravel()))
