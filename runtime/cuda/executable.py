"""The CUDA executable: runs a lowered ``Plan`` with device memory.

Same plan, same liveness and arena placement as the CPU ``Executable`` (``runtime.memory``);
the arena is one device allocation per set of symbol sizes, each intermediate buffer a typed
view of it. Weights live on the device for the model's lifetime (``DeviceWeights``, shared by
the model's functions), constants are uploaded once per executable. A call uploads the host
inputs (device arrays are used as they are), launches every step's kernels on the default
stream with no host round trip in between, then synchronizes once: it reads the error slots of
the checked kernels (index ranges, integer division by zero) and copies the results to the host
(``call(..., to_host=...)`` keeps chosen results on the device: ``generate`` keeps the updated
KV caches there and copies only the logits).

After ``replay_after`` calls with the same sizes, the next call is recorded and later calls
replay it (``runtime.cuda.replay``): on a GPU one CUDA graph launch instead of a Python launch
per kernel; the inputs are copied into buffers the state owns, the results out of them.
"""
from __future__ import annotations


import numpy as np

from ...errors import SparsecError
from ..executable import Executable, KernelError, _env_int, _Prepared
from . import device as D
from . import replay as R
from .launch import _BF16

#: calls with the same sizes after which the next is recorded and replayed from then on (a CUDA
#: graph on a GPU; ``runtime.cuda.replay``); 0: never. Environment: ``SPARSEC_CUDA_REPLAY_AFTER``.
REPLAY_AFTER = _env_int("SPARSEC_CUDA_REPLAY_AFTER", 2)


