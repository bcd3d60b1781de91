"""An emulated accelerator: the DMA transfer replaced by the exported golden model.

It unpacks the input bytes exactly as the hardware's input stream would see them,
un-folds them, runs the export's QCDQ model in onnxruntime (radioml/golden_session.py,
bit-true to PyTorch) on the dequantised integers, and folds and packs the result (the logits,
or for a class-index accelerator the top-1 index) into the output buffer. So `AMCOverlay(..., backend=EmulatedBackend(...))` exercises the whole
driver (quantisation, folding, packing, buffer handling, unpacking) without a board.
Needs onnxruntime (not on a PYNQ image; emulation runs on a host).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from radioml.artifacts import DriverIO, ExportIO
from radioml.golden_session import golden_input_scale, golden_session

from .packing import pack, unpack


class EmulatedBackend:
    def __init__(self, export_dir, io: DriverIO):
        export_dir = Path(export_dir)
        qcdq = export_dir / "model_qcdq.onnx"
        if not qcdq.is_file():
            raise ValueError(f"{qcdq}: golden model missing (run python -m export.to_finn)")
        exp_io = ExportIO.read(export_dir, verify_files=["model_qcdq.onnx"])  # the ONNX this export wrote
        if exp_io.files != io.export_files:
            raise ValueError(f"{export_dir}: not the export this bundle was built from (its files' digests differ "
                             f"from those driver_io.json recorded)")
        if exp_io.input_quant != io.input_quant:
            raise ValueError(f"{export_dir}: input quantiser differs from the bundle's driver_io.json")
        scale, zero_point = golden_input_scale(qcdq)
        if not (math.isclose(scale, io.input_quant.scale, rel_tol=1e-6) and zero_point == io.input_quant.zero_point):
            raise ValueError(f"{qcdq}: its input quantiser has scale {scale:.6g}, zero point {zero_point:g}; "
                             f"driver_io.json says {io.input_quant.scale:.6g}, {io.input_quant.zero_point:g} "
                             f"(edited?); rebuild the bundle")
        self.sess = golden_session(qcdq)
        self.iq = io.input_quant
        self.d = io.io_shape_dict
        self.class_index = io.output == "class"

    def allocate(self, shape):
        return np.zeros(shape, np.uint8)

    def run(self, ibuf, obuf, batch: int) -> None:
        d = self.d
        folded = [batch] + list(d["ishape_folded"][0][1:])
        ints = unpack(np.asarray(ibuf[:batch]), d["idt"][0], folded)
        x = ints.reshape([batch] + list(d["ishape_normal"][0][1:]))  # (B, 1024/P, 1, 2P)
        # channels-last samples in order ((B, 1024, 1, 2), or a polyphase (B, 512, 1, 4): the same bytes)
        x = self.iq.dequantize(x.reshape(batch, -1, 2)).transpose(0, 2, 1)  # (B, 2, 1024)
        logits = self.sess.run(None, {self.sess.get_inputs()[0].name: np.ascontiguousarray(x)})[0]
        if self.class_index:  # FINN's LabelSelect (k=1): the index of the largest score, the first of equal ones
            logits = logits.reshape(batch, -1).argmax(1).astype(np.float32)
        out = logits.reshape([batch] + list(d["oshape_folded"][0][1:]))
        obuf[:batch] = pack(out, d["odt"][0])
