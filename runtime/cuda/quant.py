"""Weight loaders for the CUDA matmul kernels: one device function per weight *kind* (a float
tensor, or a quantized format of ``sparsec.quant`` in its canonical ``"blocks"`` layout) that
returns the value of element ``(row, k)``, and the dequantizing row gather of ``sc.embedding``.

The grouped matmul and GEMV kernels (``runtime.cuda.moe``) are written once against a loader
``wel(wa, wb, wc, row, k, K, nb)``; ``make_loader(kind, G)`` picks it when a kernel is built, so
a quantized matmul is the float kernel with the weight dequantized as it is read (into shared
memory for the tiled GEMM, into registers for the GEMV), then f32 FMAs.

Each loader reproduces ``sparsec.quant.dequantize`` bit for bit: ``d * q`` (q8_0), ``d * (q - 8)``
(q4_0), ``d * q + m`` (int4 groups; the product of an f16 scale and a 4-bit integer is exact in
f32, so a contracted FMA rounds as the reference's product-then-add), ``scale * q`` (i8c). The
parts of one weight ``[E?, N, K]`` travel as three flat device arrays ``(wa, wb, wc)``; ``row``
is ``e * N + n``, ``nb`` the blocks per row:

=========  ===================  ===================  ===================
kind       wa                   wb                   wc
=========  ===================  ===================  ===================
float      ``w`` (x's dtype)    dummy f16            dummy f16
q8_0       ``qs`` i8            ``d`` f16            dummy f16
q4_0       ``qs`` u8            ``d`` f16            dummy f16
int4*      ``qs`` u8            ``d`` f16            ``m`` f16
i8c        ``q`` i8             dummy f16            ``scale`` f32
=========  ===================  ===================  ===================

The decode GEMV reads q8_0 / q4_0 / int4 weights 32 bits per load instead (``q8_word``,
``q4_word``: the 4 or 8 weights of a word, dequantized with the same formulas; ``WORD_KINDS``),
when K is a whole number of blocks: a q8_0 word is 4 consecutive inputs of a block, a 4-bit
word 4 consecutive inputs in its low nibbles and the 4 inputs half a block later in its high ones.

A weight in another layout (the CPU kernels' ``"r16i"`` / ``"r16"``, the quantize pass's default) is brought
to ``"blocks"`` on the host when it is uploaded (``device.upload_weight``), once per model.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import cuda, float32

from .launch import kernel, report_error
from .types import arr

KIND_FLOAT, KIND_Q8, KIND_Q4, KIND_I4, KIND_I8C = 0, 1, 2, 3, 4
#: quantized format -> (kind, group size)
FORMAT_KINDS = {"q8_0": (KIND_Q8, 32), "q4_0": (KIND_Q4, 32), "i8c": (KIND_I8C, 0), "int4": (KIND_I4, 32),
                "int4g64": (KIND_I4, 64), "int4g128": (KIND_I4, 128)}

BAD_INDEX = 1


def kind_name(kind: int, G: int, dtype: str = "f") -> str:
    """A weight kind as kernel names show it: the float dtype, or the quantized format."""
    return {KIND_FLOAT: dtype, KIND_Q8: "q8_0", KIND_Q4: "q4_0", KIND_I8C: "i8c"}.get(
        kind, "int4" if G == 32 else f"int4g{G}")


@lru_cache(maxsize=None)
def make_loader(kind: int, G: int = 32, storage: str | None = None):
    """The device function ``wel(wa, wb, wc, row, k, K, nb)`` -> the weight element's value
    (``storage`` "f16"/"bf16": a 16-bit float weight, widened to f32)."""
    H = G // 2

    if kind == KIND_FLOAT and storage in ("f16", "bf16"):
        from .half import load
        ldw = load(storage)

        def wel(wa, wb, wc, row, k, K, nb):
            return ldw(wa[row * K + k])
    elif kind == KIND_FLOAT:
        def wel(wa, wb, wc, row, k, K, nb):
            return wa[row * K + k]
    elif kind == KIND_Q8:
        def wel(wa, wb, wc, row, k, K, nb):
            b = k // 32
            return float32(wb[row * nb + b]) * float32(wa[row * nb * 32 + k])
    elif kind == KIND_Q4:
        def wel(wa, wb, wc, row, k, K, nb):
            b = k // 32
            kk = k - 32 * b
            byte = wa[(row * nb + b) * 16 + (kk & 15)]
            q = (byte & 15) if kk < 16 else (byte >> 4)
            return float32(wb[row * nb + b]) * (float32(q) - float32(8.0))
    elif kind == KIND_I4:
        def wel(wa, wb, wc, row, k, K, nb):
            b = k // G
            kk = k - G * b
            byte = wa[(row * nb + b) * H + (kk % H)]
            q = (byte & 15) if kk < H else (byte >> 4)
            return float32(wb[row * nb + b]) * float32(q) + float32(wc[row * nb + b])
    elif kind == KIND_I8C:
        def wel(wa, wb, wc, row, k, K, nb):
            return wc[row] * float32(wa[row * K + k])
    else:
        raise ValueError(f"unknown weight kind {kind}")
    wel.__name__ = f"wel_{kind_name(kind, G)}" + (f"_{storage}" if storage else "")
    return cuda.jit(device=True)(wel)


# ---------------------------------------------------------------------------------------------
# 32-bit words of quantized weights (the GEMV's loads: 4 or 8 weights per load, coalesced)

#: kinds the word GEMV reads: kind -> weights per 32-bit word
WORD_KINDS = {KIND_Q8: 4, KIND_Q4: 8, KIND_I4: 8}


def words_per_block(kind: int, G: int) -> int:
    return 8 if kind == KIND_Q8 else G // 8


@cuda.jit(device=True)
def q8_word(wd, d):
    """The 4 weights of a q8_0 word (``qs`` bytes k..k+3 of a block, as int32), dequantized."""
    q0 = wd & 255
    q1 = (wd >> 8) & 255
    q2 = (wd >> 16) & 255
    q3 = (wd >> 24) & 255
    return (d * float32(q0 - ((q0 & 128) << 1)), d * float32(q1 - ((q1 & 128) << 1)),
            d * float32(q2 - ((q2 & 128) << 1)), d * float32(q3 - ((q3 & 128) << 1)))


@cuda.jit(device=True)
def q4_nibble(q, d, m, minimum):
    """One 4-bit weight: ``d * q + m`` (int4 groups) or ``d * (q - 8)`` (q4_0), as the reference."""
    if minimum:
        return d * float32(q) + m
    return d * (float32(q) - float32(8.0))


@cuda.jit(device=True)
def q4_word(wd, d, m, minimum):
    """The 8 weights of a 4-bit word: low nibbles (4 consecutive inputs), then the high ones
    (the same 4 inputs half a block later)."""
    return (q4_nibble(wd & 15, d, m, minimum), q4_nibble((wd >> 8) & 15, d, m, minimum),
            q4_nibble((wd >> 16) & 15, d, m, minimum), q4_nibble((wd >> 24) & 15, d, m, minimum),
            q4_nibble((wd >> 4) & 15, d, m, minimum), q4_nibble((wd >> 12) & 15, d, m, minimum),
            q4_nibble((wd >> 20) & 15, d, m, minimum), q4_nibble((wd >> 28) & 15, d, m, minimum))


def weight_types(kind: int, dtype=np.float32) -> tuple:
    """The numba types of ``(wa, wb, wc)`` for a weight of ``kind`` (``dtype``: a float weight's)."""
    f16 = arr(np.float16)
    if kind == KIND_FLOAT:
        return arr(dtype), f16, f16
    if kind == KIND_Q8:
        return arr(np.int8), f16, f16
    if kind in (KIND_Q4, KIND_I4):
        return arr(np.uint8), f16, f16
    return arr(np.int8), f16, arr(np.float32)


@lru_cache(maxsize=None)
def make_dequant_rows(kind: int, G: int) -> "kernel":
    """``out[i, k] = w[ids[i], k]`` dequantized (f32); an id outside ``[0, N)`` is reported
    (code ``BAD_INDEX``, the id) and its row skipped."""
    wel = make_loader(kind, G)

    def dequant_rows(wa, wb, wc, ids, N, K, nb, out, err):
        total = ids.size * K
        for e in range(cuda.grid(1), total, cuda.gridsize(1)):
            i = e // K
            k = e - i * K
            n = ids[i]
            if n < 0 or n >= N:
                if k == 0:
                    report_error(err, BAD_INDEX, n)
                continue
            out[e] = wel(wa, wb, wc, n, k, K, nb)

    dequant_rows.__name__ = f"dequant_rows_{kind_name(kind, G)}"
    return kernel(dequant_rows)


def dequant_rows_sig(kind: int, ids_dtype) -> tuple:
    from numba import types
    i64 = types.int64
    return weight_types(kind) + (arr(ids_dtype), i64, i64, i64, arr(np.float32), arr(np.int64))
