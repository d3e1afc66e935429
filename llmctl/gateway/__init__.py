"""The admission-controlling gateway in front of the engine."""
