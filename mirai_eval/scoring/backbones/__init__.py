"""Network architectures the scoring dimensions run, with the parameter names of the official weights."""
