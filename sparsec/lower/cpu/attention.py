"""CPU lowering rules: attention ops (to be written)."""
