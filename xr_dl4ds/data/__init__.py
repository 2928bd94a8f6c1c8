"""Data pairing, normalization and patch sampling (and the bundled sample file)."""
