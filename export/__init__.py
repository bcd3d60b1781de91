"""Export of a trained VGG10 to QONNX / QCDQ / FINN-ONNX, checked stage by stage against PyTorch."""
import warnings

warnings.filterwarnings("ignore", message="fast_hadamard_transform package not found")
# qonnx notes on every run that it assumes NWC for 3D tensors and Gemm v9; export/steps.py handles both.
warnings.filterwarnings("ignore", message="Assuming 3D input is NWC")
warnings.filterwarnings("ignore", message="The GemmToMatMul transformation only offers explicit support")
