"""The challenge split: exact rule, sizes, validation carve-out, SNR filter."""
import math

import numpy as np

from radioml.classes import SNRS_DB
from radioml.split import challenge_split, make_split


def sandbox_split(block):
    """The ITU-ML5G-PS-007 sandbox's code, literally: global seed, Python lists."""
    np.random.seed(2018)
    train, test = [], []
    for mod in range(24):
        for snr_idx in range(26):
            start = 26 * block * mod + block * snr_idx
            idx = list(range(start, start + block))
            split = int(np.ceil(0.1 * block))
            np.random.shuffle(idx)
            train.extend(idx[split:])
            test.extend(idx[:split])
    return np.array(train), np.array(test)


def test_matches_sandbox_on_real_block_size():
    ref_train, ref_test = sandbox_split(4096)
    train, test = challenge_split(24, 26, 4096)
    assert test.shape == (624, 410)
    np.testing.assert_array_equal(train.ravel(), ref_train)
    np.testing.assert_array_equal(test.ravel(), ref_test)


def test_small_blocks_follow_same_rule():
    for block in (4, 64):
        ref_train, ref_test = sandbox_split(block)
        train, test = challenge_split(24, 26, block)
        np.testing.assert_array_equal(test.ravel(), ref_test)
        assert test.shape[1] == math.ceil(0.1 * block)


def test_split_is_deterministic_partition():
    a = make_split(24, 26, 64, val_fraction=0.1)
    b = make_split(24, 26, 64, val_fraction=0.1)
    for x, y in zip((a.train, a.val, a.test), (b.train, b.val, b.test)):
        np.testing.assert_array_equal(x, y)
    allidx = np.concatenate([a.train, a.val, a.test])
    assert len(allidx) == 24 * 26 * 64 == len(np.unique(allidx))
    assert len(a.test) == 624 * 7 and len(a.val) == 624 * math.ceil(0.1 * 57)


def test_validation_never_touches_test():
    plain = make_split(24, 26, 64)
    with_val = make_split(24, 26, 64, val_fraction=0.2)
    np.testing.assert_array_equal(plain.test, with_val.test)
    assert not np.intersect1d(with_val.val, with_val.test).size
    np.testing.assert_array_equal(np.sort(np.concatenate([with_val.train, with_val.val])), plain.train)


def test_min_train_snr_filters_train_only():
    block = 16
    sp = make_split(24, 26, block, np.array(SNRS_DB), min_train_snr=0, val_fraction=0.1)
    snr_of = lambda i: np.array(SNRS_DB)[(i // block) % 26]  # noqa: E731
    assert snr_of(sp.train).min() == 0 and snr_of(sp.val).min() == 0
    assert snr_of(sp.test).min() == -20
