"""An idle capture (connected, the feed silent) sleeps: each process wakes a few times a
second, not every 10-100 ms (issue 11: idle CPU <= 2 ms/s per process). Wake-ups are counted
(voluntary context switches of every thread), not CPU time, so a busy machine does not flake it."""

from __future__ import annotations

from ticktape.bench.feed import idle


def test_an_idle_capture_wakes_a_few_times_a_second() -> None:
    fig = idle(2.0)
    wakes = fig["idle_wakeups_per_s_by_process"]
    # session 4: writer ~18/s (a 65 ms fill check, a 0.5 s parent poll), ingest 12/s (a 0.1 s
    # watchdog, the parent poll), supervisor 8/s (a 0.2 s log-sink timeout, ...); session 5:
    # ingest 2.5/s (a 0.4 s quiet watchdog), supervisor 3/s (the metrics server's 0.5 s poll)
    assert wakes["writer"] <= 10, fig
    assert wakes["ingest"] <= 2, fig
    assert wakes["supervisor"] <= 2, fig
