"""OFA search spaces: arch dicts <-> validated canonical subnets <-> arrays, costs, OFA modules.

* :mod:`.space` -- the space definition, sampling and the registry (:func:`get_space`);
* :mod:`.encoding` -- the one arch parser (:class:`ArchParser`), :class:`Subnet` and the
  :class:`Encoded` batch;
* :mod:`.costs` -- analytic MACs, parameters and activation memory;
* :mod:`.building` -- OFA modules (the only part importing torch and ofa).
"""

from .encoding import ARCH_KEYS as ARCH_KEYS
from .encoding import ArchParser as ArchParser
from .encoding import Encoded as Encoded
from .encoding import Subnet as Subnet
from .encoding import arch_from_text as arch_from_text
from .space import SearchSpace as SearchSpace
from .space import get_space as get_space
from .space import list_spaces as list_spaces
from .space import reference_subnet as reference_subnet

__all__ = ["ARCH_KEYS", "ArchParser", "Encoded", "Subnet", "arch_from_text", "SearchSpace",
           "get_space", "list_spaces", "reference_subnet"]
