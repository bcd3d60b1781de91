"""Export of a trained model (or a QONNX file) to QONNX / QCDQ / FINN-ONNX, every stage checked bit for bit against
the golden reference (the PyTorch model, or the QONNX graph executed by qonnx)."""
import warnings

warnings.filterwarnings("ignore", message="fast_hadamard_transform package not found")
# qonnx notes on every run that it assumes NWC for 3D tensors and Gemm v9; export/steps.py handles both.
warnings.filterwarnings("ignore", message="Assuming 3D input is NWC")
warnings.filterwarnings("ignore", message="The GemmToMatMul transformation only offers explicit support")
