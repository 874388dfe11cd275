"""Put on a child process's PYTHONPATH with ``$FAKE_EDGETPU=1``: Python imports ``sitecustomize`` at start-up, and
this installs the fake Edge TPU (tests/device/ota_accel_world.py) before the OTA self-test runs, as a USB
Accelerator plugged into the machine would be there for every process."""

import os

if os.environ.get("FAKE_EDGETPU") == "1":
    from tests.device.ota_accel_world import install_fake_edgetpu

    install_fake_edgetpu()
