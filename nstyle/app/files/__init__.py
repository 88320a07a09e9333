"""Files and progress: images in and out, the checks on every output path, the run's JSON log and plot,
the progress line."""
