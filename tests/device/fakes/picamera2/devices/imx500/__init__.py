from .imx500 import (
    FULL_SENSOR,
    IMX500,
    FakeNetwork,
    FakePoseNetwork,
    NetworkIntrinsics,
    bright_blob_people,
    pack_output_tensor_info,
)

__all__ = [
    "FULL_SENSOR",
    "IMX500",
    "FakeNetwork",
    "FakePoseNetwork",
    "NetworkIntrinsics",
    "bright_blob_people",
    "pack_output_tensor_info",
]
