"""A stylize run: its settings (every option declared once: ``settings.py``), the plan (every input and
setting checked, the stages and the memory they need), the network it loads from a weights file, the
weights that mean the same at every size, the stage loop every picture runs (``stages.py``), colours and
masks, and how a run ends early."""
