"""What every command needs: its settings, a client on a checked schema, UsageError.

Each command module imports these, and none imports another command module,
so the commands can be read, and moved, one module at a time.
"""

from __future__ import annotations

import argparse
import os

from jobd.client import Client
from jobd.settings import Settings, config_path, load


class UsageError(Exception):
    """Bad input on the command line."""


def load_settings(args: argparse.Namespace) -> Settings:
    path, explicit = config_path(getattr(args, "config", None), os.environ)
    return load(path, required=explicit)


def open_client(args: argparse.Namespace, check_routines: bool = True) -> Client:
    """A client on a database whose schema is checked: a missing schema is exit 4, not 1."""
    client = Client(settings=load_settings(args), check_routines=check_routines)
    try:
        client.store.check_schema()
    except BaseException:
        client.close()
        raise
    return client
