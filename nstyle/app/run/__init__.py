"""A stylize run: the plan (every input and setting checked, the stages and the memory they need), the
network it loads, the weights that mean the same at every size, the stages themselves, colours and masks,
and how a run ends early."""
