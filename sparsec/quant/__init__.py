"""Quantized weights: the block formats (``formats``), kernel layouts (``layouts``).

    qt = sc.quant.quantize(w, "q8_0", name="layers.0.mlp.down_proj.weight")
    w2 = np.asarray(qt)           # dequantized f32, what the reference interpreter computes with
"""
from . import layouts
from .formats import (FORMATS, MODES, QuantizationError, QuantizedTensor, block_size, dequantize, format_for_mode,
                      quantize, step_size)

__all__ = ["FORMATS", "MODES", "QuantizationError", "QuantizedTensor", "block_size", "dequantize", "format_for_mode",
           "layouts", "quantize", "step_size"]
