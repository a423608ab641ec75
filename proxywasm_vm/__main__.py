"""``python -m proxywasm_vm`` runs the ``pwvm`` command."""

import sys

from ._cli import main

sys.exit(main())
