"""Quantisation-aware training of the challenge VGG10 with Feedback Magnitude Pruning (FMP) or IMP."""
import warnings

# Brevitas announces at import that an optional GPU kernel package is missing; it is not used here.
warnings.filterwarnings("ignore", message="fast_hadamard_transform package not found")
