"""The ``sparsec`` command line (also ``python -m sparsec``)."""
from __future__ import annotations

import os
import sys

import click

from .errors import SparsecError

def _load_hf_folder(path: str):
    """A Hugging Face folder (config.json + *.safetensors): the ``sc.nn`` model and its input specs
    (causal LMs ``input_ids [batch, seq]`` int64; BERT ``input_ids``, ``attention_mask``,
    ``token_type_ids``)."""
    from .hf import input_specs, load_hf
    model = load_hf(path)
    return model, input_specs(model)


def _load_model(path: str):
    """IR text (.mlir, weights from the sibling .safetensors), a compiled .spc (its optimized IR),
    or a Hugging Face folder (traced)."""
    from .fileio import read_model_ir
    if os.path.isdir(path):
        from .frontend.tracer import trace
        model, specs = _load_hf_folder(path)
        return trace(model, *specs)
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".mlir", ".spc", ".onnx"):
        raise SparsecError(f"{path}: unsupported model file {ext or '(no extension)'!r}; expected .mlir, .onnx or .spc")
    if not os.path.exists(path):
        raise SparsecError(f"{path}: no such file")
    if ext == ".onnx":
        from .onnx import load_onnx
        return load_onnx(path)
    if ext == ".spc":
        from .ir import parse
        from .runtime.artifact import load_artifact
        ir, weights, _ = load_artifact(path)
        g = parse(ir, filename=f"{path}:ir")
        g.weights = weights
        return g
    return read_model_ir(path)


def _load_compiled(path: str, threads=None):
    if not path.endswith(".spc"):
        raise SparsecError(f"{path}: expected a compiled model (.spc); make one with `sparsec compile`")
    from .compiler import load
    return load(path, threads=threads)


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
@click.argument("input_path", metavar="IN.mlir", type=click.Path(dir_okay=False), required=False)
@click.option("-p", "--pipeline", default="", metavar="PIPELINE",
              help='Passes to run, e.g. "canonicalize,cse,dce" or "quantize{mode=q4_0}".')
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Write the IR here (default: stdout); weights go beside it as .safetensors.")
@click.option("--print-ir-after-all", is_flag=True, help="Print the IR after every pass (stderr).")
@click.option("--print-ir-after-change", is_flag=True, help="Print the IR after each pass that changed it.")
@click.option("--dump-dir", type=click.Path(file_okay=False), help="Write numbered IR files, one per pass.")
@click.option("--time-passes", is_flag=True, help="Report the wall time of each pass.")
@click.option("--statistics", is_flag=True, help="Report what each pass did (ops before/after, counters).")
@click.option("--verify-each/--no-verify-each", default=True, show_default=True,
              help="Verify the IR after every pass.")
@click.option("--fold-params", is_flag=True, help="Let fold-constants evaluate subgraphs over weights.")
@click.option("--reproducer-dir", type=click.Path(file_okay=False),
              help="Where a failing pass writes its reproducer (default: --dump-dir or the temp dir).")
@click.option("--list-passes", is_flag=True, help="List the registered passes and their options, then exit.")
def opt(input_path, pipeline, output, print_ir_after_all, print_ir_after_change, dump_dir, time_passes,
        statistics, verify_each, fold_params, reproducer_dir, list_passes):
    """Run passes over IR text and print the result (like mlir-opt).

    \b
    Examples:
      sparsec opt model.mlir -p "canonicalize,cse,dce,fuse-elementwise" --print-ir-after-all
      sparsec opt model.mlir -p "canonicalize,cse" --dump-dir dumps/ --time-passes
    """
    from .passes import PassManager
    if list_passes:
        click.echo(_describe_passes())
        return
    if input_path is None:
        raise click.UsageError("missing IN.mlir (or --list-passes)")
    pm = PassManager.parse(pipeline, verify_each=verify_each, print_ir_after_all=print_ir_after_all,
                           print_ir_after_change=print_ir_after_change, dump_dir=dump_dir,
                           time_passes=time_passes, reproducer_dir=reproducer_dir, source=input_path,
                           stream=sys.stderr)
    if fold_params:
        _enable_fold_params(pm)
    g = _load_model(input_path)
    g = pm.run(g, inplace=True)
    g.verify()
    if time_passes or statistics:
        click.echo(f"passes: {pm.pipeline or '(none)'}\n{pm.format_report()}", err=True)
        from .quant.report import format_layers, quantization_layers
        layers, skipped = quantization_layers(pm.report)
        if layers or skipped:
            click.echo(format_layers(layers, skipped), err=True)
    text = str(g)
    if output:
        _write_ir_and_weights(output, text, g)
    else:
        click.echo(text, nl=False)


def _describe_passes() -> str:
    from .passes import PASSES, PIPELINES
    lines = []
    for name in sorted(PASSES):
        cls = PASSES[name]
        lines.append(f"{name}: {cls.summary()}")
        lines.extend(f"    {o}" for o in cls.options_help())
    lines.extend(f"pipeline {k}: {v}" for k, v in sorted(PIPELINES.items()))
    return "\n".join(lines)


