"""Signed OTA model updates on the server: the TUF repository and model library, and staged rollouts."""
