"""CPU lowering rules: shape ops (to be written)."""
