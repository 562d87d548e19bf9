"""Replays of a call's kernel launches: one CUDA graph per prepared state on a GPU.

Why: numba-cuda launches a kernel from Python in about 7 us plus about 3.5 us per array
argument (numba-cuda PR #288 measured 6.6 us with none and 14.1 us with two). sparsec's kernels
take 10-20 arguments, so a one-token MoE layer of 7 launches spends hundreds of
microseconds of host time where the GPU needs tens to read the active experts (2 x 3 x
1024 x 2816 f32 weights are 69 MB: 14 us at an H200's 4.8 TB/s). A CUDA graph launches them
all with one call, as llama.cpp's CUDA backend and ``torch.compile(mode="reduce-overhead")`` do.

How: after ``CudaExecutable.replay_after`` calls with the same sizes, the next call is recorded
(``recording``): the inputs are copied into device buffers the state owns from then on, the steps
run as usual and every launch through ``launch.CudaFunction`` is noted with its configuration
and its arguments as passed. The recording is replayable because a CUDA call's launches depend
only on the sizes: kernels read data on the device, choose their configuration from shapes and
never copy to the host in between (the lowering contract, ``sparsec.lower.cuda``). Every array a
recorded launch uses, including scratch a step allocated while recording, is held by the
recording, so its memory stays valid.

``Replay.capture`` then replays the noted launches once into a ``cuda.core`` graph builder
(numba-cuda launches onto a ``GraphBuilder`` as onto a stream), completes the graph, launches it
on the inputs of the recorded call and compares every result bit for bit with the recorded
call's (the kernels are deterministic: no float atomics). Only a graph that passed is used; on
any failure the reason is kept (``Replay.why``, ``CudaExecutable.replay_report``), a warning
says it once, and the state replays the noted launches one by one instead, which is what the
simulator always does (it has no graphs).

Not replayed: executables that update inputs in place (``generate``'s decode and prefill steps,
whose KV-cache views and ``ctx`` change every step).
"""
from __future__ import annotations

import threading
import warnings

import numpy as np

from .launch import simulator

_local = threading.local()


class recording:
    """``with recording() as launches:`` notes every ``CudaFunction`` launch of this thread as
    ``(function, configuration, arguments)`` (the arguments as the kernel gets them)."""

    def __enter__(self) -> list:
        self.prev = getattr(_local, "launches", None)
        self.launches = _local.launches = []
        return self.launches

    def __exit__(self, *exc) -> None:
        _local.launches = self.prev


def note(fn, config, args) -> None:
    """Called by ``CudaFunction`` for each launch (the arguments already converted)."""
    launches = getattr(_local, "launches", None)
    if launches is not None:
        launches.append((fn, config, tuple(args)))


def _with_stream(config, stream) -> tuple:
    """``(grid, block)`` / ``(grid, block, stream[, shared])`` with ``stream`` in place 2."""
    config = tuple(config)
    return config[:2] + (stream,) + config[3:]


class Replay:
    """A prepared state's recorded call: the input buffers it reads, the noted launches, the
    result arrays they write, and the CUDA graph of those launches (None: replayed one by one,
    ``why`` says why)."""

    def __init__(self, launches: list, inputs: list, results: list):
        self.launches = launches
        self.inputs = inputs
        self.results = results
        #: indices of the results in buffers a replay overwrites (copied for the caller)
        self.reused: set = set()
        self.graph = None
        self.why: str | None = "not captured"
        self._stream_handle = None

    @property
    def _stream(self):
        """The default stream (handle 0) as a ``cuda.core`` stream: numba launches there, so the
        graph runs in order with the copies and launches around it."""
        if self._stream_handle is None:
            from cuda.core import Stream
            self._stream_handle = Stream.from_handle(0)
        return self._stream_handle

    def __len__(self) -> int:
        return len(self.launches)

    def run(self) -> None:
        """Launch the recorded work (asynchronously, on the default stream)."""
        if self.graph is not None:
            self.graph.launch(self._stream)
            return
        for fn, config, args in self.launches:
            fn.dispatcher[config](*args)

    def profile(self, repeat: int = 10) -> list[dict]:
        """Device time of each recorded launch on its own: ``repeat`` back-to-back copies of it
        (in one CUDA graph on a GPU, so the host's launch time is not counted; launched one by
        one under the simulator), timed with CUDA events on the default stream. Per launch:
        ``{"kernel", "grid", "block", "seconds"}`` (seconds per copy). Repeating a kernel alone
        may leave garbage in the arena and report errors into the error slots: the caller resets
        them (``CudaExecutable.profile_launches`` does)."""
        from numba import cuda
        out = []
        e0, e1 = cuda.event(), cuda.event()
        for fn, config, args in self.launches:
            graph = None
            if not simulator():
                graph = _graph([(fn, config, args)] * repeat)
                graph.launch(self._stream)  # once untimed: the first launch of a graph uploads it
            cuda.synchronize()
            e0.record()
            if graph is not None:
                graph.launch(self._stream)
            else:
                for _ in range(repeat):
                    fn.dispatcher[config](*args)
            e1.record()
            e1.synchronize()
            out.append({"kernel": fn.name, "grid": config[0], "block": config[1],
                        "seconds": e0.elapsed_time(e1) / 1e3 / repeat})
        return out

    def capture(self, check) -> None:
        """Build and check the CUDA graph; ``check()`` runs it on the recorded inputs and says
        what differs from the recorded results (None: nothing). Failures leave ``graph`` None
        and the reason in ``why``."""
        if simulator():
            self.why = "the CUDA simulator has no graphs: launches replayed one by one"
            return
        if any(isinstance(a, np.ndarray) for _, _, args in self.launches for a in args):
            # numba would copy such an argument on every launch: not capturable
            self.why = "a kernel takes a host array (numba copies it per launch): launches replayed one by one"
            return
        try:
            graph = _graph(self.launches)
        except Exception as e:  # noqa: BLE001 - any driver or numba-cuda failure: keep replaying launches
            self._fail(f"capture failed: {type(e).__name__}: {e}")
            return
        self.graph = graph
        try:
            diff = check()
        except Exception as e:  # noqa: BLE001
            diff = f"{type(e).__name__}: {e}"
        if diff is not None:
            self.graph = None
            self._fail(f"the graph's results differ from the recorded call's ({diff})")
            return
        self.why = None

    def _fail(self, why: str) -> None:
        self.why = why + ": launches replayed one by one"
        warnings.warn(f"sparsec CUDA graph: {self.why}", RuntimeWarning, stacklevel=4)


def _graph(launches):
    """A completed CUDA graph of ``launches`` (``(function, configuration, arguments)``),
    captured by launching them into a ``cuda.core`` graph builder."""
    from cuda.core import Device
    from numba import cuda
    dev = Device(cuda.get_current_device().id)
    dev.set_current()
    builder = dev.create_graph_builder()
    # no deferred frees of numba's memory manager while capturing (a cuMemFree synchronizes)
    with cuda.defer_cleanup():
        builder.begin_building()
        try:
            for fn, config, args in launches:
                fn.dispatcher[_with_stream(config, builder)](*args)
        except BaseException:
            try:
                builder.end_building()
            finally:
                builder.close()
            raise
        graph = builder.end_building().complete()
    builder.close()
    return graph
