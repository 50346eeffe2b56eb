"""Process tests import their routines by the same name the workers do."""

import sys
from pathlib import Path

HERE = str(Path(__file__).parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

# The tests are the producers of the jobs they enqueue and, as an application
# does, import the routines module (which the client used to import on demand):
# names are resolved here or from the catalog, never by an import in the client.
import jobd_test_routines  # noqa: E402, F401
