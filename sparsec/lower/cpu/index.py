"""CPU lowering rules: index ops (to be written)."""
