"""Pass: infer_shapes (being written)."""
