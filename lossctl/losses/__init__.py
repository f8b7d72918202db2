"""Built-in losses. Importing this package registers every one of them in :mod:`lossctl.registry`."""
from . import regression  # noqa: F401
