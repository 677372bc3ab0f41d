"""``python -m cld_hf.cli``: the same as the ``cld-hf`` command."""

from . import main

raise SystemExit(main())
