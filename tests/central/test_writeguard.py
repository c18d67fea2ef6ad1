"""The write guard across processes: marks shared, station locks exclusive, both surviving kill -9 correctly."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.central.store.writeguard import NOTHING, WriteGuard, fingerprint, slot_of

CHILD = """
import sys, time
from gateway.central.store.writeguard import WriteGuard
guard = WriteGuard(sys.argv[1])
with guard.hold([("site1", "st1")]) as marks:
    marks.set("site1", "st1", int(sys.argv[2]))
    print("set", flush=True)
    if sys.argv[3] == "hold":
        time.sleep(60)
print("released", flush=True)
time.sleep(60)
"""


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for child in started:
        child.kill()
        child.wait(10)


def start_child(children: list[subprocess.Popen[str]], path: Path, mark: int, mode: str) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(mark), mode], stdout=subprocess.PIPE,
                             text=True)
    children.append(child)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "set"
    return child


def test_a_mark_set_by_one_process_is_seen_by_another(tmp_path: Path,
                                                      children: list[subprocess.Popen[str]]) -> None:
    path = tmp_path / "guard"
    child = start_child(children, path, 1234, "release")
    assert child.stdout is not None and child.stdout.readline().strip() == "released"

    guard = WriteGuard(path)
    with guard.hold([("site1", "st1"), ("site1", "st2")]) as marks:
        assert marks.get("site1", "st1") == 1234
        assert marks.get("site1", "st2") is None
        with pytest.raises(KeyError):
            marks.get("site1", "st3")  # not held: no answer
    guard.close()


def test_a_station_lock_excludes_another_process_until_it_is_killed(
    tmp_path: Path, children: list[subprocess.Popen[str]]
) -> None:
    path = tmp_path / "guard"
    guard = WriteGuard(path)  # open first, so the child's death does not empty the file
    child = start_child(children, path, 99, "hold")
    with guard.hold([("site1", "other")]) as marks:  # another station is not held up
        marks.set("site1", "other", 5)
    got: list[int | None] = []

    def take() -> None:
        with guard.hold([("site1", "st1")]) as marks:
            got.append(marks.get("site1", "st1"))

    waiter = threading.Thread(target=take)
    waiter.start()
    waiter.join(1.0)
    assert waiter.is_alive() and got == []  # the child decides for st1 now

    child.kill()  # kill -9 mid-write: the kernel drops its locks, the mark it set stays (too high at worst)
    waiter.join(10)
    assert got == [99]
    guard.close()


def test_marks_are_forgotten_when_no_process_has_the_file_open(tmp_path: Path) -> None:
    path = tmp_path / "guard"
    first = WriteGuard(path)
    with first.hold([("site1", "st1")]) as marks:
        marks.set("site1", "st1", 7)
    second = WriteGuard(path)  # the first is still open: live marks are kept
    with second.hold([("site1", "st1")]) as marks:
        assert marks.get("site1", "st1") == 7
    first.close()
    second.close()

    again = WriteGuard(path)  # nobody had it open: it may predate a crash
    with again.hold([("site1", "st1")]) as marks:
        assert marks.get("site1", "st1") is None
    again.close()


def one_slot_pair() -> tuple[str, str]:
    """Two stations of site1 whose marks share a slot."""
    seen: dict[int, str] = {}
    name = 0
    while True:
        station = f"st{name}"
        slot = slot_of(fingerprint("site1", station))
        if slot in seen:
            return seen[slot], station
        seen[slot] = station
        name += 1


def test_two_stations_in_one_slot_evict_each_other_and_never_share_a_mark(tmp_path: Path) -> None:
    a, b = one_slot_pair()
    guard = WriteGuard(tmp_path / "guard")
    with guard.hold([("site1", a), ("site1", b)]) as marks:
        marks.set("site1", a, 10)
        assert marks.get("site1", b) is None
        marks.set("site1", b, NOTHING)
        assert marks.get("site1", a) is None
        assert marks.get("site1", b) == NOTHING
    guard.close()


def test_without_a_file_the_guard_still_excludes_threads() -> None:
    guard = WriteGuard()
    inside = threading.Event()
    leave = threading.Event()

    def hold() -> None:
        with guard.hold([("site1", "st1")]) as marks:
            marks.set("site1", "st1", 1)
            inside.set()
            leave.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(5)
    blocked = threading.Thread(target=lambda: guard.hold([("site1", "st1")]).__enter__())
    blocked.start()
    blocked.join(0.5)
    assert blocked.is_alive()
    leave.set()
    holder.join(5)
    blocked.join(5)
    assert not blocked.is_alive()


@pytest.mark.parametrize("with_file", [True, False])
def test_a_mark_learned_ahead_is_taken_only_where_nothing_was_written_to_its_slot(tmp_path: Path,
                                                                                  with_file: bool) -> None:
    guard = WriteGuard(tmp_path / "guard" if with_file else None)
    with guard.hold([("site1", "known")]) as marks:
        marks.set("site1", "known", 5)
    seen = guard.unknown([("site1", "new"), ("site1", "raced"), ("site1", "known"), ("site1", "new")])
    assert sorted(seen) == [("site1", "new"), ("site1", "raced")]  # a station with a mark needs none learned
    with guard.hold([("site1", "raced")]) as marks:
        marks.set("site1", "raced", 300)  # another writer learned and raised it meanwhile (then wrote up to 300)
    with guard.hold([("site1", "new"), ("site1", "raced")]) as marks:
        assert marks.learned("site1", "new", seen[("site1", "new")], 100)
        assert not marks.learned("site1", "raced", seen[("site1", "raced")], 100)
        assert marks.get("site1", "new") == 100
        assert marks.get("site1", "raced") == 300
    guard.close()


def test_a_mark_learned_ahead_is_dropped_when_another_process_wrote_the_slot(tmp_path: Path,
                                                                             children: list[subprocess.Popen[str]]
                                                                             ) -> None:
    path = tmp_path / "guard"
    guard = WriteGuard(path)
    seen = guard.unknown([("site1", "st1")])
    start_child(children, path, 1234, "release")  # sets st1's mark to 1234 under the lock
    with guard.hold([("site1", "st1")]) as marks:
        assert not marks.learned("site1", "st1", seen[("site1", "st1")], NOTHING)
        assert marks.get("site1", "st1") == 1234
    guard.close()


def test_a_mark_learned_ahead_is_dropped_when_the_station_was_evicted_meanwhile(tmp_path: Path) -> None:
    """The case a bare "is it still unknown?" check gets wrong: the station's mark was set (its readings written)
    and then evicted by a station sharing its slot, so it is unknown again, but the answer asked before is stale;
    the slot even holds the same station and mark as when the answer was asked (only its write count differs)."""
    a, b = one_slot_pair()
    guard = WriteGuard(tmp_path / "guard")
    with guard.hold([("site1", b)]) as marks:
        marks.set("site1", b, NOTHING)
    seen = guard.unknown([("site1", a)])
    with guard.hold([("site1", a), ("site1", b)]) as marks:
        marks.set("site1", a, 700)  # a's readings up to 700 written after the answer was asked
        marks.set("site1", b, NOTHING)  # b takes the slot back, its mark learned again: a's is unknown again
        assert marks.get("site1", a) is None
        assert not marks.learned("site1", a, seen[("site1", a)], NOTHING)
        assert marks.get("site1", a) is None
    guard.close()
