"""The application: what the commands do with the model, one room per job.

    run/       a stylize run: plan, network, weighting, stages, colours, masks, memory, stops
    files/     images in and out, output checks, the JSON log and plot, progress
    figures/   reconstructions, the ratio x depth grid, cell folders, contact sheets, sample images
    batch/     many runs on Dask: jobs, cluster, submit, worker, progress
    tiles/     tiled prints: plan, work, blend, run
    video/     stylised video without flicker
"""
