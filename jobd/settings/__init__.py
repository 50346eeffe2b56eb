"""jobd's settings: declared once, typed, frozen.

Each setting is a field of a frozen section dataclass, declared with its
default, its parser (which validates), a doc line and whether SIGHUP can
change it. From that one declaration come: the TOML keys (`[pool]
min_workers`), the environment overrides (`JOBD_POOL_MIN_WORKERS`; the
`[jobd]` section drops its name: `JOBD_DATABASE`), the validation messages
and `docs/settings.md` (`python -m jobd.settings`).

`load(path, environ)` is a pure function of the file and the environment;
a reload that fails keeps the running settings (the caller just keeps the
old object). The environment wins over the file.

The package, from the bottom up:

- `declaration`: `setting()` and the value parsers;
- `pools`: the `[pools.NAME]` tables, parsed into `PoolSpec`s;
- `sections`: the section dataclasses and `Settings`, and their JSON form;
- `loading`: `load`, `ConfigError`, and what a reload may change;
- `reference`: the generated `docs/settings.md`.

It imports nothing of jobd but `jobd.policy`, `jobd.schedule` and
`jobd.units`: every part of jobd, the workers included, reads its settings.
"""

from jobd.settings.declaration import setting
from jobd.settings.loading import (
    DEFAULT_CONFIG,
    RESERVED_SCHEDULES,
    ConfigError,
    config_path,
    env_name,
    keep_unreloadable,
    load,
    not_reloadable_changes,
)
from jobd.settings.pools import PoolSpec
from jobd.settings.reference import render_markdown
from jobd.settings.sections import (
    DAY,
    SECTIONS,
    HealthSection,
    JobdSection,
    LimitsSection,
    PoolSection,
    RetentionSection,
    Settings,
    StoreSection,
    from_json,
    to_json,
)

__all__ = [
    "DAY",
    "DEFAULT_CONFIG",
    "RESERVED_SCHEDULES",
    "SECTIONS",
    "ConfigError",
    "HealthSection",
    "JobdSection",
    "LimitsSection",
    "PoolSection",
    "PoolSpec",
    "RetentionSection",
    "Settings",
    "StoreSection",
    "config_path",
    "env_name",
    "from_json",
    "keep_unreloadable",
    "load",
    "not_reloadable_changes",
    "render_markdown",
    "setting",
    "to_json",
]
