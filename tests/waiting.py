"""Polling helper for tests that wait on background threads (no timed assertions)."""

import time


def wait_for(cond, timeout=10.0, interval=0.02):
    """Poll `cond` every `interval` s (longer for a costly check: it competes with what it waits on)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(interval)
    return False
