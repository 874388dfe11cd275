"""Preparing devices: enrollment bundles now; SD-card images and flashing later."""
