"""The GEMV's launch geometry per shape (``runtime.cuda.moe.gemv_geometry``), in the main test
process (no simulator): a pure function of the shapes and of the threads the device holds
(``launch.resident_threads``; 132 SMs x 2048 threads assumed without a device). The kernels in
these geometries are checked on the simulator (``test_cuda_moe.py`` / ``test_cuda_quant.py``
``..._in_wide_geometries``)."""
from hypothesis import given
from hypothesis import strategies as st

from sparsec.runtime.cuda import launch
from sparsec.runtime.cuda import moe as M


def threads(N, active, g):
    lanes, cols, _ = g
    return -(-N // cols) * active * lanes * cols


@given(st.integers(1, 20000), st.integers(1, 128), st.integers(1, 20000), st.integers(1, 600))
def test_geometry_invariants(N, active, units, rows):
    g = M.gemv_geometry(N, active, units, rows)
    lanes, cols, rb = g
    assert lanes in (32, 64, 128, 256)
    assert rb == (1 if rows <= active else M.GEMV[2])      # one accumulator where one row per expert
    assert lanes * cols == max(128, lanes)                  # 128-thread blocks (256 at 256 lanes)
    if lanes > 32:  # widened only while short of two device-fulls, keeping the loads per thread
        assert N * active * (lanes // 2) < 2 * launch.resident_threads()
        assert units >= lanes * M.GEMV_MIN_LOADS
    if lanes < 256:  # and as far as that allows
        assert threads(N, active, g) >= 2 * launch.resident_threads() or units < 2 * lanes * M.GEMV_MIN_LOADS


def test_one_token_mixtral_layer_on_an_h200_sized_device(monkeypatch):
    monkeypatch.setattr(launch, "_resident", 132 * 2048)
    # f32 in 16-byte loads (K / 4 per row): gate/up (2816 columns, K 1024) and down (1024
    # columns, K 2816) of 2 experts
    assert M.gemv_geometry(2816, 2, 256, 2) == (128, 1, 1)
    assert M.gemv_geometry(1024, 2, 704, 2) == (256, 1, 1)
    # q8_0 in 16-byte loads (4 words, 16 weights): gate/up keep 2 loads a thread; down widens
    assert M.gemv_geometry(2816, 2, 64, 2) == (32, 4, 1)
    assert M.gemv_geometry(1024, 2, 176, 2) == (64, 2, 1)
    # a few tokens (up to 4 rows per expert): 4 accumulators, the weights read once
    assert M.gemv_geometry(2816, 8, 256, 24) == (32, 4, 4)
    # without shapes: the default
    assert M.gemv_geometry() == M.GEMV


@given(st.integers(1, 5000), st.integers(1, 128))
def test_gemm_geometry_invariants(rows, active):
    """The GEMM's row tile is the smallest of ``GEMM_ROW_TILES`` holding the mean rows per
    active expert (64 beyond); blocks stay a power of two (``locate_tile``'s prefix sum) of 128
    or 256 threads, and the tiles fit the 48 KB of static shared memory with f64 accumulators."""
    BM, BN, BK, TM, TN = M.gemm_geometry(rows, active)
    per = -(-rows // active)
    assert BM in M.GEMM_ROW_TILES
    assert BM >= per or BM == M.GEMM_ROW_TILES[-1]
    assert all(b < per for b in M.GEMM_ROW_TILES if b < BM)
    assert (BN, BK, TN) == (M.GEMM[1], M.GEMM[2], M.GEMM[4])
    assert BM % TM == 0 and BN % TN == 0
    nt = (BN // TN) * (BM // TM)
    assert nt in (128, 256) and nt & (nt - 1) == 0
    shared = 8 * (BK * (BM + 1) + 2 * BK * (BN + 1) + nt + 2)
    assert shared <= 48 * 1024


def test_gemm_row_tiles_for_the_benchmark_layers():
    # Qwen3-30B-A3B-shaped, 128 tokens, top-8 of 128 experts: ~8 rows per expert
    assert M.gemm_geometry(1024, 128) == (8, 64, 16, 1, 4)
    # Mixtral-shaped, 128 tokens, top-2 of 8: 32 rows per expert
    assert M.gemm_geometry(256, 8) == (32, 64, 16, 2, 4)
    # a long prefill: the widest tile
    assert M.gemm_geometry(4096, 8) == M.GEMM
    assert M.gemm_geometry() == M.GEMM
