"""CPU lowering rules: elementwise ops (to be written)."""
