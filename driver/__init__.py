"""PYNQ-side runtime of the AMC accelerator (imports numpy, h5py and, lazily, pynq only)."""
