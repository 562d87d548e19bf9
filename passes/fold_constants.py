"""Pass: fold_constants (being written)."""
