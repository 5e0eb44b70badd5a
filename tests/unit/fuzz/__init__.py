"""Fuzz targets: arbitrary input, only AgentkitError escapes, nothing hangs (see tests/support/fuzzing.py)."""
