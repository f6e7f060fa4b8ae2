"""``python -m gfi ...`` (also what ``torchrun -m gfi eval ...`` runs)."""

import sys

from gfi.cli import console_main

sys.exit(console_main())
