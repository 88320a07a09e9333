"""The application: what the commands do with the model -- stylize (coarse to fine, colours, logs),
the optimizers, the memory estimate, images in and out, reconstructions, grids and their resumable
cell folders, sheets, progress."""
