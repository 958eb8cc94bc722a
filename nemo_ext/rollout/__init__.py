"""MagpieTTS rollouts decoded by this project: each frame through the decoder once."""
