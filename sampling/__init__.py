"""sample.py's tasks: generation and editing on a loaded checkpoint, and their input/output handling."""
