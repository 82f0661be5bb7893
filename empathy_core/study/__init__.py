"""The study: the dataset and its rules, the detection experiment, the steering sweep, judges, metrics, precompute."""
