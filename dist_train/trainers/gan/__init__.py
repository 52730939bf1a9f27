"""The gan job: the adversarial nets' trainer (``trainer``), image batches (``data``), sample grids
(``samples``) and the step benchmark (``bench``)."""
