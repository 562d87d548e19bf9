"""Recorded launches replayed (``runtime/cuda/replay.py``): after ``replay_after`` calls with the
same sizes, a CUDA executable records a call and replays it from then on (one CUDA graph launch
on a GPU; the noted launches one by one under the simulator, which has no graphs).

* replayed calls give the same bits as calls that run the steps, and match the interpreter, for
  new inputs every call (host and device arrays, contiguous or not);
* results kept on the device are the caller's: the next replay does not overwrite them;
* each set of sizes has its own recording; executables that update inputs in place (decode with
  its KV caches) never record; ``replay_after = 0`` turns it off;
* a kernel error found in a replayed call (a bad index) raises ``KernelError`` naming the op,
  and the next call works;
* on a GPU the replay is a CUDA graph (``benchmarks/cuda_check.py`` runs this module there).
Runs in the CUDA test process (``cuda_test_process``)."""
from sparsec.lower.cuda.testing import cuda_test_process

MODE = cuda_test_process()

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import sparsec as sc  # noqa: E402
from sparsec.runtime.cuda import device as D  # noqa: E402
from sparsec.runtime.executable import KernelError  # noqa: E402

H, F = 8, 12


class Net(sc.nn.Module):
    """Embedding, gated MLP, linear: gather (checked), GEMV/GEMM and elementwise kernels."""

    def __init__(self):
        super().__init__()
        self.emb = sc.nn.Embedding(16, H, seed=1)
        self.mlp = sc.nn.MLP(H, F, seed=2)
        self.out = sc.nn.Linear(H, 5, seed=3)

    def forward(self, ids, x):
        return self.out(self.mlp(self.emb(ids) + x))


SPECS = (sc.TensorSpec(("tokens",), "int64"), sc.TensorSpec(("tokens", H), "float32"))


@pytest.fixture(scope="module")
def net():
    m = Net()
    return m, sc.trace(m, *SPECS)


def compiled(graph, replay_after):
    cm = sc.compile(graph, target="cuda", progress=False)
    ex = cm.executables["main"]
    ex.replay_after = replay_after
    return cm, ex


def inputs(seed, tokens):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 16, tokens).astype(np.int64), rng.standard_normal((tokens, H)).astype(np.float32)


