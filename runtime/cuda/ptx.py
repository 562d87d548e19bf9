"""PTX for every kernel of a lowered model, without a GPU: ``numba.cuda.compile_ptx`` for sm_90
(through the NVRTC/NVVM of the ``nvidia-cuda-nvrtc`` wheel, matching the toolkit's major version),
then ``ptxas`` from the CUDA toolkit when one is installed, to check that the PTX assembles.

Kernels that call device functions need a compute capability for those calls; numba-cuda asks
the current device for it, so without a device ``emit_ptx`` answers with the target's (only for
the duration of the compilation).
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from types import SimpleNamespace

CC = (9, 0)


@dataclass
class PtxResult:
    name: str             # kernel name (file stem)
    path: str             # the .ptx written
    ptxas: str            # "ok", "skipped: <why>" or "failed: <message>"
    op: str               # the op (first one using this kernel)
    #: what ptxas reports for the kernel (``ptxas -v``), where it assembled: registers per
    #: thread, bytes spilled to local memory (stores), static shared memory per block
    registers: int | None = None
    spill_bytes: int | None = None
    shared_bytes: int | None = None

    def resources(self) -> str:
        if self.registers is None:
            return ""
        return f"{self.registers} registers, {self.spill_bytes} B spilled, {self.shared_bytes} B shared"


def find_ptxas() -> str | None:
    """``ptxas`` from PATH, ``$CUDA_HOME/bin``, ``/usr/local/cuda/bin`` or the nvidia-cuda-nvcc wheel."""
    p = shutil.which("ptxas")
    if p:
        return p
    for base in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if base and os.path.exists(os.path.join(base, "bin", "ptxas")):
            return os.path.join(base, "bin", "ptxas")
    try:  # the nvidia-cuda-nvcc wheel (nvidia/cu13/bin/ptxas)
        import nvidia
        for root in nvidia.__path__:
            for sub in ("cu13", "cuda_nvcc"):
                p = os.path.join(root, sub, "bin", "ptxas")
                if os.path.exists(p):
                    return p
    except ImportError:
        pass
    return None


@contextlib.contextmanager
def _target_cc_without_device(cc):
    from numba import cuda
    import numba.cuda.dispatcher as disp
    try:
        has_device = cuda.is_available()
    except Exception:  # noqa: BLE001
        has_device = False
    if has_device:
        yield
        return
    orig = disp.get_current_device
    disp.get_current_device = lambda: SimpleNamespace(compute_capability=cc)
    try:
        yield
    finally:
        disp.get_current_device = orig


def compile_spec(spec, cc=CC) -> str:
    from numba import cuda
    with _target_cc_without_device(cc):
        ptx, _ = cuda.compile_ptx(spec.pyfunc, spec.signature, cc=cc)
    return ptx


def assemble(ptx_path: str, ptxas: str | None, cc=CC) -> tuple[str, dict]:
    """``(status, resources)``: ``status`` as ``PtxResult.ptxas``; ``resources`` the kernel's
    ``registers`` / ``spill_bytes`` / ``shared_bytes`` from ``ptxas -v`` (empty unless "ok")."""
    if ptxas is None:
        return "skipped: ptxas not found (install the CUDA toolkit or set CUDA_HOME)", {}
    out = ptx_path[:-4] + ".cubin"
    r = subprocess.run([ptxas, "-v", f"-arch=sm_{cc[0]}{cc[1]}", ptx_path, "-o", out], capture_output=True,
                       text=True)
    if r.returncode != 0:
        return f"failed: {(r.stderr or r.stdout).strip()}", {}
    os.remove(out)
    return "ok", ptxas_resources(r.stderr + r.stdout)


def ptxas_resources(info: str) -> dict:
    """Registers, spill-store bytes and static shared bytes of the (one) kernel in ``ptxas -v``'s
    report; a missing figure counts 0 (ptxas omits ``smem`` for kernels without shared memory)."""
    def first(pattern):
        m = re.search(pattern, info)
        return int(m.group(1)) if m else 0
    return {"registers": first(r"Used (\d+) registers"), "spill_bytes": first(r"(\d+) bytes spill stores"),
            "shared_bytes": first(r"(\d+) bytes smem")}


def kernel_specs(plans) -> list:
    """``(op name, PtxSpec)`` for every distinct kernel (pyfunc and signature) of ``plans``."""
    seen, out = set(), []
    for plan in plans:
        for k, kern in sorted(getattr(plan, "kernels", {}).items()):
            for spec in kern.kernels:
                key = (spec.pyfunc, spec.signature)
                if key not in seen:
                    seen.add(key)
                    out.append((plan.steps[k].op, spec))
    return out


def emit_ptx(plans, outdir: str, cc=CC, assemble_with_ptxas: bool = True) -> list[PtxResult]:
    """Write one ``.ptx`` per distinct kernel of ``plans`` into ``outdir``; assemble each with
    ptxas when found. Names: ``<kernel>__<n>.ptx`` (``n`` counts the signatures of a kernel)."""
    os.makedirs(outdir, exist_ok=True)
    ptxas = find_ptxas() if assemble_with_ptxas else None
    results, count = [], {}
    for op, spec in kernel_specs(plans):
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", spec.name)
        n = count[stem] = count.get(stem, 0) + 1
        path = os.path.join(outdir, f"{stem}__{n}.ptx")
        ptx = compile_spec(spec, cc)
        with open(path, "w") as f:
            f.write(ptx)
        status, res = assemble(path, ptxas, cc) if assemble_with_ptxas else ("skipped: not asked", {})
        results.append(PtxResult(f"{stem}__{n}", path, status, op, **res))
    return results


def format_ptx_report(results: list[PtxResult], outdir: str) -> str:
    """One line per kernel (file, op, ptxas status) and a summary line."""
    lines = [f"  {r.name + '.ptx':48s} {r.op:24s} ptxas: {r.ptxas}"
             + (f" ({r.resources()})" if r.registers is not None else "") for r in results]
    ok = sum(r.ptxas == "ok" for r in results)
    failed = sum(r.ptxas.startswith("failed") for r in results)
    spilled = sum(bool(r.spill_bytes) for r in results)
    lines.append(f"wrote {len(results)} PTX files (sm_{CC[0]}{CC[1]}) to {outdir}: {ok} assembled with ptxas, "
                 f"{failed} failed, {len(results) - ok - failed} not assembled"
                 + (f"; {spilled} of them spill registers to local memory" if spilled else ""))
    return "\n".join(lines)
