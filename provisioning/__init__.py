"""Preparing devices: a ward's enrollment bundles and labels, images carrying a bundle, flashing, Imager lists."""
