"""Typed, frozen settings parsed once from the composed config, at the recipe's edge, before any model is built.

Everything in this package is pure Python on top of OmegaConf: it imports neither torch, Lightning nor NeMo, so a
bad value is refused in well under a second (benchmarks/config_check.md). The schemas that Lightning and NeMo own
(the Trainer's arguments, NeMo's ExpManagerConfig, the `model.*` keys NeMo reads) are pinned here and re-checked
against the installed packages by tests (tests/test_settings_schemas.py, tests/test_model_keys.py)."""
