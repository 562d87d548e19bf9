"""The ``sparsec`` command line (also ``python -m sparsec``)."""
from __future__ import annotations

import os
import sys

import click

from .errors import SparsecError

def _load_model(path: str):
    from .fileio import read_ir
    if os.path.isdir(path):
        raise SparsecError(f"{path}: Hugging Face folders are not supported yet (expected an .mlir file)")
    ext = os.path.splitext(path)[1].lower()
    if ext != ".mlir":
        raise SparsecError(f"{path}: unsupported model file {ext or '(no extension)'!r}; expected .mlir")
    if not os.path.exists(path):
        raise SparsecError(f"{path}: no such file")
    return read_ir(path)


class _Group(click.Group):
    """Turns sparsec's own errors into a one-line message and exit status 1 (no traceback)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SparsecError as e:
            from .errors import ParseError
            click.echo(str(e) if isinstance(e, ParseError) else f"error: {e}", err=True)
            ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sparsec")
def main():
    """sparsec: compile Mixture-of-Experts, small dense and quantized models to fast kernels.

    \b
    Examples:
      sparsec show model.mlir              summary of a module
      sparsec opt model.mlir -o out.mlir   parse, verify and print IR
    """


@main.command()
@click.argument("model", type=click.Path(dir_okay=True))
@click.option("--dot", "dot_path", type=click.Path(dir_okay=False), help="Also write the dataflow as Graphviz DOT.")
def show(model, dot_path):
    """Summarize MODEL: inputs, outputs, op counts, parameters, experts, quantization.

    MODEL is an IR text file (.mlir); Hugging Face folders, .onnx and .spc files come with
    their importers.
    """
    from .summary import format_summary, summarize
    g = _load_model(model)
    click.echo(format_summary(summarize(g), title=model))
    if dot_path:
        from .fileio import atomic_write_text
        from .ir.nxgraph import to_dot
        atomic_write_text(dot_path, to_dot(g.main))
        click.echo(f"dot: wrote {dot_path}")


@main.command()
@click.argument("input_path", metavar="IN.mlir", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the IR here (default: stdout).")
def opt(input_path, output):
    """Read IR text, verify it and print it again (like mlir-opt).

    Passes and pipelines (-p) arrive with the pass manager.
    """
    from .fileio import atomic_write_text
    g = _load_model(input_path)
    text = str(g)
    if output:
        atomic_write_text(output, text)
    else:
        click.echo(text, nl=False)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
