"""Export of a trained VGG10 to QONNX / QCDQ / FINN-ONNX, checked stage by stage against PyTorch."""
import warnings

warnings.filterwarnings("ignore", message="fast_hadamard_transform package not found")
