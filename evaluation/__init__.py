"""Evaluation and measurement: sample-quality metrics, the FD/accuracy classifier, sweep reports, and the benchmarks'
timing, diffusers peers and reports (the library code the scripts/ mains call)."""
