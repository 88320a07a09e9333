"""The model: VGG-19's layer table (``arch.py``), the network over an engine (``vgg.py``), the style
transfer objective (``objective.py``) and the gradient checks (``gradcheck.py``)."""