def _enable_fold_params(pm) -> None:
    import dataclasses
    from .passes import PASSES
    folds = [i for i, p in enumerate(pm.passes) if p.name == "fold-constants"]
    if not folds:
        pm.passes.append(PASSES["fold-constants"](fold_params=True))
    for i in folds:
        pm.passes[i] = dataclasses.replace(pm.passes[i], fold_params=True)


def _write_ir_and_weights(output: str, text: str, g) -> None:
    """IR text and (when it refers to weights) the weights beside it; both or neither."""
    from .fileio import atomic_write_text, weights_path_for, write_weights
    used = {k: g.weights[k] for k in g.params() if k in g.weights}
    if used:
        write_weights(weights_path_for(output), used)
    atomic_write_text(output, text)


@main.command(name="compile")
@click.argument("model", type=click.Path())
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="The .spc file to write (required unless --emit-ptx).")
@click.option("--target", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--emit-ptx", "emit_ptx", type=click.Path(file_okay=False), default=None,
              help="With --target cuda: write the PTX of every kernel (sm_90) into this folder and assemble each "
                   "with ptxas when the CUDA toolkit is installed; needs no GPU.")
@click.option("--quantize", type=click.Choice(["int8", "q8_0", "q4_0", "int4"]), default=None,
              help="Quantize the matmul weights (appends quantize{mode=MODE}; routers and lm_head stay fp32). "
                   "Prints per-layer bytes and errors and the accuracy against fp32.")
@click.option("--accuracy-samples", type=int, default=4, show_default=True,
              help="Random input batches for the accuracy report of a quantized model (0: skip).")
@click.option("-p", "--pipeline", default="default", show_default=True, help="Pass pipeline text.")
@click.option("--print-ir-after-all", is_flag=True, help="Print the IR after every pass (stderr).")
@click.option("--dump-dir", type=click.Path(file_okay=False), help="Write numbered IR files, one per pass.")
@click.option("--threads", type=int, default=None, help="Threads for the kernels (default: all cores).")
def compile_cmd(model, output, target, emit_ptx, quantize, accuracy_samples, pipeline, print_ir_after_all, dump_dir,
                threads):
    """Compile MODEL (IR text .mlir with its .safetensors weights, or a Hugging Face folder with
    config.json and *.safetensors) into OUT.spc.

    \b
    Examples:
      sparsec compile model.mlir -o model.spc
      sparsec compile ./Qwen3-0.6B -o qwen3.spc      (then: sparsec generate qwen3.spc --ids 1,2,3)
      sparsec compile model.mlir -o model.q8.spc --quantize q8_0
      sparsec compile model.mlir -o model.q4.spc -p "default,quantize{mode=int4,group=128,skip=none}"
      sparsec compile model.mlir --target cuda --emit-ptx ptx/     (PTX per kernel, no GPU needed)
    """
    import time
    from .compiler import compile as sc_compile
    if emit_ptx is not None and target != "cuda":
        raise SparsecError("--emit-ptx needs --target cuda")
    if output is None and emit_ptx is None:
        raise SparsecError("missing -o OUT.spc (the artifact to write)")
    if output is not None and target == "cuda":
        from .compiler import require_cuda
        what = "sparsec compile: target 'cuda'"
        if emit_ptx is not None:
            what += (" with -o (the .spc's kernels are compiled on the device; --emit-ptx without -o "
                     "needs none)")
        require_cuda(what)  # before the passes: fail fast, say what to do
    if output is not None and not output.endswith(".spc"):
        raise SparsecError(f"{output}: the output must be a .spc file")
    if os.path.isdir(model):  # Hugging Face folder: compile the module (a causal LM gets its decode step)
        g, specs = _load_hf_folder(model)
    else:
        g, specs = _load_model(model), ()
    t0 = time.perf_counter()
    cm = sc_compile(g, *specs, target=target, quantize=quantize, pipeline=pipeline, threads=threads,
                    print_ir_after_all=print_ir_after_all, dump_dir=dump_dir, accuracy_samples=accuracy_samples,
                    emit_ptx=emit_ptx, warmup=output is not None)
    seconds = time.perf_counter() - t0
    if emit_ptx is not None:
        from .runtime.cuda.ptx import format_ptx_report
        click.echo(format_ptx_report(cm.report["ptx"], emit_ptx), err=True)
        if output is None:
            return
    cm.save(output)
    n = sum(len(ex.plan.steps) for ex in cm.executables.values())
    click.echo(f"passes ({cm.pipeline}):\n{cm.report['passes']}", err=True)
    if "quantization" in cm.report:
        from .quant.report import format_quantization
        click.echo(format_quantization(cm.report["quantization"]), err=True)
    click.echo(f"compiled {model} -> {output}: {n} kernels, {seconds:.2f} s", err=True)


