"""Labels and grid of RadioML 2018.01A, in the order the HDF5 file really uses.

The dataset's own classes.txt lists another order, which is wrong; this is the
order of the ITU-ML5G-PS-007 sandbox, verified against the file's one-hot rows.
"""
from __future__ import annotations

CLASSES: tuple[str, ...] = (
    "OOK", "4ASK", "8ASK", "BPSK", "QPSK", "8PSK", "16PSK", "32PSK",
    "16APSK", "32APSK", "64APSK", "128APSK", "16QAM", "32QAM", "64QAM",
    "128QAM", "256QAM", "AM-SSB-WC", "AM-SSB-SC", "AM-DSB-WC", "AM-DSB-SC",
    "FM", "GMSK", "OQPSK",
)
SNRS_DB: tuple[int, ...] = tuple(range(-20, 31, 2))  # 26 values
FRAME_LENGTH = 1024
POLYPHASES = (1, 2, 4)  # samples per position a model's first layer may take (train/model.py)
