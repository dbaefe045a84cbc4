"""Command-line tools: short mains over the library (see README "Evaluation", "Benchmarks")."""
