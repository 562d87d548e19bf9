"""CPU lowering rules: nn ops (to be written)."""
