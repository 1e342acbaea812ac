"""User-facing errors: the CLI prints their message on one line and exits non-zero."""


class FlexorError(Exception):
    """Base class of every error that is the user's input, not a bug."""


class PackageError(FlexorError, ValueError):
    """A ``.flexor.npz`` package is malformed; the message names the member."""


class InputError(FlexorError, ValueError):
    """An input array does not match the package's declared input format."""


class BuildError(FlexorError, ValueError):
    """A build parameter cannot work for the package being built."""
