"""``python -m gfi ...`` (also what ``torchrun -m gfi eval ...`` runs)."""

import sys

from gfi.cli import main

sys.exit(main())
