"""Quantized weight formats: the block layouts, quantize / dequantize in NumPy, and the
``QuantizedTensor`` that holds a quantized weight in ``graph.weights``.

Each format is the plain struct llama.cpp (``ggml-common.h``) documents, stored as a few NumPy
arrays over the weight's leading dims ``[..., N, K]`` (``N`` output rows, ``K`` inputs; experts
add a leading ``E``). ``K`` is split into blocks along the row; a row whose ``K`` is not a
multiple of the block is padded with zeros in storage (the logical shape keeps ``K``).

==========  =====  ============================================  ==============================
format      block  stored                                        value
==========  =====  ============================================  ==============================
``q8_0``    32     ``d`` f16 ``[.., N, nb]``, ``qs`` i8 ``[.., N, nb, 32]``       ``d * q``
``q4_0``    32     ``d`` f16, ``qs`` u8 ``[.., N, nb, 16]`` (two 4-bit q)     ``d * (q - 8)``
``i8c``     row    ``scale`` f32 ``[.., N]``, ``q`` i8 ``[.., N, K]``          ``scale[n] * q``
``int4``    32     ``d`` f16, ``m`` f16, ``qs`` u8 ``[.., N, nb, G/2]``       ``d * q + m``
``int4g64`` 64     as ``int4``                                                 ``d * q + m``
``int4g128`` 128   as ``int4``                                                 ``d * q + m``
==========  =====  ============================================  ==============================

4-bit values are packed as llama.cpp does: byte ``j`` of a block holds element ``j`` in its low
nibble and element ``j + block/2`` in its high nibble.

Quantization: the scale is rounded to its stored precision *first* — upwards, and an int4
minimum downwards, so the block's extremes stay in range — and ``q`` is computed from the
rounded values, so every element is within half a step (its block's stored scale) of its value,
a bound the tests check; the one exception is q4_0's asymmetric range, below.

- ``q8_0``: ``d = max|x| / 127``; ``q = round(x / d)``.
- ``q4_0``: ``d = x_m / -8`` where ``x_m`` is the element of largest magnitude (its sign
  kept, as llama.cpp: the extreme maps to ``q = 0`` and the range is ``[-8, 7] * d``);
  ``q = clip(round(x / d) + 8, 0, 15)``. Elements more than 7.5 steps on the other side of
  zero are clipped to 7: their error is at most one step.
- ``i8c`` (mode ``int8``): per output row, ``scale = max|x| / 127`` in f32; ``q = round(x / scale)``.
- ``int4`` (group ``G``): per group ``m = min(x)``, ``d = (max(x) - min(x)) / 15``;
  ``q = clip(round((x - m) / d), 0, 15)``.

A block of zeros stores ``d = 0`` and dequantizes to exact zeros. Non-finite weights are
refused (``QuantizationError`` naming the tensor and the first bad element), as are weights
whose f16 scale would overflow (``|x| > 65504 * 127`` for q8_0).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SparsecError
from ..ir.types import QUANT_FORMATS, QuantFormat, register_quant_format

__all__ = ["QuantizationError", "QuantizedTensor", "quantize", "dequantize", "FORMATS", "format_for_mode",
           "MODES", "block_size"]

F16_MAX = float(np.finfo(np.float16).max)

for _g in (64, 128):  # the int4 group sizes beside the default 32 (registered once, here)
    if f"int4g{_g}" not in QUANT_FORMATS:
        register_quant_format(QuantFormat(f"int4g{_g}", _g, 4, f"group-wise asymmetric 4-bit, group {_g}: "
                                                               f"x = s*q + m"))

#: the formats this module implements (all the IR's quantized types)
FORMATS = ("q8_0", "q4_0", "i8c", "int4", "int4g64", "int4g128")
#: user-facing modes (sc.compile(quantize=...), quantize{mode=...}) -> format
MODES = {"int8": "i8c", "q8_0": "q8_0", "q4_0": "q4_0", "int4": "int4"}


class QuantizationError(SparsecError):
    """A weight that cannot be quantized (non-finite values, scale overflow, wrong rank)."""


def format_for_mode(mode: str, group: int = 32) -> str:
    """``"int4", group=128`` -> ``"int4g128"``; ``"int8"`` -> ``"i8c"``."""
    if mode not in MODES:
        raise ValueError(f"unknown quantization mode {mode!r}; expected one of {', '.join(MODES)}")
    if mode == "int4":
        if group not in (32, 64, 128):
            raise ValueError(f"int4 group must be 32, 64 or 128, got {group}")
        return "int4" if group == 32 else f"int4g{group}"
    return MODES[mode]


def block_size(fmt: str) -> int:
    """Elements per block along K (0: one scale per row)."""
    return QUANT_FORMATS[fmt].block


@dataclass(eq=False)
class QuantizedTensor:
    """A quantized weight of logical shape ``shape`` (``[..., N, K]``) in format ``fmt``.

    ``parts`` are the stored arrays (see the module docstring); ``layout`` names their
    arrangement: ``"blocks"`` is the canonical one above, kernels may repack into another
    (recorded here, so an artifact stores and reloads the repacked form). ``np.asarray(qt)``
    dequantizes to f32 (the reference interpreter's view of the weight).
    """

    fmt: str
    shape: tuple[int, ...]
    parts: dict[str, np.ndarray]
    layout: str = "blocks"

    def __post_init__(self):
        self.shape = tuple(int(d) for d in self.shape)

    def __array__(self, dtype=None, copy=None):
        a = dequantize(self)
        return a if dtype is None else a.astype(dtype)

    @property
    def nbytes(self) -> int:
        return int(sum(p.nbytes for p in self.parts.values()))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"QuantizedTensor({self.fmt}, {'x'.join(map(str, self.shape))}, {self.nbytes} bytes, {self.layout})"

    # -- storage as plain tensors (safetensors) ------------------------------------------------
    def to_tensors(self, name: str) -> dict[str, np.ndarray]:
        """``{name + "::" + part: array}``; the format, shape and layout go in metadata."""
        return {f"{name}::{k}": np.ascontiguousarray(v) for k, v in self.parts.items()}

    def metadata(self) -> str:
        return f"{self.fmt};{'x'.join(map(str, self.shape))};{self.layout}"

    @classmethod
    def from_tensors(cls, meta: str, parts: dict[str, np.ndarray]) -> "QuantizedTensor":
        try:
            fmt, shape, layout = meta.split(";")
            dims = tuple(int(d) for d in shape.split("x"))
        except ValueError:
            raise QuantizationError(f"malformed quantized-weight metadata {meta!r} (expected 'format;NxK;layout')") \
                from None
        if fmt not in FORMATS:
            raise QuantizationError(f"unknown quantized format {fmt!r} in metadata; known: {', '.join(FORMATS)}")
        qt = cls(fmt, dims, dict(parts), layout)
        qt.check()
        return qt

    def check(self) -> None:
        """Raise QuantizationError unless the parts have the shapes and dtypes the format needs."""
        want = _part_specs(self.fmt, self.shape)
        if self.layout != "blocks":
            return  # repacked layouts are checked by the kernels that own them
        if set(want) != set(self.parts):
            raise QuantizationError(f"{self.fmt} weight needs parts {sorted(want)}, got {sorted(self.parts)}")
        for k, (shape, dtype) in want.items():
            p = self.parts[k]
            if p.shape != shape or p.dtype != dtype:
                raise QuantizationError(f"{self.fmt} part {k!r}: expected {dtype.name}{list(shape)}, "
                                        f"got {p.dtype.name}{list(p.shape)}")


def _blocks(fmt: str, k: int) -> tuple[int, int]:
    b = block_size(fmt)
    return b, -(-k // b)


def _part_specs(fmt: str, shape: tuple[int, ...]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    lead, k = tuple(shape[:-1]), shape[-1]
    if fmt == "i8c":
        return {"scale": (lead, np.dtype(np.float32)), "q": (lead + (k,), np.dtype(np.int8))}
    b, nb = _blocks(fmt, k)
    f16, u8 = np.dtype(np.float16), np.dtype(np.uint8)
    if fmt == "q8_0":
        return {"d": (lead + (nb,), f16), "qs": (lead + (nb, b), np.dtype(np.int8))}
    if fmt == "q4_0":
        return {"d": (lead + (nb,), f16), "qs": (lead + (nb, b // 2), u8)}
    return {"d": (lead + (nb,), f16), "m": (lead + (nb,), f16), "qs": (lead + (nb, b // 2), u8)}


# ---------------------------------------------------------------------------------------------
# quantize

def _check_finite(x: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise QuantizationError(f"weight {name!r} has a non-finite value {x[idx]} at {list(idx)}: "
                                f"cannot quantize it (fix the checkpoint or skip this tensor)")


def _padded_blocks(x: np.ndarray, b: int) -> np.ndarray:
    """``[..., K]`` -> ``[..., nb, b]`` with zeros after K."""
    k = x.shape[-1]
    nb = -(-k // b)
    if nb * b != k:
        pad = np.zeros(x.shape[:-1] + (nb * b - k,), x.dtype)
        x = np.concatenate([x, pad], axis=-1)
    return x.reshape(x.shape[:-1] + (nb, b))


def _f16(v: np.ndarray, name: str, what: str, direction: float) -> np.ndarray:
    """``v`` (f32, >= 0 for scales) as float16 rounded towards ``direction`` (+inf: up, -inf: down)
    so that the block's extreme stays inside the format's range (no clipping)."""
    if np.any(np.abs(v) > F16_MAX):
        idx = tuple(int(i) for i in np.argwhere(np.abs(v) > F16_MAX)[0])
        raise QuantizationError(f"weight {name!r}: {what} {float(v[idx]):.3g} at block {list(idx)} overflows "
                                f"float16 (values too large for this format; use int8 or skip this tensor)")
    h = v.astype(np.float16)
    wrong = h.astype(np.float32) < v if direction > 0 else h.astype(np.float32) > v
    return np.where(wrong, np.nextafter(h, np.float16(direction)), h)


def _safe_div(x: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``x / d`` with 0 where ``d == 0`` (an all-zero block)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = x / d
    return np.where(d == 0, 0.0, r)


def _pack4(q: np.ndarray) -> np.ndarray:
    h = q.shape[-1] // 2
    return (q[..., :h] | (q[..., h:] << 4)).astype(np.uint8)


def _unpack4(qs: np.ndarray) -> np.ndarray:
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1)


def quantize(w: np.ndarray, fmt: str, name: str = "weight") -> QuantizedTensor:
    """Quantize ``w`` ``[..., N, K]`` (any float dtype) into ``fmt`` (see the module docstring)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown quantized format {fmt!r}; expected one of {', '.join(FORMATS)}")
    w = np.asarray(w)
    if w.ndim < 2:
        raise QuantizationError(f"weight {name!r} has shape {list(w.shape)}: quantized weights are [..., out, in]")
    if w.dtype.kind != "f" and w.dtype.name != "bfloat16":
        raise QuantizationError(f"weight {name!r} has dtype {w.dtype}: only float weights are quantized")
    x = w.astype(np.float32)
    _check_finite(x, name)
    if fmt == "i8c":
        amax = np.abs(x).max(axis=-1)
        scale = (amax / 127.0).astype(np.float32)
        q = np.clip(np.rint(_safe_div(x, scale[..., None])), -127, 127).astype(np.int8)
        return QuantizedTensor(fmt, w.shape, {"scale": scale, "q": q})
    b = block_size(fmt)
    blocks = _padded_blocks(x, b)                                   # [..., N, nb, b]
    if fmt == "q8_0":
        d = _f16(np.abs(blocks).max(axis=-1) / np.float32(127.0), name, "scale", np.inf)
        d32 = d.astype(np.float32)[..., None]
        q = np.clip(np.rint(_safe_div(blocks, d32)), -127, 127).astype(np.int8)
        return QuantizedTensor(fmt, w.shape, {"d": d, "qs": q})
    if fmt == "q4_0":
        i = np.abs(blocks).argmax(axis=-1)[..., None]
        extreme = np.take_along_axis(blocks, i, axis=-1)[..., 0]    # signed value of largest magnitude
        d = _f16(np.abs(extreme) / np.float32(8.0), name, "scale", np.inf) * np.sign(-extreme).astype(np.float16)
        d32 = d.astype(np.float32)[..., None]
        q = np.clip(np.rint(_safe_div(blocks, d32)) + 8, 0, 15).astype(np.uint8)
        return QuantizedTensor(fmt, w.shape, {"d": d, "qs": _pack4(q)})
    lo, hi = blocks.min(axis=-1), blocks.max(axis=-1)               # int4 group-wise asymmetric
    m = _f16(lo, name, "minimum", -np.inf)
    d = _f16((hi - m.astype(np.float32)) / np.float32(15.0), name, "scale", np.inf)
    d32, m32 = d.astype(np.float32)[..., None], m.astype(np.float32)[..., None]
    q = np.clip(np.rint(_safe_div(blocks - m32, d32)), 0, 15).astype(np.uint8)
    return QuantizedTensor(fmt, w.shape, {"d": d, "m": m, "qs": _pack4(q)})


def dequantize(qt: QuantizedTensor) -> np.ndarray:
    """The f32 values ``qt`` stands for, shape ``qt.shape`` (canonical ``"blocks"`` layout)."""
    if qt.layout != "blocks":
        from . import layouts
        qt = layouts.to_blocks(qt)
    p, k = qt.parts, qt.shape[-1]
    if qt.fmt == "i8c":
        return (p["scale"][..., None] * p["q"].astype(np.float32)).astype(np.float32)
    if qt.fmt == "q8_0":
        x = p["d"].astype(np.float32)[..., None] * p["qs"].astype(np.float32)
    elif qt.fmt == "q4_0":
        x = p["d"].astype(np.float32)[..., None] * (_unpack4(p["qs"]).astype(np.float32) - 8.0)
    else:
        x = p["d"].astype(np.float32)[..., None] * _unpack4(p["qs"]).astype(np.float32) \
            + p["m"].astype(np.float32)[..., None]
    x = x.reshape(x.shape[:-2] + (-1,))[..., :k]
    return np.ascontiguousarray(x, dtype=np.float32)


def step_size(qt: QuantizedTensor) -> np.ndarray:
    """The quantization step per element (``[..., N, K]``): the scale of its block or row."""
    p, k = qt.parts, qt.shape[-1]
    if qt.fmt == "i8c":
        return np.broadcast_to(p["scale"][..., None], qt.shape).astype(np.float32)
    b = block_size(qt.fmt)
    d = np.abs(p["d"].astype(np.float32))
    return np.repeat(d, b, axis=-1)[..., :k]
