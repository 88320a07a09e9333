"""Figures made of many runs: reconstructions from noise (what each layer keeps), the paper's ratio x
depth grid, the resumable folders of cells behind them, contact sheets, and the demo's sample images."""
