"""The one exception type for bad user configuration."""


class ConfigError(ValueError):
    """A config value is missing or invalid. The message names the key, the value and what is allowed."""

    def __init__(self, key: str, value: object, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={value!r} is invalid; allowed: {allowed}")
