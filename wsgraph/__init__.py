"""wsgraph: learning in deep weight spaces with PyTorch Geometric.

Networks become graphs (neurons as nodes carrying biases, weights as edge features),
processed by layers exactly equivariant to hidden-neuron permutations.
"""

# The top-level names are wsgraph.core's public ones, listed once, there.
from wsgraph.core import *  # noqa: F403
from wsgraph.core import __all__ as __all__
from wsgraph.core.network_files import load_checkpoint as load_checkpoint  # deprecated name of load_network_file

__version__ = "0.1.0"
