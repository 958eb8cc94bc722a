"""GRPO's seams: the loss types (losses.py), the reward terms (reward_terms.py) and the advantage computation
(advantages.py). Declarations here are pure Python, so validation reads them before torch is imported."""
