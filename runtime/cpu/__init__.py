"""CPU kernels: Numba-compiled functions (and llvmlite-generated code) the CPU lowering rules call."""
