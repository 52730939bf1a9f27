"""One trainer per job; the loop machinery they share lives in ``loop.py``."""
