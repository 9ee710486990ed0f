"""Errors whose message is written for the person using the app; pages show them as they are."""


class InputError(ValueError):
    """The user's input cannot be used as it is; the message says why and what to do."""


class ModelUnavailable(RuntimeError):
    """No source for this model is available here; the message says how to get one."""


class ModelTooLarge(RuntimeError):
    """The model does not fit the memory budget even with everything else evicted."""
