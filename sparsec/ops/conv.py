"""Convolution: ``sc.conv2d`` (NCHW, weights ``[O, C/groups, kh, kw]``: the torch / ONNX layout).

Float math as the other ops: products accumulate in float32 (float64 for f64 operands) and
round once to the operand dtype, so f16/bf16 references match kernels that accumulate in f32.
The batch dim may be symbolic; channels, height and width must be static (the output size and
the kernel plan depend on them).
"""
from __future__ import annotations

import numpy as np

from ..frontend.tracer import as_tensor, emit
from ..ir import Int, Ints, TensorType, register
from ._util import tensor

__all__ = ["conv2d"]


def _fmt(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def conv_out_size(size: int, k: int, stride: int, pad_lo: int, pad_hi: int, dilation: int) -> int:
    """Output length along one spatial axis (``floor((size + pads - d*(k-1) - 1) / s) + 1``)."""
    return (size + pad_lo + pad_hi - dilation * (k - 1) - 1) // stride + 1


def _check_attrs(stride, padding, dilation, groups) -> None:
    if len(stride) != 2 or any(s < 1 for s in stride):
        raise ValueError(f"stride must be 2 positive ints (height, width), got {list(stride)}")
    if len(dilation) != 2 or any(d < 1 for d in dilation):
        raise ValueError(f"dilation must be 2 positive ints (height, width), got {list(dilation)}")
    if len(padding) != 4 or any(p < 0 for p in padding):
        raise ValueError(f"padding must be 4 non-negative ints (top, left, bottom, right), got {list(padding)}")
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")


@register
class Conv2d:
    """2-D cross-correlation (``torch.nn.functional.conv2d``, ONNX ``Conv``): ``x [N, C, H, W]``,
    ``w [O, C/groups, kh, kw]``, optional ``bias [O]`` -> ``[N, O, Ho, Wo]`` with
    ``Ho = (H + top + bottom - dilation[0]*(kh-1) - 1) // stride[0] + 1`` (``Wo`` alike).
    ``padding`` is (top, left, bottom, right) of zeros (ONNX ``pads`` order). Input channels are
    split into ``groups`` groups of ``C/groups``; output channel ``o`` reads group
    ``o // (O/groups)``. Float operands of one dtype; ``N`` may be symbolic, ``C``, ``H``, ``W``
    must be static."""
    name = "sc.conv2d"
    operands = ("x", "w", "bias?")
    attrs = {"stride": Ints((1, 1), doc="(height, width)"),
             "padding": Ints((0, 0, 0, 0), doc="(top, left, bottom, right) zeros"),
             "dilation": Ints((1, 1), doc="(height, width)"),
             "groups": Int(1)}
    traits = ("pure",)

    def infer(x, w, bias, *, stride, padding, dilation, groups):
        tensor(x, "x")
        tensor(w, "w")
        _check_attrs(stride, padding, dilation, groups)
        if not x.dtype.is_float:
            raise TypeError(f"sc.conv2d input must be a float tensor, got {x.dtype}")
        if w.dtype != x.dtype:
            raise TypeError(f"weight dtype {w.dtype} differs from input dtype {x.dtype} (insert sc.cast)")
        if x.rank != 4:
            raise ValueError(f"input must be [N, C, H, W] (rank 4), got {x.pretty()}")
        if w.rank != 4:
            raise ValueError(f"weight must be [O, C/groups, kh, kw] (rank 4), got {w.pretty()}")
        n, c, h, wd = x.shape
        o, cg, kh, kw = w.shape
        for d, what in ((c, "channels C"), (h, "height H"), (wd, "width W")):
            if not isinstance(d, int):
                raise ValueError(f"input {what} must be static, got symbolic {d!r} in {x.pretty()}")
        if not all(isinstance(d, int) for d in w.shape):
            raise ValueError(f"weight shape must be static, got {w.pretty()}")
        if c % groups:
            raise ValueError(f"groups={groups} does not divide the input channels C={c} of {x.pretty()}")
        if o % groups:
            raise ValueError(f"groups={groups} does not divide the output channels O={o} of weight {w.pretty()}")
        if cg * groups != c:
            raise ValueError(f"channel mismatch: input {x.pretty()} has C={c} channels, the weight "
                             f"{w.pretty()} expects C/groups={cg} x groups={groups} = {cg * groups}")
        if kh < 1 or kw < 1:
            raise ValueError(f"kernel size must be >= 1, got {kh}x{kw} in weight {w.pretty()}")
        ho = conv_out_size(h, kh, stride[0], padding[0], padding[2], dilation[0])
        wo = conv_out_size(wd, kw, stride[1], padding[1], padding[3], dilation[1])
        if ho < 1 or wo < 1:
            raise ValueError(f"kernel {kh}x{kw} (dilation {list(dilation)}: spans "
                             f"{dilation[0] * (kh - 1) + 1}x{dilation[1] * (kw - 1) + 1}) is larger than the padded "
                             f"input {h + padding[0] + padding[2]}x{wd + padding[1] + padding[3]} "
                             f"(input {h}x{wd}, padding {list(padding)})")
        if bias is not None:
            tensor(bias, "bias")
            if bias.dtype != x.dtype:
                raise TypeError(f"bias dtype {bias.dtype} differs from input dtype {x.dtype}")
            if tuple(bias.shape) != (o,):
                raise ValueError(f"bias must be [{o}] (one per output channel), got {bias.pretty()}")
        return TensorType((n, o, ho, wo), x.dtype)

    def reference(x, w, bias, *, stride, padding, dilation, groups):
        acc = np.float64 if x.dtype == np.float64 else np.float32
        n, c, h, wd = x.shape
        o, cg, kh, kw = w.shape
        sh, sw = stride
        dh, dw = dilation
        ho = conv_out_size(h, kh, sh, padding[0], padding[2], dh)
        wo = conv_out_size(wd, kw, sw, padding[1], padding[3], dw)
        xp = np.pad(x.astype(acc), ((0, 0), (0, 0), (padding[0], padding[2]), (padding[1], padding[3])))
        wf = np.asarray(w).astype(acc)
        og = o // groups
        out = np.zeros((n, o, ho, wo), acc)
        # one product per group and kernel tap: out[n, o, :, :] += w[o, c, i, j] * x[n, c, taps]
        for g in range(groups):
            xg = xp[:, g * cg:(g + 1) * cg]
            for i in range(kh):
                for j in range(kw):
                    taps = xg[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw]
                    out[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", taps, wf[g * og:(g + 1) * og, :, i, j])
        if bias is not None:
            out += bias.astype(acc)[None, :, None, None]
        return out.astype(x.dtype)


# ---------------------------------------------------------------------------------------------
# traced API

def _pair(v, what: str) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    v = tuple(int(a) for a in v)
    if len(v) != 2:
        raise ValueError(f"conv2d {what} must be an int or 2 ints (height, width), got {list(v)}")
    return v


def conv_padding(padding, kernel: tuple[int, int] = (1, 1), dilation: tuple[int, int] = (1, 1),
                 stride: tuple[int, int] = (1, 1)) -> tuple[int, int, int, int]:
    """``padding`` as the op's (top, left, bottom, right): an int (all four), a pair (height,
    width: both sides, as torch), 4 ints (top, left, bottom, right: ONNX ``pads``), ``"valid"``
    (none) or ``"same"`` (stride 1: output size = input size; an odd total puts the extra row or
    column at the bottom/right, as torch and ONNX ``SAME_UPPER``)."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding == "same":
            if tuple(stride) != (1, 1):
                raise ValueError(f"conv2d padding='same' needs stride 1, got stride {list(stride)}")
            th, tw = (d * (k - 1) for d, k in zip(dilation, kernel))
            return th // 2, tw // 2, th - th // 2, tw - tw // 2
        raise ValueError(f"conv2d padding must be an int, 2 or 4 ints, 'valid' or 'same', got {padding!r}")
    if isinstance(padding, (int, np.integer)):
        p = int(padding)
        return p, p, p, p
    p = tuple(int(a) for a in padding)
    if len(p) == 2:
        return p[0], p[1], p[0], p[1]
    if len(p) == 4:
        return p
    raise ValueError(f"conv2d padding must be an int, 2 ints (height, width) or 4 ints (top, left, bottom, "
                     f"right), got {list(p)}")


def conv2d(x, w, bias=None, stride=1, padding=0, dilation=1, groups: int = 1):
    """2-D convolution of ``x [N, C, H, W]`` with ``w [O, C/groups, kh, kw]`` (+ ``bias [O]``), as
    ``torch.nn.functional.conv2d``; ``stride``/``dilation`` an int or a pair; ``padding`` an int, a
    pair (height, width), 4 ints (top, left, bottom, right, ONNX ``pads``), ``"valid"`` or ``"same"``.
    An integer input is cast to the weight's float dtype."""
    x, w = as_tensor(x), as_tensor(w)
    if not x.dtype.is_float and w.dtype.is_float:
        from .core import cast
        x = cast(x, w.dtype)
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    kernel = tuple(w.shape[2:4]) if len(w.shape) == 4 else (1, 1)
    pads = conv_padding(padding, kernel, dilation, stride)
    return emit("sc.conv2d", x, w, None if bias is None else as_tensor(bias), stride=stride, padding=pads,
                dilation=dilation, groups=int(groups))
