"""Torch-free RadioML 2018.01A support: class names, the challenge split, reading, synthesis.

Everything here imports with numpy and h5py alone (the synthetic generator also
uses scipy), so the on-board driver can use it on a PYNQ image.
"""
