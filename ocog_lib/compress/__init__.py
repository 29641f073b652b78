"""A learned image codec with real bitstreams, and hash codes from its quantised latents
(SCI-CBIR: Sumbul, Xiang, Demir, IEEE TGRS 2022): retrieval straight from the compressed
archive, without decoding a pixel."""
