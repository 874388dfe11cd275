"""The device agent: capture (with privacy blackout at the source), detect people, run the clinical
apps, and send signed metadata events. Frames live in memory only."""
