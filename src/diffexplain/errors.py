"""The exception types for errors a user can cause (config values, inputs, files) and for results that must not be
written (non-finite numbers). Both print as one line without a traceback and exit with status 2."""

MAX_VALUE_CHARS = 80


def shorten(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis marks the cut), on one line."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class UserError(ValueError):
    """A bad value the user can fix. The message is one line naming the key, the value and what is allowed."""

    def __init__(self, key: str, value, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={shorten(repr(value))} is invalid: {shorten(allowed, 400)}")


def check(condition: bool, key: str, value, allowed: str) -> None:
    """Raise :class:`UserError` unless ``condition`` holds."""
    if not condition:
        raise UserError(key, value, allowed)


class ResultError(ValueError):
    """A computation produced something that must not become a result (e.g. a non-finite latent or map).

    Printed as one line like :class:`UserError`; the message names the item, the step and the likely cause.
    """
