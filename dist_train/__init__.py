"""Everything that runs while training: topology, models, parallelism, trainers, checkpoints, metrics."""
