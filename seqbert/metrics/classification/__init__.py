"""The ``classification`` evaluate module folder: ``classification.py`` and its maths, ``classification_math.py``."""
