"""Generations: one version of the config and the code each, with its template.

The first generation starts with the master; each SIGHUP boots a new one
beside it (`pending`) whose workers stand by until enough have booted, then
take over (`promote`) while the old generation's workers finish what they
hold. A template is the process that imported a generation's code and
forks its workers (jobd/worker/template.py); here it is started, read,
restarted after a death and stopped.
"""

from __future__ import annotations

import contextlib
import selectors
from dataclasses import dataclass, field
from typing import Any

from jobd.settings import Settings
from jobd.supervisor.children import Launcher, Template


@dataclass(eq=False)
class Generation:
    """One version of the config and the code: a template and the workers it forks."""

    number: int
    settings: Settings
    template: Template | None = None
    ready: bool = False
    catalog: dict[str, dict[str, Any]] = field(default_factory=dict)
    restart_due: float | None = None  # monotonic: restart its template, which died
    proven: bool = False  # a worker of it has booted: its code and config can

    def min_workers(self) -> int:
        """The workers it needs booted to run (or to take over)."""
        return sum(pool.min_workers for pool in self.settings.pool_specs())


class Generations:
    def __init__(self, launcher: Launcher, selector: selectors.BaseSelector) -> None:
        self.launcher = launcher
        self.selector = selector
        self.count = 0
        self.current = Generation(0, Settings())
        self.pending: Generation | None = None  # a reload being booted

    def start(self, settings: Settings) -> Generation:
        """The first generation, from the settings the master started with."""
        self.current = self._new(settings)
        return self.current

    def begin(self, settings: Settings) -> Generation:
        """A reload's generation, booting beside the current one."""
        assert self.pending is None, "a pending generation is aborted first"
        self.pending = self._new(settings)
        return self.pending

    def promote(self) -> Generation:
        """The pending generation takes over; the old one, whose template stops."""
        assert self.pending is not None
        old, self.current, self.pending = self.current, self.pending, None
        self.stop_template(old)
        return old

    def drop_pending(self) -> Generation:
        pending = self.pending
        assert pending is not None
        self.pending = None
        self.stop_template(pending)
        return pending

    def _new(self, settings: Settings) -> Generation:
        self.count += 1
        generation = Generation(self.count, settings)
        self.start_template(generation)
        return generation

    def start_template(self, generation: Generation) -> None:
        generation.restart_due, generation.ready = None, False
        template = self.launcher.start_template(generation.settings, generation.number)
        generation.template = template
        self.selector.register(template, selectors.EVENT_READ, generation)

    def stop_template(self, generation: Generation) -> None:
        if generation.template is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(generation.template)
            generation.template.stop()
            generation.template = None

    def template_pids(self) -> set[int]:
        return {
            g.template.pid for g in (self.current, self.pending) if g is not None and g.template
        }

    def close(self) -> None:
        for generation in (self.current, self.pending):
            if generation is not None:
                self.stop_template(generation)
