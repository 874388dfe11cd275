"""Clinical apps: pure state machines over people and time (a frame's people and a clock in, events out)."""
