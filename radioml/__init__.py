"""Torch-free RadioML 2018.01A support and what every stage shares: class names, the challenge split, reading,
synthesis, the input quantiser, the typed stage-boundary files, safe publishing of outputs.

Everything here imports with numpy and h5py alone (onnxruntime and onnx only for the host-side golden model,
imported when used), so the on-board driver can use it on a PYNQ image.
"""
