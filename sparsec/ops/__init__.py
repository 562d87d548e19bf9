"""The ``sc`` dialect: every op declared once (shape rule + NumPy reference), and the traced
NumPy-like function API (``sc.ops.softmax(x)``) that records those ops.

Each module declares one family of ops and the functions that emit them:
core (param, constant, cast, iota), elementwise, shape, reduce, linalg, index, nn (norms,
rotary, attention), moe (routing and dispatch), dynamic (nonzero: a data-dependent size).
"""
from ..ir.opdef import REGISTRY, get_opdef  # noqa: F401
from .core import *  # noqa: F401,F403
from .elementwise import *  # noqa: F401,F403
from .shape import *  # noqa: F401,F403
from .reduce import *  # noqa: F401,F403
from .linalg import *  # noqa: F401,F403
from .index import *  # noqa: F401,F403
from .nn import *  # noqa: F401,F403
from .moe import *  # noqa: F401,F403
from .fused import *  # noqa: F401,F403
from .dynamic import *  # noqa: F401,F403
from .sparsity import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
