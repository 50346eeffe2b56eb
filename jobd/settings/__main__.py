"""`python -m jobd.settings` prints the settings reference (docs/settings.md)."""

import sys

from jobd.settings.reference import render_markdown

sys.stdout.write(render_markdown())
