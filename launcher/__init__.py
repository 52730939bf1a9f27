"""The command line: ``python -m launcher.main <job> ...``."""