def _parse_inputs(items, names):
    import numpy as np
    out = {}
    for item in items:
        if "=" not in item:
            raise SparsecError(f"--input {item!r}: expected NAME=FILE.npy")
        name, path = item.split("=", 1)
        if name not in names:
            raise SparsecError(f"--input {name}: the model has no input {name!r}; inputs: {', '.join(names)}")
        try:
            out[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise SparsecError(f"--input {name}: cannot read {path}: {e}") from None
    missing = [n for n in names if n not in out]
    if missing:
        raise SparsecError(f"missing --input for {', '.join(missing)} (the model takes {', '.join(names)})")
    return [out[n] for n in names]


@main.command()
@click.argument("artifact", type=click.Path(dir_okay=False))
@click.option("--input", "inputs", multiple=True, metavar="NAME=FILE.npy", help="One per model input.")
@click.option("--output", type=click.Path(dir_okay=False), help="Write the outputs to this .npz file.")
@click.option("--threads", type=int, default=None)
def run(artifact, inputs, output, threads):
    """Run a compiled model once on .npy inputs."""
    import numpy as np
    cm = _load_compiled(artifact, threads)
    arrays = _parse_inputs(inputs, cm.input_names)
    outs = cm.run(*arrays)
    if output:
        import io
        buf = io.BytesIO()
        np.savez(buf, **dict(zip(cm.output_names, outs)))
        from .fileio import atomic_write_bytes
        atomic_write_bytes(output, buf.getvalue())
        click.echo(f"wrote {output}: {', '.join(f'{n} {o.shape} {o.dtype}' for n, o in zip(cm.output_names, outs))}")
    else:
        for n, o in zip(cm.output_names, outs):
            click.echo(f"{n}: shape {o.shape} dtype {o.dtype}\n{np.array2string(o, threshold=20, edgeitems=3)}")


@main.command()
@click.argument("artifact", type=click.Path(dir_okay=False))
@click.option("--ids", required=True, help="Prompt token ids, comma separated.")
@click.option("--max-new-tokens", type=int, default=16, show_default=True)
@click.option("--pixel-values", "pixel_values", type=click.Path(dir_okay=False), default=None,
              help="A vision-language model's image (.npy, [1, C, H, W] float32, normalized as its processor does).")
@click.option("--threads", type=int, default=None)
def generate(artifact, ids, max_new_tokens, pixel_values, threads):
    """Greedy decoding from a compiled causal LM; prints the token ids."""
    import numpy as np
    try:
        prompt = np.array([[int(t) for t in ids.split(",") if t.strip()]], np.int64)
    except ValueError:
        raise SparsecError(f"--ids {ids!r}: expected comma-separated integers") from None
    image = None
    if pixel_values is not None:
        try:
            image = np.load(pixel_values, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise SparsecError(f"--pixel-values: cannot read {pixel_values}: {e}") from None
    cm = _load_compiled(artifact, threads)
    out = cm.generate(prompt, max_new_tokens, pixel_values=image)
    click.echo(",".join(str(int(t)) for t in out[0]))


@main.command()
@click.argument("model", type=click.Path())
@click.option("--tokens", "tokens", multiple=True, type=int, default=(1, 128), show_default=True,
              help="Size of every symbolic dim except batch (repeatable).")
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--repeat", type=int, default=20, show_default=True, help="Timed calls per case (median).")
@click.option("--vs", "peer", type=click.Choice(["numpy", "none", "torch"]), default="numpy", show_default=True,
              help="Peer measured in the same run: the NumPy reference interpreter.")
@click.option("--threads", type=int, default=None)
def bench(model, tokens, batch, repeat, peer, threads):
    """Time MODEL (.spc, or .mlir compiled first) at each --tokens beside a peer."""
    from .benchmark import bench as run_bench
    if peer == "torch":
        raise SparsecError("--vs torch: PyTorch runs the standard shapes in benchmarks/bench.py "
                           "(python benchmarks/bench.py); for arbitrary IR the peer is --vs numpy")
    if any(t < 1 for t in tokens) or batch < 1 or repeat < 1:
        raise SparsecError("--tokens, --batch and --repeat must be positive")
    if model.endswith(".spc"):
        cm = _load_compiled(model, threads)
    else:
        from .compiler import compile as sc_compile
        cm = sc_compile(_load_model(model), threads=threads)
    import numba
    click.echo(f"{model}: pipeline {cm.pipeline or '(none)'}; {numba.get_num_threads()} threads; median of {repeat}")
    for r in run_bench(cm, tokens, repeat, reference=peer == "numpy", batch=batch):
        sizes = ", ".join(f"{k}={v}" for k, v in r["bindings"].items()) or "static shapes"
        line = f"  {sizes:<24} compiled {r['compiled_ms']:9.3f} ms"
        if "reference_ms" in r:
            line += f"   numpy reference {r['reference_ms']:9.3f} ms   {r['speedup']:6.1f}x   check: {r['check']}"
        click.echo(line)


@main.command()
@click.option("--threads", type=int, default=None, help="Threads for the kernels.")
@click.option("-p", "--pipeline", default="default", show_default=True)
def demo(threads, pipeline):
    """Compile the embedded tiny MoE language model, check it against the interpreter, report."""
    from .demo import DemoMismatch, run_demo
    try:
        run_demo(click.echo, pipeline=pipeline, threads=threads)
    except DemoMismatch as e:
        raise SparsecError(f"demo: {e}") from None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
