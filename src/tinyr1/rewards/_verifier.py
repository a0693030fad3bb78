"""Run math-verify in a persistent child process, with a wall-clock deadline per call.

Why a child process: sympy can run for ever (`10^{10^{10^{10}}}`) inside C code that no Python
signal or thread can interrupt, and math-verify's own timeout uses `signal.alarm`, which only works
on the main thread. Killing a process always works, from any thread, and `subprocess.Popen` is
allowed inside daemonic multiprocessing workers, where `multiprocessing` children are not.

    from tinyr1.rewards._verifier import VERIFIER
    VERIFIER.check(r"\\dfrac12", "0.5", timeout=5.0)   # True, False, or None (timed out / failed)

One worker per process, started on first use (its start-up is not charged to the caller's
deadline), shared by all threads under a lock. On a deadline the worker is killed and the next
call starts a fresh one. The worker is killed at interpreter exit (atexit), exits by itself when
its parent dies, and a forked child drops its parent's worker and starts its own.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time

logger = logging.getLogger(__name__)

_WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_verify_worker.py")
# Importing sympy + math-verify takes ~1 s; allow a slow, loaded machine plenty more.
STARTUP_TIMEOUT_S = 60.0
# After a failed start, grade without math-verify for this long instead of retrying every call.
RETRY_AFTER_S = 30.0


class _Worker:
    """One child process plus a thread that turns its stdout into a queue of lines."""

    def __init__(self) -> None:
        # bufsize=0: raw, lock-free pipe objects, which a forked child can close safely.
        self.proc = subprocess.Popen(
            [sys.executable, _WORKER_SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=self._read, name="tinyr1-verify-reader", daemon=True).start()

    def _read(self) -> None:
        fd, buf = self.proc.stdout.fileno(), b""
        try:
            while chunk := os.read(fd, 65536):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    self.lines.put(line)
        except OSError:
            pass
        # Only this thread closes stdout, after end of output: closing it from another thread
        # while a read is pending could let the fd number be reused under this loop.
        self.proc.stdout.close()
        self.lines.put(None)  # end of output: the worker exited or was killed

    def receive(self, deadline: float, request_id: int | None) -> dict | None:
        """The reply to `request_id` (None: the start-up message), or None if the deadline passes
        or the worker dies first. Replies to other requests (from an interrupted call) are skipped.
        """
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                return None
            if line is None:
                return None
            try:
                reply = json.loads(line)
            except ValueError:
                continue
            if isinstance(reply, dict) and reply.get("id") == request_id:
                return reply

    def send(self, obj: dict) -> None:
        # Requests are capped in size by the caller, so this fits in the pipe buffer and does
        # not block even when the worker is busy.
        data = (json.dumps(obj) + "\n").encode("ascii")
        while data:
            data = data[self.proc.stdin.write(data) :]

    def kill(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.kill()
            self.proc.wait(timeout=10)  # reap it: no zombie left behind
        except (OSError, subprocess.TimeoutExpired):
            pass

    def forget_after_fork(self) -> None:
        """In a forked child: close the inherited pipe ends, leave the parent's process alone."""
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        self.proc.returncode = -1  # not our child: keep Popen.__del__ from waiting on it


class Verifier:
    """Thread-safe front end to one worker process; see the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._worker: _Worker | None = None
        self._next_id = 0
        self._retry_at = 0.0
        self.starts = 0  # worker processes started (restarts included)
        self.timeouts = 0  # calls that ran past their deadline

    def check(self, pred: str, ref: str, timeout: float) -> bool | None:
        """Ask math-verify whether `pred` equals `ref`: True/False, or None on timeout/failure."""
        with self._lock:
            worker = self._ensure_worker()
            if worker is None:
                return None
            self._next_id += 1
            request_id = self._next_id
            deadline = time.monotonic() + timeout
            try:
                worker.send({"id": request_id, "pred": pred, "ref": ref})
                reply = worker.receive(deadline, request_id)
            except (OSError, ValueError):
                reply = None
            except BaseException:  # KeyboardInterrupt mid-call: drop the busy worker, re-raise
                self._discard()
                raise
            if reply is None:
                if time.monotonic() >= deadline:
                    self.timeouts += 1
                    logger.debug("math-verify ran past %.3g s; restarting its worker", timeout)
                self._discard()
                return None
            return bool(reply.get("ok"))

    @property
    def pid(self) -> int | None:
        """The worker's process id, or None when none is running."""
        worker = self._worker
        return worker.proc.pid if worker is not None else None

    def close(self) -> None:
        """Stop the worker (it restarts on the next call)."""
        with self._lock:
            self._discard()

    def _shutdown(self) -> None:
        """At interpreter exit: stop the worker, without waiting long on a call in progress."""
        if self._lock.acquire(timeout=1.0):
            try:
                self._discard()
            finally:
                self._lock.release()
        elif self._worker is not None:  # a daemon thread is mid-call: kill under its feet
            try:
                self._worker.proc.kill()
                self._worker.proc.wait(timeout=5)  # reap it ourselves: init may not
            except (OSError, subprocess.TimeoutExpired):
                pass

    def _ensure_worker(self) -> _Worker | None:
        if self._worker is not None and self._worker.proc.poll() is None:
            return self._worker
        self._discard()
        if time.monotonic() < self._retry_at:
            return None
        try:
            worker = _Worker()
        except OSError as e:
            return self._failed_start(f"could not start {sys.executable}: {e}")
        self.starts += 1
        reply = worker.receive(time.monotonic() + STARTUP_TIMEOUT_S, None)
        if not reply or reply.get("ready") is not True:
            worker.kill()
            error = (reply or {}).get("error", f"no answer within {STARTUP_TIMEOUT_S:.0f} s")
            return self._failed_start(str(error))
        self._worker = worker
        return worker

    def _failed_start(self, why: str) -> None:
        self._retry_at = time.monotonic() + RETRY_AFTER_S
        logger.warning(
            "math-verify worker unavailable (%s); answers that are not plain numbers count as "
            "wrong for the next %.0f s",
            why,
            RETRY_AFTER_S,
        )
        return None

    def _discard(self) -> None:
        if self._worker is not None:
            self._worker.kill()
            self._worker = None

    def _after_fork_in_child(self) -> None:
        # The parent's lock may have been held at fork time and its worker is not ours.
        self._lock = threading.Lock()
        if self._worker is not None:
            self._worker.forget_after_fork()
            self._worker = None


VERIFIER = Verifier()
atexit.register(VERIFIER._shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=VERIFIER._after_fork_in_child)
