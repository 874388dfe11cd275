"""Signed OTA model updates on the device: the TUF client, resumable downloads, A/B model slots, self-test."""
