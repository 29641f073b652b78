"""Embeddings per location: a compact encoder trained on streamed patches, vectors keyed by
H3 cell, exact and approximate "find places like this" search, retrieval quality."""
