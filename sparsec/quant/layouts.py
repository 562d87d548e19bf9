"""Kernel layouts of quantized weights: repacking from the canonical ``"blocks"`` layout into
the arrangement a kernel reads fastest, and back.

A layout is registered per format with ``register_layout(fmt, name, pack, unpack)``: ``pack``
takes the canonical parts and returns the repacked parts, ``unpack`` inverts it exactly (tests
check the round trip). The quantize pass repacks at compile time; artifacts store the
repacked parts with the layout name, so loading needs no repacking.
"""
from __future__ import annotations

from typing import Callable

from .formats import QuantizationError, QuantizedTensor

_LAYOUTS: dict[tuple[str, str], tuple[Callable, Callable]] = {}
#: per format, the layout the CPU kernels read fastest on this host (set by the kernels' module)
_PREFERRED: dict[str, str] = {}


def set_preferred_layout(fmt: str, name: str) -> None:
    if name != "blocks" and (fmt, name) not in _LAYOUTS:
        raise ValueError(f"layout {name!r} for {fmt} is not registered")
    _PREFERRED[fmt] = name


def preferred_layout(fmt: str) -> str:
    """The layout the quantize pass repacks ``fmt`` weights into (``"blocks"`` unless a kernel
    module registered a faster one)."""
    return _PREFERRED.get(fmt, "blocks")


def register_layout(fmt: str, name: str, pack: Callable[[dict, tuple], dict],
                    unpack: Callable[[dict, tuple], dict]) -> None:
    _LAYOUTS[(fmt, name)] = (pack, unpack)


def layouts_for(fmt: str) -> list[str]:
    return ["blocks"] + sorted(n for f, n in _LAYOUTS if f == fmt)


def repack(qt: QuantizedTensor, layout: str) -> QuantizedTensor:
    """``qt`` in ``layout`` (from any layout)."""
    if qt.layout == layout:
        return qt
    canon = to_blocks(qt)
    if layout == "blocks":
        return canon
    if (qt.fmt, layout) not in _LAYOUTS:
        raise QuantizationError(f"no layout {layout!r} for {qt.fmt}; known: {', '.join(layouts_for(qt.fmt))}")
    pack, _ = _LAYOUTS[(qt.fmt, layout)]
    return QuantizedTensor(qt.fmt, qt.shape, pack(canon.parts, qt.shape), layout)


def to_blocks(qt: QuantizedTensor) -> QuantizedTensor:
    """``qt`` in the canonical layout."""
    if qt.layout == "blocks":
        return qt
    if (qt.fmt, qt.layout) not in _LAYOUTS:
        raise QuantizationError(f"unknown layout {qt.layout!r} for {qt.fmt}; known: {', '.join(layouts_for(qt.fmt))}")
    _, unpack = _LAYOUTS[(qt.fmt, qt.layout)]
    out = QuantizedTensor(qt.fmt, qt.shape, unpack(qt.parts, qt.shape), "blocks")
    out.check()
    return out


# the CPU kernels' layout ("r16", sparsec/quant/repack.py) registers itself on import and is
# preferred for every format
from . import repack as _repack  # noqa: E402

CPU_LAYOUT = _repack.LAYOUT
