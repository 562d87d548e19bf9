"""One module per Hugging Face architecture family; each exposes ``MODEL_TYPES`` and
``build(config) -> sc.nn.Module`` (see ``sparsec.hf``)."""
