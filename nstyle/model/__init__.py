"""The model: VGG-19's layer table (``arch.py``), the network over an engine (``vgg.py``), the loss terms
(``terms/``: one module per term and their registry), the style transfer objective as their weighted
sum (``objective.py``) and the gradient checks (``gradcheck.py``)."""
