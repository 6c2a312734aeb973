"""``make soak``'s per-process sampling (bench/bench_soak.py) read from a real
process's /proc: its memory, descriptors and threads, as it holds them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import bench_module

soak = bench_module("bench_soak")

HOLDER = textwrap.dedent(
    """
    import sys, threading
    ballast = bytearray(64 * 1024 * 1024)
    for i in range(len(ballast) // 4096):
        ballast[i * 4096] = 1  # touched: resident, not just reserved
    files = [open(sys.executable, "rb") for _ in range(12)]
    stop = threading.Event()
    threads = [threading.Thread(target=stop.wait) for _ in range(5)]
    for thread in threads:
        thread.start()
    print("ready", flush=True)
    sys.stdin.readline()
    stop.set()
    """
)


@pytest.fixture
def holder():
    process = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "ready"
        yield process
    finally:
        process.stdin.close()
        process.wait(10)


def test_a_process_is_sampled_with_its_resident_memory_descriptors_and_threads(holder):
    found = soak.process_series("holder", [holder.pid])
    assert found["rss_mb[holder]"] >= 64
    assert found["fds[holder]"] >= 12 + 3  # the files, stdin, stdout, stderr
    assert found["threads[holder]"] == 6  # the main thread and five waiting


def test_proportional_memory_counts_a_process_resident_pages(holder):
    found = soak.process_series("holder", [holder.pid], proportional=True)
    assert found["rss_mb[holder]"] >= 64


def test_descriptors_on_files_under_a_directory_are_counted_apart_from_the_others(holder):
    everything = soak.process_series("holder", [holder.pid])
    found = soak.process_series("holder", [holder.pid], files_under=Path(os.path.realpath(sys.executable)).parent)
    assert found["file_fds[holder]"] >= 12  # the interpreter, opened twelve times
    assert found["fds[holder]"] == everything["fds[holder]"] - found["file_fds[holder]"]
    assert found["fds[holder]"] >= 3  # stdin, stdout, stderr stay judged


def test_a_role_whose_processes_are_gone_has_no_samples(holder):
    holder.stdin.close()
    holder.wait(10)
    assert soak.process_series("holder", [holder.pid]) == {}
