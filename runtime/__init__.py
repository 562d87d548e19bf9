"""The runtime (installed as ``sparsec.runtime``): kernels, executable, memory planner, artifacts."""
