"""The ``"r16"`` layout: quantized weights arranged for the CPU kernels (``sparsec.runtime.cpu.quant``).

Output rows are interleaved in groups of 16 (``N`` padded to a multiple of 16 with zero rows), so
one 64-byte vector holds 4 consecutive inputs of 16 rows: one ``vpdpbusd`` multiplies them by a
broadcast of 4 activation bytes and accumulates 16 row sums (one per int32 lane). A group's data is
one contiguous stream, a kernel's output per group is 16 contiguous floats, and no horizontal
sums are needed. ``K`` is padded to whole blocks (of 32; of ``G`` for int4 groups ``G``) with zeros.

Parts (``ng = ceil(N / 16)``, ``nsub = K_padded / 32`` sub-blocks of 32 inputs, ``nb`` blocks of the format):

=========================  ==========================================================================
``qs`` u8 8-bit formats    ``[..., ng, nsub * 512]``: per sub-block, 8 steps x 16 rows x 4 bytes;
(``q8_0``, ``i8c``)        byte ``t`` of (step ``s``, row ``r``) is input ``4s + t`` of the sub-block,
                           stored as ``q ^ 0x80`` (``q + 128`` as an unsigned byte)
``qs`` u8 4-bit formats    ``[..., ng, nsub * 256]``: per sub-block, 4 steps x 16 rows x 4 bytes; the low
(``q4_0``, ``int4*``)      nibble of byte ``t`` of (step ``s``, row ``r``) is input ``4s + t``, the high
                           nibble input ``16 + 4s + t`` (q in 0..15, as stored canonically)
``d`` f16                  ``[..., ng, nb, 16]`` (``m`` too for int4): block ``b`` of the 16 rows
``scale`` f32 (``i8c``)    ``[..., ng * 16]``
=========================  ==========================================================================

``pack`` / ``unpack`` are exact inverses (the padding is dropped again).

The ``"r16i"`` layout (the kernels' and the quantize pass's choice for the formats with block
scales: ``q8_0``, ``q4_0``, ``int4*``) is ``r16`` with each block's scales stored right after its
quantized values, so a row group is one stream of bytes instead of two or three:

=========================  ==========================================================================
``data`` u8                ``[..., ng, nb * stride]``: per block of the 16 rows, its ``qs`` bytes as
                           in r16 (``S`` sub-blocks of 512 or 256 bytes), then its 16 ``d`` (f16,
                           little-endian), then, for int4 formats, its 16 ``m``:
                           ``stride = S * 512`` (or ``S * 256``) ``+ 32`` (``+ 64`` with ``m``)
=========================  ==========================================================================

Why: at one token the kernels stream a weight once, and every stream start costs (the hardware
prefetchers retrain): same process, 1 token through 2 of 32 experts of 2816 x 1024 q4_0, 2
threads, in the machine's 74 GB/s state: the gated product 133.0 -> 114.7 us and the down
projection 67.9 -> 59.1 us with the scales inline (a parallel sum over the same bytes: 110.9 and
53.3 us). ``i8c`` (one scale per row) stays ``r16``.
"""
from __future__ import annotations

import numpy as np

from .formats import QUANT_FORMATS, _unpack4
from .layouts import register_layout, set_preferred_layout

LAYOUT = "r16"
#: r16 with the block scales inline (formats with block scales)
LAYOUT_INLINE = "r16i"
ROWS = 16
SUB = 32

__all__ = ["LAYOUT", "LAYOUT_INLINE", "ROWS", "SUB", "block_stride", "group_size", "geometry", "kernel_layout"]


def kernel_layout(fmt: str) -> str:
    """The layout the CPU kernels read ``fmt`` weights in: ``r16i``, or ``r16`` for ``i8c``."""
    return LAYOUT if fmt == "i8c" else LAYOUT_INLINE


