"""What ``make run``'s supervisor does with a failed /live, decided on its loop
(no processes, no sockets: a stand-in for each, and the signals recorded)."""

from __future__ import annotations

import io
import signal
import time
from pathlib import Path

import pytest

from goshop_devtools import supervisor
from goshop_devtools.console import Console
from goshop_devtools.supervisor import Spec, Supervisor

REASON = "no progress for 62 s (14 events behind)"


class Running:
    """A stand-in for a child's Popen: running until ``code`` is set."""

    def __init__(self, pid: int):
        self.pid = pid
        self.code: int | None = None

    def poll(self) -> int | None:
        return self.code


@pytest.fixture
def signals(monkeypatch) -> list[tuple[int, int]]:
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(supervisor.os, "killpg", lambda pid, signum: sent.append((pid, signum)))
    return sent


@pytest.fixture
def output() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def shop(output) -> Supervisor:
    spec = Spec("payments-consumer", "goshop_payments.consumer", (), "http://127.0.0.1:1/ready", live_url="…/live")
    console = Console(output, "console", color=False, names=[spec.name])
    shop = Supervisor([spec], env={}, cwd=Path(), console=console, run_dir=Path())
    (child,) = shop.children
    child.popen, child.generation, child.started, child.ready = Running(4242), 2, time.monotonic() - 70, True
    return shop


def test_a_process_failing_its_live_is_stopped_as_on_ctrl_c_and_restarted_after_its_back_off(shop, signals, output):
    (child,) = shop.children
    shop.events.put(("not live", child, 2, REASON))
    shop._drain_events()
    assert output.getvalue().endswith(f"| ERROR payments-consumer failed /live: {REASON}; restarting\n")
    assert signals == [(4242, signal.SIGTERM)]
    # Still running at the end of its grace: killed.
    shop._check(child, child.kill_at)
    assert signals[-1] == (4242, signal.SIGKILL)
    child.popen.code = -signal.SIGKILL
    now = time.monotonic()
    shop._check(child, now)
    assert child.popen is None
    assert child.restart_at == now + supervisor.FIRST_DELAY
    assert "ERROR payments-consumer killed by SIGKILL (pid 4242, up 70.0 s); restarting in 1 s\n" in output.getvalue()


@pytest.mark.parametrize("state", ["an earlier generation", "being reloaded", "exited"])
def test_a_failed_live_changes_nothing_when_it_is_no_news(shop, signals, output, state):
    (child,) = shop.children
    generation = 1 if state == "an earlier generation" else 2
    if state == "being reloaded":
        child.asked = "reload"
    if state == "exited":
        child.popen.code = 1
    shop.events.put(("not live", child, generation, REASON))
    shop._drain_events()
    assert signals == []
    assert output.getvalue() == ""
