"""``sc.nn.Module``: parameters and submodules with hierarchical, Hugging Face-style names."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from ..errors import SparsecError
from ..frontend.tracer import Parameter, Tensor, TensorSpec, _current, trace


class Module:
    """Base class of traceable models. Attributes that are ``Parameter`` or ``Module`` are
    registered in order, so ``named_parameters()`` yields ``layers.0.self_attn.q_proj.weight``.

    Called on ``sc.Tensor`` values (inside ``sc.trace``) it records ops; called on NumPy arrays
    it traces itself for those shapes and runs the reference interpreter (eager mode).
    """

    def __init__(self):
        object.__setattr__(self, "_params", {})
        object.__setattr__(self, "_modules", {})

    def __setattr__(self, name, value):
        if "_params" not in self.__dict__:
            raise SparsecError(f"{type(self).__name__}.__init__ must call super().__init__() "
                               f"before setting {name!r}")
        self._params.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._params[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    # -- structure ---------------------------------------------------------------------------
    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        seen: set[int] = set()
        for name, p in self._named_parameters(prefix):
            if id(p) not in seen:  # tied weights appear once, under their first name
                seen.add(id(p))
                yield name, p

    def _named_parameters(self, prefix):
        for n, p in self._params.items():
            yield prefix + n, p
        for n, m in self._modules.items():
            yield from m._named_parameters(prefix + n + ".")

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix.rstrip("."), self
        for n, m in self._modules.items():
            yield from m.named_modules(prefix + n + ".")

    def state_dict(self) -> dict[str, np.ndarray]:
        """``{name: numpy array}`` with the same names ``sc.param`` ops use."""
        return {n: p.data for n, p in self.named_parameters()}

    def to(self, dtype) -> "Module":
        """Cast every floating-point parameter to ``dtype`` (``"bfloat16"``, ``"f16"``, ... as
        ``sc.TensorSpec`` takes), in place, rounding to nearest even; returns the module. Trace it
        with inputs of that dtype to get a model that computes in it (as ``torch``'s
        ``module.to(torch.bfloat16)``): each op rounds its result to the dtype, as the
        interpreter's references do."""
        from ..ir.dtypes import as_dtype
        try:
            dt = as_dtype(dtype)
        except (TypeError, ValueError, KeyError) as e:
            raise SparsecError(f"Module.to({dtype!r}): not a dtype ({e})") from None
        if not dt.is_float:
            raise SparsecError(f"Module.to({dtype!r}): expected a floating-point dtype, got {dt.name}")
        for _, p in self.named_parameters():
            if as_dtype(p.data.dtype).is_float:
                p.data = np.asarray(p.data).astype(dt.np)
        return self

    def load_state_dict(self, d: dict, strict: bool = True) -> "Module":
        """Copy arrays into the parameters; names, shapes and dtypes must match (errors name the tensor)."""
        own = dict(self.named_parameters())
        missing = sorted(set(own) - set(d))
        unexpected = sorted(set(d) - set(own))
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
            if unexpected:
                parts.append(f"unexpected: {', '.join(unexpected[:8])}{' ...' if len(unexpected) > 8 else ''}")
            raise SparsecError(f"load_state_dict: {'; '.join(parts)}")
        for n, p in own.items():
            if n not in d:
                continue
            a = np.asarray(d[n])
            if a.shape != p.data.shape:
                raise SparsecError(f"load_state_dict: tensor {n!r} has shape {a.shape}, expected {p.data.shape}")
            p.data = a.astype(p.data.dtype, copy=False)
        return self

    # -- calling -----------------------------------------------------------------------------
    def forward(self, *args):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        if _current.get() is not None or any(isinstance(a, Tensor) for a in args):
            return self.forward(*args, **kwargs)
        if kwargs:
            raise SparsecError("eager calls take positional NumPy arrays only")
        from ..interpreter import interpret
        arrays = [np.asarray(a) for a in args]
        g = trace(self, *[TensorSpec(a.shape, a.dtype) for a in arrays])
        out = interpret(g, *arrays)
        return out[0] if len(out) == 1 else out

    def __repr__(self) -> str:
        n = sum(p.data.size for p in self.parameters())
        return f"{type(self).__name__}({n} parameters)"


class ModuleList(Module):
    """Submodules named ``0, 1, ...`` (``layers.0.mlp``), like torch's ModuleList."""

    def __init__(self, modules=()):
        super().__init__()
        self._items: list[Module] = []
        for m in modules:
            self.append(m)

    def append(self, m: Module) -> None:
        setattr(self, str(len(self._items)), m)
        self._items.append(m)

    def __getitem__(self, i: int) -> Module:
        return self._items[i]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        return iter(self._items)
