"""Editing methods built from the three primitives: denoiser wrappers, start points and callbacks."""
