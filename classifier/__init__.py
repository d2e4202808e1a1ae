"""Text understanding: spelling correction, category and priority classification.

``str`` in, :class:`Correction` / :class:`Classification` out; nothing here does I/O
beyond loading its model files.
"""

from classifier.base import Classification, Classifier, Correction, Corrector, Edit

__all__ = ["Classification", "Classifier", "Correction", "Corrector", "Edit"]