class CudaExecutable(Executable):
    """``CudaExecutable(plan, weights)(*arrays) -> tuple of NumPy arrays``; ``weights`` a
    ``DeviceWeights`` (shared by the functions of one model)."""

    stage_input_bytes = 0  # inputs are uploaded to the device per call: nothing to stage on the host
    stage_output_bytes = 0  # results are device arrays

    on_device = True

    def __init__(self, plan, weights: D.DeviceWeights | None = None, kernels: dict | None = None):
        super().__init__(plan)
        self.weights = weights if weights is not None else D.DeviceWeights(plan.weights)
        #: step index -> CudaKernel (for checked kernels' messages; from lowering)
        self.kernels = kernels if kernels is not None else getattr(plan, "kernels", {})
        self._constants: dict[int, object] = {}

    # -- calling ---------------------------------------------------------------------------
    input_kinds = "a NumPy or CUDA device array"

    @staticmethod
    def _is_input_array(x) -> bool:
        return isinstance(x, np.ndarray) or D.is_device_array(x)

    def __call__(self, *arrays) -> tuple[np.ndarray, ...]:
        return self.call(*arrays)

    #: calls with the same sizes before the next is recorded for replay (0: never); per instance
    replay_after = REPLAY_AFTER

    def call(self, *arrays, to_host=True) -> tuple:
        """Run once. ``to_host``: True (every result as a NumPy array), False (device arrays), or
        the indices of the results to copy to the host (the others stay device arrays)."""
        arrays = [a if isinstance(a, np.ndarray) or D.is_device_array(a) else np.asarray(a) for a in arrays]
        b = self.bind(arrays)
        prep = self._prepared_for(b)
        reused = ()  # results in buffers a replay overwrites: copied if they stay on the device
        if prep.replay is not None and self.replay_after > 0:
            rep = prep.replay
            for buf, x in zip(rep.inputs, arrays):
                _fill(buf, x)
            self._launch_replay(prep, rep)
            outs, dev_inputs, reused = rep.results, rep.inputs, rep.reused
        elif self.replay_after > 0 and prep.replay_calls >= self.replay_after and self._replayable():
            outs, dev_inputs = self._record(prep, arrays, b)
            reused = prep.replay.reused
        else:
            prep.replay_calls += 1
            outs, dev_inputs = self._run(prep, arrays, b)
        if to_host is True:
            to_host = range(len(outs))
        elif to_host is False:
            to_host = ()
        host = set(to_host)
        result = tuple(o.copy_to_host() if i in host and D.is_device_array(o) else
                       _own_copy(o) if i in reused and D.is_device_array(o) else o for i, o in enumerate(outs))
        # donated inputs given as host arrays: copy the update back, as the CPU runtime updates them
        for i in self._inplace:
            x, d = arrays[i], dev_inputs[i]
            if isinstance(x, np.ndarray) and d is not x:
                x[...] = d.copy_to_host()
        return result

    def _run(self, prep: _Prepared, arrays, bindings):
        dev_inputs = []
        for i, (x, patches) in enumerate(zip(arrays, prep.input_patches)):
            d = D.to_device(x) if isinstance(x, np.ndarray) else x
            if i not in self._inplace and not D.is_contiguous(d):  # kernels read inputs flat
                d = D.to_device(d.copy_to_host())
            dev_inputs.append(d)
            for args, j in patches:
                args[j] = d
        self._start()
        self._run_steps(prep, bindings, D.empty, self._sync, "CUDA kernel")
        if prep.errors is not None:
            self._check_errors(prep)
        results = []
        for src in prep.result_sources:
            if src[0] == "static":
                results.append(src[1])
            elif src[0] == "input":
                results.append(dev_inputs[src[1]])
            else:
                args, j = src[1]
                results.append(args[j])
        return results, dev_inputs

    def _record(self, prep: _Prepared, arrays, bindings):
        """Run with the inputs in buffers of the state's own, noting every launch; then make the
        state's ``Replay`` (and, on a GPU, its checked CUDA graph)."""
        inputs = [_own_copy(x) for x in arrays]
        with R.recording() as launches:
            outs, dev_inputs = self._run(prep, inputs, bindings)
        rep = R.Replay(launches, inputs, outs)
        rep.reused = {i for i, src in enumerate(prep.result_sources) if src[0] != "static"}
        want = [o.copy_to_host() if D.is_device_array(o) else None for o in outs]

        def check():  # the graph on the recorded inputs: the same bits as the recorded call
            self._launch_replay(prep, rep)
            for i, (o, w) in enumerate(zip(outs, want)):
                if w is not None and not _same_bits(o.copy_to_host(), w):
                    return f"result {i}"
            return None
        rep.capture(check)
        prep.replay = rep
        return outs, dev_inputs

    #: measure each call's device time with two CUDA events on the default stream, recorded
    #: before the first launch and after the last (``device_seconds``; benchmarks set it). It
    #: includes the device's idle time while the host launches: a graph replay has almost none.
    time_device = False
    device_seconds: float | None = None
    _events = None

    def _start(self) -> None:
        if self.time_device:
            if self._events is None:
                from numba import cuda
                self._events = (cuda.event(), cuda.event())
            self._events[0].record()

    def _sync(self) -> None:
        if self.time_device:
            self._events[1].record()
        D.synchronize()
        if self.time_device:
            self.device_seconds = self._events[0].elapsed_time(self._events[1]) / 1e3

    def _replayable(self) -> bool:
        """Whether a call's launches depend only on the prepared state's sizes: no input updated
        in place, and every symbol keys the state (a ``ctx`` that only sizes donated caches does
        not, and changes every decode step)."""
        return not self._inplace and set(self._symbols) == set(self._key_symbols)

    def _launch_replay(self, prep: _Prepared, rep) -> None:
        try:
            self._start()
            rep.run()
            self._sync()
        except SparsecError:
            raise
        except Exception as e:
            how = "its CUDA graph" if rep.graph is not None else "its recorded launches"
            raise KernelError(f"@{self.plan.function}: replaying {how} failed: {type(e).__name__}: {e}") from e
        if prep.errors is not None:
            self._check_errors(prep)

    def profile_launches(self, *arrays, repeat: int = 10) -> list[dict]:
        """The device time of each kernel launch of a call with these inputs, each launch timed
        on its own (``Replay.profile``: ``{"kernel", "grid", "block", "seconds"}`` per launch, in
        call order). Records the call first if it is not yet; the error slots are reset after,
        and the next call recomputes everything from its inputs."""
        arrays = [a if isinstance(a, np.ndarray) or D.is_device_array(a) else np.asarray(a) for a in arrays]
        if not self._replayable():
            raise SparsecError(f"@{self.plan.function}: its launches cannot be recorded (it updates inputs in "
                               f"place, or a symbol does not key its prepared state)")
        b = self.bind(arrays)
        prep = self._prepared_for(b)
        if prep.replay is None:
            self._record(prep, arrays, b)
        try:
            return prep.replay.profile(repeat)
        finally:
            D.synchronize()
            if prep.errors is not None:
                prep.errors.copy_to_device(np.zeros(prep.errors.shape, np.int64))

    def replay_report(self) -> list[dict]:
        """Per prepared set of sizes: ``sizes``, ``calls`` before recording, ``launches`` per
        call once recorded (None: not yet), ``graph`` (replayed as a CUDA graph) and ``why``
        not, if not."""
        out = []
        for key, prep in self._prepared.items():
            rep = prep.replay
            out.append({"sizes": dict(zip(self._key_symbols, key)), "calls": prep.replay_calls,
                        "launches": None if rep is None else len(rep),
                        "graph": rep is not None and rep.graph is not None,
                        "why": "not recorded yet" if rep is None else rep.why})
        return out

    def _check_errors(self, prep: _Prepared) -> None:
        errs = prep.errors.copy_to_host()
        bad = np.nonzero(errs[:, 0])[0]
        if not bad.size:
            return
        prep.errors.copy_to_device(np.zeros_like(errs))
        row = int(bad[0])
        k = prep.checked_steps[row]
        step = self.plan.steps[k]
        kern = self.kernels.get(k)
        code, value = int(errs[row, 0]), int(errs[row, 1])
        what = kern.error(code, value) if kern is not None and kern.error else f"error code {code} ({value})"
        where = f" (from {step.loc})" if step.loc else ""
        raise KernelError(f"{step.op}{where}: {what}")

    def device_zeros(self, shape, dtype):
        """A zero-filled device array (``generate``'s KV caches live on the device)."""
        return D.zeros(shape, dtype)

    def warmup(self, progress=None, force: bool = False) -> float:
        """JIT-compile every kernel now by running once on inputs of ones (each symbolic dim = 1;
        donated caches as strided views, as ``generate`` passes them). Under the simulator
        nothing is compiled, so this returns at once unless ``force``."""
        import time
        from .launch import simulator
        t0 = time.perf_counter()
        if simulator() and not force:
            return 0.0
        b = {s: 1 for s in self._symbols}
        arrays = [np.ones(t.concrete(b), t.dtype.np) for _, t, *_ in self._input_dims]
        for i in self._inplace:  # as generate passes them: the first ctx positions of a longer cache
            t = self._input_dims[i][1]
            shape = t.concrete(b)
            if len(shape) >= 2:
                big = D.zeros(shape[:-2] + (2 * shape[-2] + 1, shape[-1]), t.dtype.np)
                arrays[i] = big[(slice(None),) * (len(shape) - 2) + (slice(0, shape[-2]), slice(None))]
        try:
            with np.errstate(all="ignore"):
                self.call(*arrays, to_host=False)
        except SparsecError:  # data-dependent failure on dummy values: the rest compiles on first use
            pass
        if progress is not None:
            for k in range(len(self.plan.steps)):
                progress(k)
        return time.perf_counter() - t0

    # -- preparing for one set of sizes ----------------------------------------------------
    def _constant(self, slot) -> object:
        d = self._constants.get(slot.index)
        if d is None:
            d = self._constants[slot.index] = D.to_device(slot.value)
        return d

    def _prepare(self, bindings: dict[str, int]) -> _Prepared:
        D.require_device(f"running @{self.plan.function} on target 'cuda'")  # a clear error before numba's
        return super()._prepare(bindings)

    def _new_arena(self, nbytes: int):
        return D.empty((nbytes,), np.uint8)

    def _weight_value(self, slot):
        return self.weights.get(slot.weight)

    def _constant_value(self, slot):
        return self._constant(slot)

    def _error_slots(self) -> tuple[object, dict]:
        """One device ``int64[2]`` row per checked kernel, passed as its last argument."""
        checked = [k for k, step in enumerate(self.plan.steps) if self.kernels.get(k) is not None
                   and self.kernels[k].checked]
        if not checked:
            return None, {}
        errors = D.zeros((len(checked), 2), np.int64)
        return errors, {k: errors[i] for i, k in enumerate(checked)}

    def memory_report(self, bindings: dict[str, int]) -> dict:
        out = super().memory_report(bindings)
        out["weight_bytes_on_device"] = self.weights.bytes
        return out


def _bits(a):
    """``a`` with bfloat16 viewed as its uint16 bits (numba's copies check dtypes it cannot type)."""
    return a.view(np.uint16) if a.dtype == _BF16 else a


def _own_copy(x):
    """A C-contiguous device copy of input ``x`` (host or device array)."""
    if isinstance(x, np.ndarray):
        return D.to_device(x)
    d = D.empty(x.shape, x.dtype)
    _fill(d, x)
    return d


def _fill(buf, x) -> None:
    """Copy input ``x`` into the device buffer ``buf`` (same shape and dtype: ``bind`` checked
    them)."""
    if isinstance(x, np.ndarray):
        x = np.require(x, requirements="C")
    elif not D.is_contiguous(x):
        x = x.copy_to_host()
    _bits(buf).copy_to_device(_bits(x))


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()
