"""Segmentation training on streamed COGs: a compact U-Net, loader configs, a model store."""
