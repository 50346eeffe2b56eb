"""Routines: the application's job functions, registered with their policy.

    @jobd.routine(queue="images", max_attempts=5, time_limit="5m")
    def resize(path: str, width: int) -> dict: ...

    @jobd.routine(queue="emails")
    class SendWelcomeEmail:
        def run(self, email: str) -> None: ...
        def failed(self, failure: jobd.JobFailure, email: str) -> None: ...

A routine is named by its import path, `module:qualname`; that name is what
the store keeps. Workers run a job's routine only if it is registered when
they boot, by jobd's built-ins or a module listed in `modules`: a name in
the store never makes a worker import anything. The class form is instantiated
once per worker (no arguments) and its `run` called per job; `failed` is
called once, in a worker, when a job has failed for good. A function
routine gets the same hook with `@resize.on_failure`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar, overload

from jobd.policy import Policy, check_routine_name, parse_policy
from jobd.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class JobFailure:
    """Why a job failed for good; what a `failed` hook receives."""

    job_id: int
    routine: str
    attempts: int
    outcome: str  # "error", "killed", "time_limit_exceeded", ...
    error_type: str | None
    message: str | None
    traceback: str | None


class Routine(Generic[P, R]):
    """A registered routine: callable as the plain function it wraps."""

    def __init__(self, target: Any, declared: Mapping[str, Any]) -> None:
        self.target = target
        self.name = routine_name(target)
        self.declared = dict(declared)
        self.policy = Policy().with_overrides(self.declared)
        self.is_class = inspect.isclass(target)
        self._instance: Any = None
        self._on_failure: Callable[..., Any] | None = None
        if self.is_class and not callable(getattr(target, "run", None)):
            raise TypeError(f"routine class {self.name} needs a run(...) method")

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.run(*args, **kwargs)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<routine {self.name}>"

    def run(self, *args: Any, **kwargs: Any) -> Any:
        if self.is_class:
            return self._object().run(*args, **kwargs)
        return self.target(*args, **kwargs)

    def on_failure(self, hook: Callable[..., Any]) -> Callable[..., Any]:
        """Register `hook(failure, *args, **kwargs)`, run once when a job fails for good."""
        self._on_failure = hook
        return hook

    @property
    def failed_hook(self) -> Callable[..., Any] | None:
        if self.is_class:
            return (
                getattr(self._object(), "failed", None) if hasattr(self.target, "failed") else None
            )
        return self._on_failure

    def effective_policy(self, settings: Settings | None) -> Policy:
        """Defaults < `[limits]` < decorator < `[routines."name"]`."""
        if settings is None:
            return self.policy
        return (
            Policy()
            .with_overrides(settings.limit_defaults())
            .with_overrides(self.declared)
            .with_overrides(settings.routines.get(self.name, {}))
        )

    def _object(self) -> Any:
        if self._instance is None:
            self._instance = self.target()
        return self._instance


def routine_name(target: Any) -> str:
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None)
    if not module or not qualname:
        raise TypeError(f"{target!r} cannot be a routine: it has no module and name")
    if module == "__main__" or "<locals>" in qualname or "<lambda>" in qualname:
        raise TypeError(
            f"{module}:{qualname} cannot be a routine: workers import routines by name, "
            "so define it at the top level of an importable module"
        )
    return check_routine_name(f"{module}:{qualname}")


class Registry:
    """The routines imported into this process, by name.

    A worker template `seal`s the registry once it has imported jobd's
    built-ins and `modules`: from then on, `booted` answers from that set
    alone, so a module a job imports while it runs cannot add routines that
    other jobs then run (a worker never imports a module a job names).
    """

    def __init__(self) -> None:
        self._routines: dict[str, Routine[Any, Any]] = {}
        self._sealed: dict[str, Routine[Any, Any]] | None = None
        self.modules: tuple[str, ...] = ()

    def add(self, routine: Routine[Any, Any]) -> None:
        self._routines[routine.name] = routine

    def get(self, name: str) -> Routine[Any, Any] | None:
        return self._routines.get(name)

    def seal(self, modules: Sequence[str]) -> None:
        """The routines registered so far, by jobd and `modules`, are those this process runs."""
        self._sealed = dict(self._routines)
        self.modules = tuple(modules)

    def booted(self, name: str) -> Routine[Any, Any] | None:
        """The routine `name` as registered at boot (`seal`), else as registered now."""
        return (self._routines if self._sealed is None else self._sealed).get(name)

    def names(self) -> list[str]:
        return sorted(self._routines)

    def catalog(self, settings: Settings | None) -> dict[str, dict[str, Any]]:
        """Every routine's effective policy, as the store's catalog keeps it."""
        return {
            name: routine.effective_policy(settings).to_json()
            for name, routine in sorted(self._routines.items())
        }


REGISTRY = Registry()


@overload
def routine(target: Callable[P, R], /) -> Routine[P, R]: ...


@overload
def routine(target: None = None, /, **policy: Any) -> Callable[[Callable[P, R]], Routine[P, R]]: ...


def routine(target: Any = None, /, **policy: Any) -> Any:
    """Register a function (or a class with `run`) as a routine, with its policy.

    Policy keywords: queue, priority, max_attempts, retry_delay,
    retry_backoff, retry_jitter, retry_max_delay, time_limit,
    soft_time_limit, memory_limit, unique. Durations and sizes may be
    written as in the config file ("5m", "512M").
    """

    def register(fn: Any) -> Routine[Any, Any]:
        name = getattr(fn, "__qualname__", repr(fn))
        try:
            declared = parse_policy(policy, f"@routine on {name}")
        except ValueError as exc:
            raise TypeError(str(exc)) from None
        registered: Routine[Any, Any] = Routine(fn, declared)
        REGISTRY.add(registered)
        return registered

    if target is not None:
        return register(target)
    return register
