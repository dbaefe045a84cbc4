"""Training glue: the LightningModule, EMA, callbacks and image generation shared with sample.py."""
