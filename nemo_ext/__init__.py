"""MagpieTTS preference-optimization extensions: configurable Whisper dtype, frozen reward models,
memory telemetry. Importing this package has no side effects (nothing is patched, nothing is loaded)."""

__version__ = "0.1.0"
