"""The command line: show, opt, errors without tracebacks, atomic outputs."""

import numpy as np
from click.testing import CliRunner

import sparsec as sc
from sparsec.cli import main


def _graph():
    def f(x, w):
        return sc.ops.silu(x * w) + 1.0
    return sc.trace(f, sc.TensorSpec(("tokens", 8), "float32"), sc.TensorSpec((8,), "float32"))


def _write(tmp_path, text, name="m.mlir"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_show_summarizes_module(tmp_path):
    path = _write(tmp_path, str(_graph()))
    r = CliRunner().invoke(main, ["show", path])
    assert r.exit_code == 0, r.output
    assert "x: tensor<tokens x 8 x f32>" in r.output
    assert "sc.silu" in r.output and "ops: " in r.output
    assert "quantization: none" in r.output


def test_show_dot_export(tmp_path):
    path = _write(tmp_path, str(_graph()))
    dot = tmp_path / "g.dot"
    r = CliRunner().invoke(main, ["show", path, "--dot", str(dot)])
    assert r.exit_code == 0, r.output
    text = dot.read_text()
    assert "digraph" in text and "sc.silu" in text


def test_opt_identity_round_trip(tmp_path):
    text = str(_graph())
    path = _write(tmp_path, text)
    out = tmp_path / "out.mlir"
    r = CliRunner().invoke(main, ["opt", path, "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_text() == text
    r = CliRunner().invoke(main, ["opt", path])
    assert r.output == text


def test_parse_error_is_one_clear_message_and_no_output_file(tmp_path):
    text = str(_graph()).replace('"sc.silu"', '"sc.silux"')
    path = _write(tmp_path, text)
    out = tmp_path / "out.mlir"
    r = CliRunner().invoke(main, ["opt", path, "-o", str(out)])
    assert r.exit_code == 1
    assert f"{path}:" in r.output and "unknown op 'sc.silux'" in r.output and "did you mean" in r.output
    assert "Traceback" not in r.output
    assert not out.exists()


def test_unsupported_model_kind_is_named(tmp_path):
    p = tmp_path / "m.pt"
    p.write_bytes(b"\0")
    r = CliRunner().invoke(main, ["show", str(p)])
    assert r.exit_code == 1 and "unsupported model file '.pt'" in r.output
    r = CliRunner().invoke(main, ["show", str(tmp_path / "missing.mlir")])
    assert r.exit_code == 1 and "no such file" in r.output


def test_every_command_has_help():
    for cmd in main.commands:
        r = CliRunner().invoke(main, [cmd, "--help"])
        assert r.exit_code == 0 and "Usage:" in r.output and len(r.output.splitlines()) > 4


def test_show_counts_params(tmp_path):
    def f(x):
        return x @ sc.Parameter(np.ones((8, 4), np.float32))
    g = sc.trace(f, sc.TensorSpec(("n", 8), "float32"))
    r = CliRunner().invoke(main, ["show", _write(tmp_path, str(g))])
    assert r.exit_code == 0, r.output
    assert "params: 1 tensors, 32 elements" in r.output


def test_show_counts_moe_experts():
    import os
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "tiny_moe.mlir")
    r = CliRunner().invoke(main, ["show", path])
    assert r.exit_code == 0, r.output
    assert "MoE blocks: 1, 8 experts each" in r.output
