"""CPU lowering rules: reduce ops (to be written)."""
