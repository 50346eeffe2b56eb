"""The routine decorator, the class form, effective policies (jobd/routines.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

import jobd
from jobd.policy import Policy
from jobd.routines import REGISTRY, JobFailure, Registry, Routine, routine, routine_name
from jobd.settings import LimitsSection, Settings
from tests.unit import sample_routines as sample

MODULE = "tests.unit.sample_routines"


def failure(name: str, attempts: int = 3) -> JobFailure:
    return JobFailure(
        job_id=7,
        routine=name,
        attempts=attempts,
        outcome="error",
        error_type="ValueError",
        message="boom",
        traceback=None,
    )


# -- registration ------------------------------------------------------------


@pytest.mark.parametrize(
    ("registered", "name"),
    [
        (sample.plain, f"{MODULE}:plain"),
        (sample.resize, f"{MODULE}:resize"),
        (sample.Report, f"{MODULE}:Report"),
        (sample.Silent, f"{MODULE}:Silent"),
    ],
)
def test_routines_register_under_module_and_qualname(registered: Any, name: str) -> None:
    assert isinstance(registered, Routine)
    assert registered.name == name
    assert REGISTRY.get(name) is registered
    assert name in REGISTRY.names()
    assert repr(registered) == f"<routine {name}>"


def test_the_public_decorator_is_this_one() -> None:
    assert jobd.routine is routine
    assert jobd.Routine is Routine


def test_a_function_routine_is_still_callable() -> None:
    assert sample.plain(2) == 3
    assert sample.plain(2, y=5) == 7
    assert sample.resize.run("/img.png", width=10) == {"path": "/img.png", "width": 10}


def test_a_class_routine_calls_run_on_one_instance() -> None:
    assert sample.Report.is_class
    assert sample.Report("q3") == "report q3"
    assert sample.Report.run("q4") == "report q4"
    assert sample.Report.failed_hook is not None
    # One instance per process (per worker), however many jobs and hooks it runs.
    assert len(sample.REPORTS_MADE) == 1


def test_decorator_policy_applies() -> None:
    policy = sample.resize.policy
    assert policy.queue == "images"
    assert policy.priority == 3
    assert policy.max_attempts == 5
    assert policy.time_limit == 300.0
    assert policy.memory_limit == 512 << 20
    assert policy.retry_delay == Policy().retry_delay
    assert sample.plain.policy == Policy()
    assert sample.Report.policy.unique is True


def test_registry_catalog_holds_effective_policies() -> None:
    settings = Settings(routines={f"{MODULE}:plain": {"queue": "elsewhere"}})
    catalog = REGISTRY.catalog(settings)
    assert catalog[f"{MODULE}:plain"]["queue"] == "elsewhere"
    assert catalog[f"{MODULE}:resize"] == sample.resize.effective_policy(settings).to_json()
    assert list(catalog) == sorted(catalog)


# -- the effective policy ----------------------------------------------------


LIMITS = LimitsSection(time_limit=100.0, soft_time_limit=90.0, memory_limit=1 << 30)


def test_effective_policy_without_settings_is_the_decorators() -> None:
    assert sample.resize.effective_policy(None) == sample.resize.policy


def test_limits_fill_in_what_the_decorator_leaves_unset() -> None:
    policy = sample.no_limits_declared.effective_policy(Settings(limits=LIMITS))
    assert (policy.time_limit, policy.soft_time_limit, policy.memory_limit) == (
        100.0,
        90.0,
        1 << 30,
    )
    assert policy.retry_delay == 60.0


def test_decorator_wins_over_limits() -> None:
    policy = sample.resize.effective_policy(Settings(limits=LIMITS))
    assert policy.time_limit == 300.0
    assert policy.memory_limit == 512 << 20
    assert policy.soft_time_limit == 90.0  # the decorator did not set it


def test_routine_table_wins_over_decorator_and_limits() -> None:
    settings = Settings(
        limits=LIMITS,
        routines={
            f"{MODULE}:resize": {"time_limit": 30.0, "queue": "fast", "soft_time_limit": None},
            f"{MODULE}:plain": {"max_attempts": 9},
        },
    )
    policy = sample.resize.effective_policy(settings)
    assert policy.time_limit == 30.0
    assert policy.queue == "fast"
    assert policy.soft_time_limit is None
    assert policy.memory_limit == 512 << 20
    assert policy.priority == 3
    assert sample.plain.effective_policy(settings).max_attempts == 9


def test_a_routine_table_for_another_routine_changes_nothing() -> None:
    settings = Settings(routines={"other.module:fn": {"queue": "x"}})
    assert sample.resize.effective_policy(settings) == sample.resize.policy


# -- what cannot be a routine ------------------------------------------------


def test_a_nested_function_is_refused() -> None:
    def local_job() -> None:
        pass

    with pytest.raises(TypeError, match=r"<locals>\.local_job cannot be a routine") as caught:
        routine(local_job)
    assert "top level of an importable module" in str(caught.value)
    assert not any("local_job" in name for name in REGISTRY.names())


def test_a_lambda_is_refused() -> None:
    with pytest.raises(TypeError, match="cannot be a routine"):
        routine(lambda: None)


def test_a_routine_in_main_is_refused() -> None:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec("def script_job():\n    return 1\n", namespace)
    with pytest.raises(TypeError, match=r"__main__:script_job cannot be a routine"):
        routine(queue="q")(namespace["script_job"])
    assert REGISTRY.get("__main__:script_job") is None


def test_an_object_without_a_name_is_refused() -> None:
    with pytest.raises(TypeError, match="has no module and name"):
        routine(5)


def test_routine_name_of_a_module_level_function() -> None:
    assert routine_name(sample.resize.target) == f"{MODULE}:resize"


def test_a_class_without_run_is_refused() -> None:
    namespace: dict[str, Any] = {"__name__": "app.jobs"}
    exec("class NoRun:\n    def go(self):\n        pass\n", namespace)
    with pytest.raises(
        TypeError, match=r"routine class app\.jobs:NoRun needs a run\(\.\.\.\) method"
    ):
        routine(namespace["NoRun"])
    assert REGISTRY.get("app.jobs:NoRun") is None


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ({"queue": "bad queue"}, "@routine on fn.queue: 'bad queue' is not a queue name"),
        ({"time_limit": "5x"}, "@routine on fn.time_limit: '5x' is not a duration"),
        ({"memory_limit": "12Q"}, "@routine on fn.memory_limit: '12Q' is not a size"),
        ({"max_attempts": 0}, "@routine on fn.max_attempts: 0 is below the minimum 1"),
        ({"retry_backoff": 0.5}, "@routine on fn.retry_backoff: 0.5 must be"),
        ({"unique": "perhaps"}, "@routine on fn.unique: 'perhaps' is not a boolean"),
        ({"retries": 3}, "@routine on fn: unknown key 'retries'"),
    ],
)
def test_bad_decorator_policy_is_a_type_error(policy: dict[str, Any], expected: str) -> None:
    namespace: dict[str, Any] = {"__name__": "app.jobs"}
    exec("def fn():\n    pass\n", namespace)
    with pytest.raises(TypeError) as caught:
        routine(**policy)(namespace["fn"])
    assert str(caught.value).startswith(expected)
    assert REGISTRY.get("app.jobs:fn") is None


# -- failure hooks -----------------------------------------------------------


def test_on_failure_hook_of_a_function_routine() -> None:
    hook = sample.resize.failed_hook
    assert hook is sample.resize_failed
    assert hook(failure(sample.resize.name), "/a.png") == f"{MODULE}:resize failed on /a.png"


def test_failed_method_of_a_class_routine() -> None:
    hook = sample.Report.failed_hook
    assert hook is not None
    assert hook(failure(sample.Report.name, attempts=2), "q1") == "report q1 failed after 2"


@pytest.mark.parametrize("registered", [sample.plain, sample.Silent])
def test_no_hook_means_none(registered: Routine[Any, Any]) -> None:
    assert registered.failed_hook is None


def test_a_sealed_registry_answers_from_what_was_registered_at_boot() -> None:
    registry = Registry()
    first = Routine(plain_for_registry, {})
    registry.add(first)
    assert registry.booted(first.name) is first  # not sealed: what is registered now
    registry.seal(["app.jobs"])
    assert registry.modules == ("app.jobs",)
    late = Routine(late_for_registry, {})
    registry.add(late)  # a module a job imported while it ran
    assert registry.get(late.name) is late
    assert registry.booted(late.name) is None
    assert registry.booted(first.name) is first


def test_a_worker_never_imports_the_module_a_job_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobd.errors import UnregisteredRoutine
    from jobd.worker.execute import find_routine

    marker = tmp_path / "imported"
    (tmp_path / "planted_unit_jobs.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nimport jobd\n\n@jobd.routine\ndef x():\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("planted_unit_jobs:x", "this:x", "jobd.examples:nope"):
        with pytest.raises(UnregisteredRoutine, match="is not registered by the modules"):
            find_routine(name)
    assert not marker.exists()
    assert "planted_unit_jobs" not in sys.modules


def plain_for_registry() -> None:
    pass


def late_for_registry() -> None:
    pass
