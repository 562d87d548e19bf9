"""Passes over the sparsec IR (installed as ``sparsec.passes``): pass manager and one file per pass."""
