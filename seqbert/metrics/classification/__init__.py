"""The ``classification`` evaluate module folder: ``classification.py`` (the module) and ``classification_math.py`` (its maths)."""
