"""`python -m moai_flow_fast`: the `moai-flow-fast` command."""

import sys

from .tools._cli import main

if __name__ == "__main__":
    sys.exit(main())
