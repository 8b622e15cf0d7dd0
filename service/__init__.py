"""The HTTP service people and systems use: the order query API with roles (``kuailv serve``)."""
