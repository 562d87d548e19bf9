"""CUDA runtime: numba.cuda kernels by op group, device memory, and the CUDA executable.

Nothing here is imported by the CPU path: ``numba.cuda`` is loaded only for ``target="cuda"``.
"""
