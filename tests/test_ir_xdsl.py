"""Everything sparsec prints is plain MLIR generic syntax that xDSL parses and verifies."""
import shutil
import subprocess

import pytest
from hypothesis import Phase, find, given, settings

import sparsec.testing as sct

xdsl = pytest.importorskip("xdsl")
from xdsl.context import Context  # noqa: E402
from xdsl.dialects.builtin import Builtin  # noqa: E402
from xdsl.dialects.func import Func  # noqa: E402
from xdsl.parser import Parser  # noqa: E402


def _xdsl_parse(text: str):
    ctx = Context(allow_unregistered=True)
    ctx.load_dialect(Builtin)
    ctx.load_dialect(Func)
    module = Parser(ctx, text).parse_module()
    module.verify()
    return module


def _sc_ops(g):
    return sorted(op.name for op in g.walk() if op.name.startswith("sc."))


def _xdsl_op_names(module):
    """Names of the (unregistered) sc ops xDSL read: ``op_name`` holds the quoted name."""
    out = []
    for op in module.walk():
        name = op.op_name.data if hasattr(op, "op_name") else op.name
        if name.startswith("sc."):
            out.append(name)
    return sorted(out)


@given(sct.graphs(max_ops=8))
def test_xdsl_parses_what_sparsec_prints(g):
    module = _xdsl_parse(str(g))
    assert _xdsl_op_names(module) == _sc_ops(g)


@given(sct.graphs(max_ops=6, dtypes=("f32", "f16", "bf16", "f64", "i8", "i32", "i64", "ui8")))
def test_xdsl_parses_every_dtype(g):
    _xdsl_parse(str(g))


@pytest.mark.slow
@settings(max_examples=200)
@given(sct.graphs(max_ops=25, dtypes=("f32", "f16", "i32", "i64")))
def test_xdsl_parses_what_sparsec_prints_many(g):
    _xdsl_parse(str(g))


@pytest.mark.skipif(shutil.which("xdsl-opt") is None, reason="xdsl-opt not on PATH")
def test_xdsl_opt_accepts_a_large_graph(tmp_path):
    g = find(sct.graphs(min_ops=30, max_ops=40), lambda g: sum(1 for _ in g.walk()) >= 40,
             settings=settings(database=None, phases=[Phase.generate], derandomize=True))
    path = tmp_path / "big.mlir"
    path.write_text(str(g))
    r = subprocess.run(["xdsl-opt", "--allow-unregistered-dialect", str(path)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert sum(r.stdout.count(f'"{n}"') for n in set(_sc_ops(g))) == len(_sc_ops(g))
