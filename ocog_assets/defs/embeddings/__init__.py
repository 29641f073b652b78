"""Find places like this as assets: per dataset the patch encoder, its embeddings in DuckDB,
their HNSW index and the retrieval quality against two baselines."""
