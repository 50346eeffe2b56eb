"""Signals become events in the selector loop; handlers only record."""

from __future__ import annotations

import os
import selectors
import signal

from jobd.supervisor.signals import SignalWatch


def test_a_raised_signal_wakes_the_selector_and_is_recorded_in_order() -> None:
    watch = SignalWatch((signal.SIGUSR1, signal.SIGUSR2))
    selector = selectors.DefaultSelector()
    selector.register(watch, selectors.EVENT_READ)
    try:
        assert selector.select(0) == []
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGUSR1)
        assert selector.select(5), "the wakeup fd did not become readable"
        assert watch.take() == [signal.SIGUSR1, signal.SIGUSR2, signal.SIGUSR1]
        assert watch.take() == []
    finally:
        selector.close()
        watch.close()


def test_close_restores_the_previous_handlers() -> None:
    before = signal.getsignal(signal.SIGUSR1)
    watch = SignalWatch((signal.SIGUSR1,))
    assert signal.getsignal(signal.SIGUSR1) != before
    watch.close()
    assert signal.getsignal(signal.SIGUSR1) == before
