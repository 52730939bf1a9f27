"""The s2s job: the paper's deep LSTM translator's trainer (``trainer``), its batches' model inputs
(``batch``), dev perplexity (``dev_eval``) and the step benchmark (``bench``)."""
