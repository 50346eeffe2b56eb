"""The generations' templates and the reload protocol: boot beside, then take over.

A generation is booted by its template (generations.py): the template
imports the code, reports the routine catalog, forks workers on request.
The first generation is started with the master; a reload boots a new one
beside the running one, its workers standing by (no jobs), and once
`min_workers` of them have booted it takes over (`maybe_commit`): the
catalog and settings become the running ones, each pool's size starts again
(sizes.py), the old workers are retired and finish what they hold. A reload
that cannot boot (its template reports an error or dies while importing, or
a worker of it dies while booting) is aborted: its workers are killed and
the running generation stays. What the master must act on is an event.

`fresh_settings` is the master's half: the config read again, with what a
reload cannot change kept at its running value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from jobd.settings import ConfigError, Settings, keep_unreloadable
from jobd.supervisor.catalog import Catalog
from jobd.supervisor.crew import Crew
from jobd.supervisor.events import BootFailed, CatalogReady, ReloadCommitted, ReloadFailed
from jobd.supervisor.generations import Generation, Generations
from jobd.supervisor.respawn import CrashBackoff
from jobd.supervisor.sizes import PoolSizes
from jobd.wire import Malformed

log = logging.getLogger("jobd.master")


def fresh_settings(running: Settings, load: Callable[[], Settings] | None) -> Settings | str:
    """The settings a reload would run, or why there are none."""
    if load is None:
        return "no config to reload"
    try:
        fresh = load()
    except ConfigError as exc:
        return str(exc)
    fresh, fixed = keep_unreloadable(running, fresh)
    for name in fixed:
        log.warning("reload: %s changed but needs a restart; keeping the running value", name)
    return fresh


class Reloads:
    def __init__(
        self,
        crew: Crew,
        generations: Generations,
        catalog: Catalog,
        sizes: PoolSizes,
        respawn: CrashBackoff,
    ) -> None:
        self.crew = crew
        self.generations = generations
        self.catalog = catalog  # set here from each generation's template
        self.sizes = sizes
        self.respawn = respawn

    def generation(self, number: int) -> Generation:
        """The generation a worker belongs to (the pending one, or the running one)."""
        pending = self.generations.pending
        if pending is not None and pending.number == number:
            return pending
        return self.generations.current

    def begin(self, settings: Settings) -> None:
        """Boot a new generation beside the current one (see `maybe_commit`)."""
        if self.generations.pending is not None:
            self.abort("superseded by a newer reload", quiet=True)
        self.generations.begin(settings)

    def on_template_readable(self, generation: Generation, spawning: bool) -> list[tuple[int, int]]:
        """What the template said; the workers it forked, (slot, pid), for the workforce."""
        assert generation.template is not None
        forked: list[tuple[int, int]] = []
        try:
            messages = generation.template.receive()
            if messages is None:
                self._template_gone(generation, spawning)
                return []
            for message in messages:
                op = message.get("op")
                if op == "ready":
                    catalog = message["catalog"]
                    if not isinstance(catalog, dict):
                        raise Malformed(f"a catalog that is not an object: {catalog!r:.80}")
                    self._template_ready(generation, catalog)
                elif op == "boot_error":
                    self.boot_failed(generation.number, str(message.get("error")))
                elif op == "forked":
                    forked.append((int(message["slot"]), int(message["pid"])))
        except (Malformed, KeyError, TypeError, ValueError) as exc:
            # The template is jobd's own process: bytes it did not mean are a fault
            # of its own, never a reason for the master to stop. It is stopped, as if
            # it had exited (its generation's workers live on).
            why = exc if isinstance(exc, Malformed) else f"a message without {exc}"
            log.error("template of generation %d: malformed message: %s", generation.number, why)
            self._template_gone(generation, spawning)
        return forked

    def _template_gone(self, generation: Generation, spawning: bool) -> None:
        was_ready = generation.ready
        self.generations.stop_template(generation)
        generation.ready = False
        if not was_ready:
            self.boot_failed(generation.number, "the worker template exited while importing")
        elif generation is self.generations.current and spawning:
            log.warning("the worker template died; starting a new one")
            self.crash_loop_death()
            generation.restart_due = self.respawn.not_before

    def crash_loop_death(self) -> None:
        pool = self.crew.settings.pool
        self.respawn.crashed(self.crew.clock.monotonic(), pool.crash_window, pool.crash_backoff_max)

    def _template_ready(self, generation: Generation, catalog: dict[str, dict[str, Any]]) -> None:
        generation.ready = True
        generation.catalog = catalog
        log.info(
            "worker template ready: generation %d, %d routines", generation.number, len(catalog)
        )
        if generation is self.generations.current:
            self._use_catalog(catalog)

    def _use_catalog(self, catalog: dict[str, dict[str, Any]]) -> None:
        self.catalog.use(catalog)
        self.crew.events.append(CatalogReady(catalog))

    def boot_failed(self, generation: int, reason: str) -> None:
        pending = self.generations.pending
        if pending is not None and generation == pending.number:
            self.abort(reason)
        else:
            self.crew.events.append(BootFailed(reason))

    def maybe_commit(self) -> None:
        """The new generation has booted enough workers: it takes over."""
        pending = self.generations.pending
        if pending is None or self.crew.booted(pending.number) < pending.min_workers():
            return
        old = self.generations.promote()
        crew = self.crew
        crew.settings = pending.settings
        self.sizes.reset(pending.settings.pool_specs(), crew.clock.monotonic())
        for worker in list(crew.workers.values()):
            if worker.generation == pending.number:
                worker.standby = False
            else:
                crew.retire(worker)
        self._use_catalog(pending.catalog)
        log.info("reloaded: generation %d took over from %d", pending.number, old.number)
        crew.events.append(ReloadCommitted(pending.settings))

    def abort(self, reason: str, quiet: bool = False) -> None:
        """A reload that cannot boot: its workers go, the running generation stays."""
        pending = self.generations.drop_pending()
        for worker in list(self.crew.workers.values()):
            if worker.generation == pending.number:
                self.crew.terminate(worker, "interrupted", "reload aborted", grace=0.0)
        if not quiet:
            self.crew.events.append(ReloadFailed(reason))
