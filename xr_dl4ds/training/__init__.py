"""Training loops (they see tensors, never xarray objects)."""
