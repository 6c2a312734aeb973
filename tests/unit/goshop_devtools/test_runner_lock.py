"""One make run per data directory: the lock and what a second runner is told."""

from __future__ import annotations

import os

import pytest

from goshop_devtools.runner_lock import AlreadyRunning, RunnerLock


def test_a_second_lock_of_a_held_directory_names_the_holders_pid(tmp_path):
    first = RunnerLock(tmp_path)
    first.acquire()
    try:
        with pytest.raises(AlreadyRunning) as refused:
            RunnerLock(tmp_path).acquire(patience=0)
    finally:
        first.release()
    assert refused.value.pid == os.getpid()
    advice = refused.value.advice()
    assert f"another make run (pid {os.getpid()}) is running the shop in {tmp_path}" in advice
    assert f"Ctrl-C in its terminal, or kill {os.getpid()}" in advice
    assert "GOSHOP_DEV_DIR" in advice


def test_a_released_lock_is_taken_whatever_pid_the_file_still_names(tmp_path):
    # A dead runner's file may name a pid that now belongs to someone else:
    # only the lock counts.
    (tmp_path / "runner.lock").write_text("1\n")
    lock = RunnerLock(tmp_path)
    lock.acquire(patience=0)
    assert (tmp_path / "runner.lock").read_text() == f"{os.getpid()}\n"
    lock.release()
    again = RunnerLock(tmp_path)
    again.acquire(patience=0)
    again.release()


def test_the_lock_creates_a_missing_data_directory(tmp_path):
    lock = RunnerLock(tmp_path / "new" / "state")
    lock.acquire(patience=0)
    lock.release()
    assert (tmp_path / "new" / "state" / "runner.lock").exists()
