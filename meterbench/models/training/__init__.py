"""meterbench.models.training: training of the shipped readers (needs the ``[train]`` extra).

Run ``python -m meterbench.models.train --help``."""
