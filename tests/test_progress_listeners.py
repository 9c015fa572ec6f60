"""The one progress-listener mechanism: add, remove, a broken listener never stops the others."""

from __future__ import annotations

from prefect_ombudsman.executors.datagen import ROW_LISTENERS
from prefect_ombudsman.flows.runner import LISTENERS
from prefect_ombudsman.progress_listeners import Listeners


def test_listeners_are_called_in_order_until_removed():
    channel: Listeners[[str, int]] = Listeners("test")
    seen: list[tuple[str, str, int]] = []
    remove_a = channel.add(lambda name, n: seen.append(("a", name, n)))
    channel.add(lambda name, n: seen.append(("b", name, n)))
    assert channel
    channel.notify("x", 1)
    remove_a()
    channel.notify("y", 2)
    assert seen == [("a", "x", 1), ("b", "x", 1), ("b", "y", 2)]


def test_a_broken_listener_is_skipped_and_the_others_still_hear():
    channel: Listeners[[int]] = Listeners("test")
    heard: list[int] = []

    def broken(n: int) -> None:
        raise RuntimeError("bar gone")

    channel.add(broken)
    channel.add(heard.append)
    channel.notify(7)
    assert heard == [7]


def test_a_listener_may_remove_itself_while_being_notified():
    channel: Listeners[[int]] = Listeners("test")
    heard: list[int] = []

    def once(n: int) -> None:
        heard.append(n)
        remove()

    remove = channel.add(once)
    channel.notify(1)
    channel.notify(2)
    assert heard == [1] and not channel


def test_job_and_row_progress_are_channels_of_the_same_mechanism():
    assert isinstance(LISTENERS, Listeners) and isinstance(ROW_LISTENERS, Listeners)
    assert not LISTENERS and not ROW_LISTENERS  # nothing left registered by imports
