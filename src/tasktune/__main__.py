"""`python -m tasktune ...`: the same as the `tasktune` command (and what
`torchrun --nproc_per_node N -m tasktune train CONFIG` runs in every process)."""

import sys

from tasktune.cli.main import main

sys.exit(main())
