"""Shared helpers of the per-family op tests: trace, round-trip, interpret, check result types."""
import sparsec as sc


def out_types(g):
    return [v.type for v in g.main.body.terminator.operands]


def trace_run(fn, *arrays, dims=None):
    specs = [sc.TensorSpec(d if d is not None else a.shape, a.dtype)
             for a, d in zip(arrays, dims or [None] * len(arrays))]
    g = sc.trace(fn, *specs)
    assert str(sc.parse(str(g))) == str(g)
    outs = sc.interpret(g, *arrays)
    bindings = {d: n for s, a in zip(specs, arrays) for d, n in zip(s.shape, a.shape) if isinstance(d, str)}
    for o, t in zip(outs, out_types(g)):
        assert o.shape == t.concrete(bindings), (o.shape, t.pretty())
        assert o.dtype == t.dtype.np
    return g, outs
