"""The one exception type for errors a user can cause (config values, inputs, files)."""


class UserError(ValueError):
    """A bad value the user can fix. The message is one line naming the key, the value and what is allowed."""

    def __init__(self, key: str, value, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={value!r} is invalid: {allowed}")


def check(condition: bool, key: str, value, allowed: str) -> None:
    """Raise :class:`UserError` unless ``condition`` holds."""
    if not condition:
        raise UserError(key, value, allowed)
