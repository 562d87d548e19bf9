"""Pass: fuse_elementwise (being written)."""
