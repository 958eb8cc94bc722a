"""Development tooling for nemo_ext: fixtures, benchmarks, converters, schema pinning, W&B file reading.

The runtime package (nemo_ext) never imports this package (tests/test_architecture.py checks the import graph);
scripts and tests do."""
