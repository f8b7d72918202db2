"""Built-in losses. Importing this package registers every one of them in :mod:`lossctl.registry`."""
from . import regression  # noqa: F401
from . import binary, multiclass  # noqa: F401
from . import overlap, embedding  # noqa: F401
from . import grads  # noqa: F401,E402  (keep last: attaches analytic gradients to the losses above)
