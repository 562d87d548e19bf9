"""Pass: canonicalize (being written)."""
