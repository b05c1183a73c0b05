"""The per-world progress display of worker processes (core.progress)."""

from __future__ import annotations


def test_a_lost_progress_display_does_not_fail_the_world():
    """Tester s10 #7: killing the progress manager failed the run with a raw ConnectionResetError."""
    from counterfeed.core.progress import DayReporter

    class Gone:
        def put(self, item):
            raise ConnectionResetError(104, "Connection reset by peer")

    report = DayReporter("ab", Gone(), step=0.25)
    report(0.5)  # the queue's process is gone: no error, no more attempts
    assert report.sink is None
    report(1.0)
