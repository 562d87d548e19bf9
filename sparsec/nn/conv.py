"""``sc.nn.Conv2d``: a 2-D convolution layer with torch's parameter names and layout."""
from __future__ import annotations

from .. import ops
from ..frontend.tracer import Parameter
from ..ops.conv import _pair, conv_padding
from .layers import init_weight
from .module import Module


class Conv2d(Module):
    """``torch.nn.Conv2d``: ``weight`` ``[out_channels, in_channels / groups, kh, kw]`` and
    ``bias`` ``[out_channels]`` (when ``bias=True``), so Hugging Face checkpoints map directly
    (``patch_embedding.weight``). ``x [N, C, H, W] -> [N, O, Ho, Wo]``. ``kernel_size``,
    ``stride``, ``dilation``: an int or a pair; ``padding``: an int, a pair, 4 ints (top, left,
    bottom, right), ``"valid"`` or ``"same"``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, seed: int | None = None):
        super().__init__()
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: groups={groups} must divide in_channels={in_channels} and "
                             f"out_channels={out_channels}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.dilation = _pair(dilation, "dilation")
        self.padding = conv_padding(padding, self.kernel_size, self.dilation, self.stride)
        kh, kw = self.kernel_size
        fan_in = in_channels // groups * kh * kw
        self.weight = Parameter(init_weight((out_channels, in_channels // groups, kh, kw), fan_in, seed))
        self.bias = Parameter(init_weight((out_channels,), fan_in, None if seed is None else seed + 1)) \
            if bias else None

    def forward(self, x):
        return ops.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding,
                          dilation=self.dilation, groups=self.groups)
