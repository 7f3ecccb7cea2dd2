"""One call for the trainers people already use, each in its own module with its own optional extra.

* :mod:`lr_finder.integrations.transformers`: ``find_lr(trainer)`` for a Hugging Face ``Trainer``
  (``pip install 'lr-finder[transformers]'``).
* :mod:`lr_finder.integrations.lightning`: ``find_lr(module, ...)`` and ``LRFinderCallback`` for Lightning
  (``pip install 'lr-finder[lightning]'``).

Nothing is imported here, so ``import lr_finder.integrations`` never needs either framework.
"""
