"""Authentication at the bottom of the server: operators (roles, sessions, API tokens) and devices (proofs)."""
