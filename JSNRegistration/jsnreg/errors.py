"""The one exception type a face shows to its user as a message, never as a traceback."""


class InputError(ValueError):
    """Bad or unusable input (file, spacing, joint position, mask): the message says what and why."""
