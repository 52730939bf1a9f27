"""One module per job of ``python -m launcher.main``: each has ``add_parser`` and ``run``."""
