"""Inference backends behind one interface (:class:`accelerators.base.Backend`).

The CPU backend (LiteRT) is here now; Hailo, Coral and IMX500 plug into the same interface and
produce the same :class:`accelerators.types.Person`.
"""
