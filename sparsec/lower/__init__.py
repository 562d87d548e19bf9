"""Lowering: IR -> kernel plan for a target (CPU, CUDA)."""
