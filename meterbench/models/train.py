"""``python -m meterbench.models.train``: the training command (``models/training/train.py``)."""

from meterbench.models.training.train import main

if __name__ == "__main__":
    raise SystemExit(main())