def test_replayed_calls_give_the_bits_of_stepped_calls(net):
    _, g = net
    _, ex = compiled(g, 2)
    _, plain = compiled(g, 0)
    for i in range(5):
        ids, x = inputs(i, 3)
        got, want = ex(ids, x)[0], plain(ids, x)[0]
        assert got.tobytes() == want.tobytes(), f"call {i}"
        (ref,) = sc.interpret(g, ids, x)
        assert np.abs(got - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
    (rep,) = ex.replay_report()
    assert rep["sizes"] == {"tokens": 3} and rep["calls"] == 2 and rep["launches"] > 3
    assert plain.replay_report()[0]["launches"] is None and plain.replay_report()[0]["why"] == "not recorded yet"
    if MODE == "device":
        assert rep["graph"] and rep["why"] is None, rep
    else:
        assert not rep["graph"] and "simulator" in rep["why"]


def test_device_inputs_and_results(net):
    from numba import cuda
    _, g = net
    _, ex = compiled(g, 1)
    kept = []
    for i in range(4):
        ids, x = inputs(10 + i, 2)
        wide = np.zeros((2, 2 * H), np.float32)
        wide[:, ::2] = x
        xd = cuda.to_device(wide)[:, ::2] if i % 2 else cuda.to_device(x)  # strided, then contiguous
        (out,) = ex.call(cuda.to_device(ids), xd, to_host=False)
        assert D.is_device_array(out)
        (ref,) = sc.interpret(g, ids, x)
        kept.append((out, ref))
    assert ex.replay_report()[0]["launches"]
    for out, ref in kept:  # each call's device result is its own: later replays did not overwrite it
        assert np.abs(out.copy_to_host() - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())


def test_bf16_model_with_device_inputs():
    """bf16 inputs and results (numba copies them as their uint16 bits)."""
    from numba import cuda
    m = Net().to("bfloat16")
    g = sc.trace(m, SPECS[0], sc.TensorSpec(("tokens", H), "bfloat16"))
    _, ex = compiled(g, 1)
    _, plain = compiled(g, 0)
    for i in range(4):
        ids, x = inputs(20 + i, 2)
        x = x.astype(g.main.args[1].type.dtype.np)
        (out,) = ex.call(cuda.to_device(ids), cuda.to_device(x), to_host=False)
        want = plain(ids, x)[0]
        assert out.copy_to_host().tobytes() == want.tobytes(), f"call {i}"
    assert ex.replay_report()[0]["launches"]


def test_each_set_of_sizes_records_its_own_call(net):
    _, g = net
    _, ex = compiled(g, 1)
    for tokens in (1, 2, 1, 2, 1, 2):
        ids, x = inputs(tokens, tokens)
        (ref,) = sc.interpret(g, ids, x)
        assert np.abs(ex(ids, x)[0] - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
    reports = {r["sizes"]["tokens"]: r for r in ex.replay_report()}
    assert set(reports) == {1, 2} and all(r["launches"] for r in reports.values())


def test_a_bad_index_in_a_replayed_call_names_the_op(net):
    _, g = net
    _, ex = compiled(g, 1)
    ids, x = inputs(0, 2)
    ex(ids, x)
    ex(ids, x)
    assert ex.replay_report()[0]["launches"]
    bad = ids.copy()
    bad[1] = 99
    with pytest.raises(KernelError, match="sc.embedding|sc.gather|index"):
        ex(bad, x)
    (ref,) = sc.interpret(g, ids, x)  # the error slots were reset: the next call runs and is right
    assert np.abs(ex(ids, x)[0] - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())


def test_profile_times_each_launch_and_leaves_the_executable_working(net):
    _, g = net
    _, ex = compiled(g, 5)
    ids, x = inputs(3, 2)
    prof = ex.profile_launches(ids, x, repeat=2)
    (rep,) = ex.replay_report()
    assert len(prof) == rep["launches"] > 3
    assert all(set(p) == {"kernel", "grid", "block", "seconds"} for p in prof)
    assert any("gemv" in p["kernel"] or "gemm" in p["kernel"] for p in prof), [p["kernel"] for p in prof]
    if MODE == "device":
        assert all(p["seconds"] > 0 for p in prof), prof
    for i in range(2):  # the profile repeated kernels on garbage: the next calls recompute from their inputs
        ids, x = inputs(30 + i, 2)
        (ref,) = sc.interpret(g, ids, x)
        assert np.abs(ex(ids, x)[0] - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())


def test_replay_after_zero_never_records(net):
    _, g = net
    _, ex = compiled(g, 0)
    ids, x = inputs(1, 1)
    for _ in range(3):
        ex(ids, x)
    assert ex.replay_report()[0]["launches"] is None


def test_executables_updating_caches_in_place_do_not_record():
    lm = sc.nn.CausalLM(vocab=16, hidden=8, layers=1, heads=2, kv_heads=1, ffn=12, seed=0)
    cm = sc.compile(lm, sc.TensorSpec(("batch", "seq"), "int64"), target="cuda", progress=False)
    dec = cm.executables["decode"]
    dec.replay_after = 1
    cm.generate(np.array([[1, 2]], np.int64), 3)
    assert not dec._replayable()
    assert all(r["launches"] is None for r in dec.replay_report())


@settings(max_examples=4, deadline=None)
@given(st.lists(st.integers(1, 3), min_size=3, max_size=6), st.integers(0, 2 ** 31 - 1))
def test_any_sequence_of_calls_matches_the_interpreter(net, sizes, seed):
    """Whatever the order of sizes, recorded and replayed calls match the reference."""
    _, g = net
    _, ex = compiled(g, 1)
    for k, tokens in enumerate(sizes):
        ids, x = inputs(seed + k, tokens)
        (ref,) = sc.interpret(g, ids, x)
        assert np.abs(ex(ids, x)[0] - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())


# ---------------------------------------------------------------------------------------------
# the capture's control flow with a stand-in for the CUDA graph (the simulator has none): used
# when it reproduces the recorded call's bits, dropped with a warning and the reason otherwise

class FakeGraph:
    """Replays the launches as a graph would; ``spoil`` (a replay): then overwrites its first
    result (a graph computing something else)."""

    def __init__(self, launches, spoil=None):
        self.launches, self.spoil, self.launched = launches, spoil, 0

    def launch(self, stream):
        self.launched += 1
        for fn, config, args in self.launches:
            fn.dispatcher[config](*args)
        if self.spoil is not None:
            r = self.spoil.results[0]
            r.copy_to_device(np.full(r.shape, 7.0, r.dtype))


@pytest.fixture
def fake_graphs(monkeypatch):
    from sparsec.runtime.cuda import replay
    made = []

    def install(spoil=False, fail=None):
        capturing = []
        capture = replay.Replay.capture

        def noting(self, check):
            capturing.append(self)
            return capture(self, check)

        def graph_of(launches):
            if fail is not None:
                raise fail
            made.append(FakeGraph(launches, capturing[-1] if spoil else None))
            return made[-1]
        monkeypatch.setattr(replay, "simulator", lambda: False)   # capture as on a device
        monkeypatch.setattr(replay, "_graph", graph_of)
        monkeypatch.setattr(replay.Replay, "capture", noting)
        monkeypatch.setattr(replay.Replay, "_stream", property(lambda self: None))
        return made
    return install


def test_a_graph_with_the_recorded_bits_is_used(net, fake_graphs):
    _, g = net
    _, ex = compiled(g, 1)
    made = fake_graphs()
    for i in range(4):
        ids, x = inputs(40 + i, 2)
        (ref,) = sc.interpret(g, ids, x)
        assert np.abs(ex(ids, x)[0] - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
    (rep,) = ex.replay_report()
    assert rep["graph"] and rep["why"] is None
    assert len(made) == 1 and made[0].launched == 1 + 2   # the check, then the two replayed calls


def test_a_graph_that_differs_is_dropped_with_the_reason(net, fake_graphs):
    _, g = net
    _, ex = compiled(g, 1)
    fake_graphs(spoil=True)
    ids, x = inputs(50, 2)
    ex(ids, x)
    with pytest.warns(RuntimeWarning, match="differ from the recorded call"):
        ex(ids, x)
    (rep,) = ex.replay_report()
    assert not rep["graph"] and "result 0" in rep["why"] and "one by one" in rep["why"]
    for i in range(2):  # replayed launch by launch: right
        ids, x = inputs(51 + i, 2)
        (ref,) = sc.interpret(g, ids, x)
        assert np.abs(ex(ids, x)[0] - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())


def test_a_failed_capture_is_reported_and_replayed_one_by_one(net, fake_graphs):
    _, g = net
    _, ex = compiled(g, 1)
    fake_graphs(fail=RuntimeError("stream capture unsupported"))
    ids, x = inputs(60, 2)
    ex(ids, x)
    with pytest.warns(RuntimeWarning, match="capture failed: RuntimeError: stream capture unsupported"):
        (got,) = ex(ids, x)
    (ref,) = sc.interpret(g, ids, x)
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
    assert not ex.replay_report()[0]["graph"]
