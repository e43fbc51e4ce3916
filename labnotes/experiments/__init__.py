"""One experiment page per paper: the runs behind each Evidence section (see common.py)."""
