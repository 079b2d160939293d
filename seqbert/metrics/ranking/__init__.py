"""The ``ranking`` evaluate module folder: ``ranking.py`` (the module) and ``ranking_math.py`` (its maths)."""