def block_stride(fmt: str) -> int:
    """Bytes per block of 16 rows in ``kernel_layout(fmt)``."""
    g = group_size(fmt)
    sub = 512 if fmt in ("q8_0", "i8c") else 256
    if fmt == "i8c":
        return sub
    return (g // SUB) * sub + 32 * (2 if fmt.startswith("int4") else 1)


def group_size(fmt: str) -> int:
    """Inputs per stored scale: the format's block (32 for i8c's sub-blocks of the row scale)."""
    return QUANT_FORMATS[fmt].block or SUB


def geometry(fmt: str, shape: tuple) -> tuple[int, int, int, int]:
    """``(ng, nsub, nb, G)``: row groups, sub-blocks of 32, blocks of ``G`` per row."""
    n, k = shape[-2], shape[-1]
    g = group_size(fmt)
    nb = -(-k // g)
    return -(-n // ROWS), nb * g // SUB, nb, g


def _pad_rows(a: np.ndarray, n16: int, axis: int, value=0) -> np.ndarray:
    n = a.shape[axis]
    if n == n16:
        return a
    pad = [(0, 0)] * a.ndim
    pad[axis] = (0, n16 - n)
    return np.pad(a, pad, constant_values=value)


def _scales_pack(d: np.ndarray, lead: tuple, ng: int) -> np.ndarray:
    """``[..., N, nb]`` -> ``[..., ng, nb, 16]``."""
    nb = d.shape[-1]
    d = _pad_rows(d, ng * ROWS, -2)
    d = d.reshape(lead + (ng, ROWS, nb))
    return np.ascontiguousarray(np.swapaxes(d, -1, -2))


def _scales_unpack(d: np.ndarray, lead: tuple, n: int) -> np.ndarray:
    ng, nb = d.shape[-3], d.shape[-2]
    d = np.swapaxes(d, -1, -2).reshape(lead + (ng * ROWS, nb))
    return np.ascontiguousarray(d[..., :n, :])


def _q8_pack(q: np.ndarray, lead: tuple, ng: int, nsub: int) -> np.ndarray:
    """int8 ``[..., N, nsub*32]`` -> u8 ``[..., ng, nsub*512]``."""
    u = (_pad_rows(q, ng * ROWS, -2).view(np.uint8) ^ np.uint8(0x80))
    u = u.reshape(lead + (ng, ROWS, nsub, 8, 4))
    u = np.moveaxis(u, -4, -2)                       # [.., ng, nsub, 8, 16, 4]
    return np.ascontiguousarray(u).reshape(lead + (ng, nsub * 512))


def _q8_unpack(u: np.ndarray, lead: tuple, n: int, nsub: int) -> np.ndarray:
    ng = u.shape[-2]
    u = u.reshape(lead + (ng, nsub, 8, ROWS, 4))
    u = np.moveaxis(u, -2, -4)                        # [.., ng, 16, nsub, 8, 4]
    q = (np.ascontiguousarray(u) ^ np.uint8(0x80)).view(np.int8).reshape(lead + (ng * ROWS, nsub * SUB))
    return np.ascontiguousarray(q[..., :n, :])


def _q4_pack(q: np.ndarray, lead: tuple, ng: int, nsub: int) -> np.ndarray:
    """q (0..15) ``[..., N, nsub*32]`` -> u8 ``[..., ng, nsub*256]``."""
    q = _pad_rows(q, ng * ROWS, -2).reshape(lead + (ng * ROWS, nsub, SUB))
    b = (q[..., :16] | (q[..., 16:] << 4)).astype(np.uint8)       # [.., N16, nsub, 16]
    b = b.reshape(lead + (ng, ROWS, nsub, 4, 4))
    b = np.moveaxis(b, -4, -2)                        # [.., ng, nsub, 4, 16, 4]
    return np.ascontiguousarray(b).reshape(lead + (ng, nsub * 256))


def _q4_unpack(u: np.ndarray, lead: tuple, n: int, nsub: int) -> np.ndarray:
    ng = u.shape[-2]
    b = np.moveaxis(u.reshape(lead + (ng, nsub, 4, ROWS, 4)), -2, -4)   # [.., ng, 16, nsub, 4, 4]
    b = np.ascontiguousarray(b).reshape(lead + (ng * ROWS, nsub, 16))
    q = np.concatenate([b & 0x0F, b >> 4], axis=-1).reshape(lead + (ng * ROWS, nsub * SUB))
    return np.ascontiguousarray(q[..., :n, :])


def _canon4_to_q(qs: np.ndarray, lead: tuple, n: int, nb: int, g: int) -> np.ndarray:
    """canonical packed ``[..., N, nb, G/2]`` -> q ``[..., N, nb*G]`` (0..15)."""
    return _unpack4(qs).reshape(lead + (n, nb * g))


def _q_to_canon4(q: np.ndarray, lead: tuple, n: int, nb: int, g: int) -> np.ndarray:
    q = q.reshape(lead + (n, nb, g))
    return (q[..., :g // 2] | (q[..., g // 2:] << 4)).astype(np.uint8)


def _make(fmt: str):
    def pack(parts: dict, shape: tuple) -> dict:
        lead, n, k = tuple(shape[:-2]), shape[-2], shape[-1]
        ng, nsub, nb, g = geometry(fmt, shape)
        if fmt == "i8c":
            q = parts["q"]
            if q.shape[-1] != nsub * SUB:
                q = np.concatenate([q, np.zeros(q.shape[:-1] + (nsub * SUB - k,), np.int8)], axis=-1)
            return {"qs": _q8_pack(q, lead, ng, nsub),
                    "scale": np.ascontiguousarray(_pad_rows(parts["scale"], ng * ROWS, -1))}
        if fmt == "q8_0":
            return {"qs": _q8_pack(parts["qs"].reshape(lead + (n, nsub * SUB)), lead, ng, nsub),
                    "d": _scales_pack(parts["d"], lead, ng)}
        out = {"qs": _q4_pack(_canon4_to_q(parts["qs"], lead, n, nb, g), lead, ng, nsub),
               "d": _scales_pack(parts["d"], lead, ng)}
        if "m" in parts:
            out["m"] = _scales_pack(parts["m"], lead, ng)
        return out

    def unpack(parts: dict, shape: tuple) -> dict:
        lead, n, k = tuple(shape[:-2]), shape[-2], shape[-1]
        ng, nsub, nb, g = geometry(fmt, shape)
        if fmt == "i8c":
            q = _q8_unpack(parts["qs"], lead, n, nsub)
            return {"q": np.ascontiguousarray(q[..., :k]), "scale": np.ascontiguousarray(parts["scale"][..., :n])}
        if fmt == "q8_0":
            q = _q8_unpack(parts["qs"], lead, n, nsub)
            return {"qs": q.reshape(lead + (n, nb, SUB)), "d": _scales_unpack(parts["d"], lead, n)}
        q = _q4_unpack(parts["qs"], lead, n, nsub)
        out = {"qs": _q_to_canon4(q, lead, n, nb, g), "d": _scales_unpack(parts["d"], lead, n)}
        if "m" in parts:
            out["m"] = _scales_unpack(parts["m"], lead, n)
        return out

    return pack, unpack


def _make_inline(fmt: str):
    """``r16i``: r16's parts, each block's scales moved inline after its quantized values."""
    pack16, unpack16 = _make(fmt)
    has_m = fmt.startswith("int4")

    def pack(parts: dict, shape: tuple) -> dict:
        lead = tuple(shape[:-2])
        ng, nsub, nb, _ = geometry(fmt, shape)
        r = pack16(parts, shape)
        pieces = [r["qs"].reshape(lead + (ng, nb, -1)), r["d"].view(np.uint8).reshape(lead + (ng, nb, 32))]
        if has_m:
            pieces.append(r["m"].view(np.uint8).reshape(lead + (ng, nb, 32)))
        return {"data": np.ascontiguousarray(np.concatenate(pieces, axis=-1)).reshape(lead + (ng, nb * block_stride(fmt)))}

    def unpack(parts: dict, shape: tuple) -> dict:
        lead = tuple(shape[:-2])
        ng, nsub, nb, _ = geometry(fmt, shape)
        data = parts["data"].reshape(lead + (ng, nb, block_stride(fmt)))
        q = block_stride(fmt) - 32 * (2 if has_m else 1)
        r = {"qs": np.ascontiguousarray(data[..., :q]).reshape(lead + (ng, nb * q)),
             "d": np.ascontiguousarray(data[..., q:q + 32]).view(np.float16).reshape(lead + (ng, nb, ROWS))}
        if has_m:
            r["m"] = np.ascontiguousarray(data[..., q + 32:]).view(np.float16).reshape(lead + (ng, nb, ROWS))
        return unpack16(r, shape)

    return pack, unpack


def check_kernel_layout(fmt: str, shape: tuple, parts: dict) -> None:
    """Raise ValueError unless ``parts`` have the shapes and dtypes of a ``fmt`` weight of
    ``shape`` in ``kernel_layout(fmt)``."""
    if kernel_layout(fmt) == LAYOUT:
        return check_r16(fmt, shape, parts)
    lead = tuple(shape[:-2])
    ng, nsub, nb, _ = geometry(fmt, shape)
    want = (lead + (ng, nb * block_stride(fmt)), np.uint8)
    if set(parts) != {"data"}:
        raise ValueError(f"{fmt} {LAYOUT_INLINE} weight needs parts ['data'], got {sorted(parts)}")
    p = parts["data"]
    if p.shape != want[0] or p.dtype != want[1]:
        raise ValueError(f"{fmt} {LAYOUT_INLINE} part 'data': expected uint8{list(want[0])}, "
                         f"got {p.dtype.name}{list(p.shape)}")


def check_r16(fmt: str, shape: tuple, parts: dict) -> None:
    """Raise ValueError unless ``parts`` have the r16 shapes and dtypes of a ``fmt`` weight of ``shape``."""
    lead = tuple(shape[:-2])
    ng, nsub, nb, _ = geometry(fmt, shape)
    want = {"qs": (lead + (ng, nsub * (512 if fmt in ("q8_0", "i8c") else 256)), np.uint8)}
    if fmt == "i8c":
        want["scale"] = (lead + (ng * ROWS,), np.float32)
    else:
        want["d"] = (lead + (ng, nb, ROWS), np.float16)
        if fmt.startswith("int4"):
            want["m"] = want["d"]
    if set(parts) != set(want):
        raise ValueError(f"{fmt} r16 weight needs parts {sorted(want)}, got {sorted(parts)}")
    for name, (s, dt) in want.items():
        p = parts[name]
        if p.shape != s or p.dtype != dt:
            raise ValueError(f"{fmt} r16 part {name!r}: expected {np.dtype(dt).name}{list(s)}, "
                             f"got {p.dtype.name}{list(p.shape)}")


for _fmt in ("q8_0", "q4_0", "i8c", "int4", "int4g64", "int4g128"):
    register_layout(_fmt, LAYOUT, *_make(_fmt))
    if _fmt != "i8c":
        register_layout(_fmt, LAYOUT_INLINE, *_make_inline(_fmt))
    set_preferred_layout(_fmt, kernel_layout(_fmt))
