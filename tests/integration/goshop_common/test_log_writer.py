"""Log lines written from a thread of their own (logs.write_in_background), in
a real process: its stderr is what a container runtime or make run reads."""

import json
import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent(
    """
    import logging, sys, threading
    from goshop_common.observability import logs

    logs.configure("INFO")
    logs.write_in_background()
    log = logging.getLogger("goshop.test")

    def burst(worker):
        for n in range(500):
            log.info("line", extra={"worker": worker, "n": n})

    threads = [threading.Thread(target=burst, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed %s", "here", extra={"order_id": "o-1"})
    log.info("last line before exit")
    """
)


def run_program(extra: str = "") -> list[dict]:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM + extra], capture_output=True, text=True, timeout=60, check=True
    )
    return [json.loads(line) for line in result.stderr.splitlines() if line.strip()]


def test_every_line_logged_by_many_threads_is_written_once_and_whole():
    lines = run_program()
    burst = [line for line in lines if line["msg"] == "line"]
    assert sorted((line["worker"], line["n"]) for line in burst) == [(w, n) for w in range(8) for n in range(500)]
    # Each worker's lines keep their order: one queue, one writer.
    for worker in range(8):
        assert [line["n"] for line in burst if line["worker"] == worker] == list(range(500))


def test_an_exception_keeps_its_message_and_traceback_apart():
    (failed,) = [line for line in run_program() if line["level"] == "error"]
    assert failed["msg"] == "failed here"
    assert "ValueError: boom" in failed["exc"]
    assert "Traceback" not in failed["msg"]
    assert failed["order_id"] == "o-1"


def test_the_lines_queued_at_a_clean_exit_are_written():
    # The program ends right after its last call: nothing waits for the writer
    # but the exit itself.
    assert run_program()[-1]["msg"] == "last line before exit"


def test_a_sigterm_stop_through_keyboardinterrupt_loses_no_line():
    extra = textwrap.dedent(
        """
        for n in range(2000):
            log.info("queued", extra={"n": n})
        raise KeyboardInterrupt
        """
    )
    result = subprocess.run([sys.executable, "-c", PROGRAM + extra], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    queued = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert [line["n"] for line in queued if line["msg"] == "queued"] == list(range(2000))
    # The traceback comes after the queued lines, never inside one of them.
    lines = result.stderr.splitlines()
    assert lines[-1] == "KeyboardInterrupt"
    assert lines[-3].startswith("Traceback")


def test_the_calling_thread_only_enqueues_and_the_handlers_come_back_at_stop():
    import logging
    import threading

    from goshop_common.observability import logs

    class Recording(logging.Handler):
        def __init__(self):
            super().__init__()
            self.seen = []

        def emit(self, record):
            self.seen.append((record.getMessage(), threading.current_thread().name))

    root = logging.getLogger()
    saved = root.handlers[:]
    recording = Recording()
    root.handlers[:] = [recording]
    try:
        logs.write_in_background()
        assert recording not in root.handlers
        logging.getLogger("goshop.test").warning("hello %s", "there")
        logs._stop_writer()
        assert root.handlers == [recording]
        (message, thread) = recording.seen[0]
        assert message == "hello there"
        assert thread != threading.current_thread().name
    finally:
        logs._stop_writer()
        root.handlers[:] = saved
