"""Errors whose message is written for the person using the app; pages show them as they are."""


class InputError(ValueError):
    """The user's input cannot be used as it is; the message says why and what to do."""


class ModelUnavailable(RuntimeError):
    """No source for this model is available here; the message says how to get one."""


class ModelTooLarge(RuntimeError):
    """The model does not fit the memory budget even with everything else evicted."""


class EngineStopped(RuntimeError):
    """A native engine's runner process died (a signal, an abort, an OOM kill); the next request starts a new one.

    Attributes:
        how: what ended it, e.g. ``signal 11, SIGSEGV``.
    """

    def __init__(self, message: str, how: str = "") -> None:
        super().__init__(message)
        self.how = how
