"""CPU lowering rules: linalg ops (to be written)."""
