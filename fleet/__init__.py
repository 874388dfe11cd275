"""The fleet server: enrollment, device identity, signed event intake and the web console."""
