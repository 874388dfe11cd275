"""The system image on the device: its two slots and how the Raspberry Pi firmware switches between them.

- :mod:`firmware.system.raucconf`: the image's partition table (rpi-image-gen's ``image-rota`` layout), the slot
  pairs it holds, and RAUC's ``system.conf`` rendered from it (the image build writes it to ``/etc/rauc``).
- :mod:`firmware.system.autoboot`: the firmware's ``autoboot.txt`` (its one A/B form, parsed strictly) and replacing it
  atomically on its FAT.
- :mod:`firmware.system.tryboot`: RAUC's custom bootloader backend on ``autoboot.txt`` and the Pi's one-shot
  ``tryboot`` reboot (``python -m firmware.system.tryboot <command>``).
"""
