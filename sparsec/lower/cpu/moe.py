"""CPU lowering rules: moe ops (to be written)."""
