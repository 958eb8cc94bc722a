"""Recipe logic, one module per stage. Each takes a composed DictConfig, so it runs with or without Hydra."""
