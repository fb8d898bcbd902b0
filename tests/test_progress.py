"""Progress bars of spawn_many / await_all: what they count, when they show, and in a kernel.

Without a kernel, ``notebook_bar`` is replaced by a console ``tqdm`` writing to a buffer, so
the counting and the show / don't-show rules are checked on a real registry; in a real kernel
the notebook bar itself: displayed as the widget alone (no ``text/plain`` for nbval to compare),
counting done / failed / paused, green when the batch ended, and shown by a small
``await_all`` only once it has waited ``SHOW_AFTER`` seconds.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

tqdm_std = pytest.importorskip("tqdm.std")

from algocline_nb import SessionRegistry, _progress  # noqa: E402
from algocline_nb._progress import MIN_BATCH, BatchProgress, follow, followed, wait_hook  # noqa: E402

ASK = 'return alc.llm("q")'
FAIL = 'error("no")'


@pytest.fixture
def reg() -> Iterator[SessionRegistry]:
    with SessionRegistry() as registry:
        yield registry


@pytest.fixture
def bars(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every bar made: console tqdm bars in a buffer stand in for the notebook's."""
    made: list[Any] = []

    def console_bar(total: int) -> Any:
        bar = tqdm_std.tqdm(total=total, file=io.StringIO(), mininterval=0, leave=True)
        made.append(bar)
        return bar

    monkeypatch.setattr(_progress, "in_notebook", lambda: True)
    monkeypatch.setattr(_progress, "notebook_bar", console_bar)
    return made


def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_bar_counts_done_failed_cancelled_and_paused(reg: SessionRegistry) -> None:
    ids = [reg.spawn(code) for code in ("return 1", "return 2", FAIL, ASK, ASK)]
    reg.await_all(ids[:3], timeout=5)
    for sid in ids[3:]:
        reg.wait_paused(sid, timeout=5)
    bar = tqdm_std.tqdm(total=5, file=io.StringIO(), mininterval=0)
    batch = BatchProgress(reg.loop, reg.core, ids, bar)
    batch.start()
    until(lambda: batch.counts.get("paused") == 2)
    assert batch.counts == {"done": 2, "failed": 1, "cancelled": 0, "paused": 2}
    assert bar.n == 3
    assert bar.postfix == "done=2, failed=1, cancelled=0, paused=2"
    assert followed(reg.core, ids[1:4])
    for sid in ids[3:]:
        reg.cancel(sid)
    until(lambda: batch.finished)
    assert batch.counts == {"done": 2, "failed": 1, "cancelled": 2, "paused": 0}
    assert bar.n == 5
    assert bar.disable  # closed
    assert not followed(reg.core, ids)


def test_evicted_sessions_count_as_ended(reg: SessionRegistry) -> None:
    ids = reg.spawn_many(["return 1"] * 3, progress=False)
    reg.await_all(ids, timeout=5)
    reg.gc_sweep(0)
    bar = tqdm_std.tqdm(total=3, file=io.StringIO(), mininterval=0)
    batch = BatchProgress(reg.loop, reg.core, ids, bar)
    batch.start()
    until(lambda: batch.finished)
    assert bar.n == 3
    assert batch.counts == {"done": 0, "failed": 0, "cancelled": 0, "paused": 0}


def test_spawn_many_shows_a_bar_from_min_batch_on(reg: SessionRegistry, bars: list[Any]) -> None:
    reg.spawn_many(["return 1"] * (MIN_BATCH - 1))
    assert bars == []
    ids = reg.spawn_many(["return 1"] * MIN_BATCH)
    assert len(bars) == 1
    assert bars[0].total == MIN_BATCH
    reg.await_all(ids, timeout=5)
    until(lambda: bars[0].disable)  # followed to the end, then closed
    assert bars[0].n == MIN_BATCH
    assert bars[0].postfix == f"done={MIN_BATCH}, failed=0, cancelled=0, paused=0"


def test_progress_false_and_true_per_call_and_per_registry(bars: list[Any]) -> None:
    with SessionRegistry(progress=False) as quiet:
        quiet.spawn_many(["return 1"] * MIN_BATCH)
        quiet.spawn_many(["return 1"] * MIN_BATCH, progress=None)  # None: the registry's
        assert bars == []
        quiet.spawn_many(["return 1"], progress=True)  # True: whatever the size
        assert len(bars) == 1
        quiet.progress = None
        quiet.spawn_many(["return 1"] * MIN_BATCH)
        assert len(bars) == 2
        quiet.spawn_many(["return 1"] * MIN_BATCH, progress=False)
        assert len(bars) == 2


def test_a_followed_batch_gets_no_second_bar(reg: SessionRegistry, bars: list[Any]) -> None:
    ids = reg.spawn_many([ASK] * MIN_BATCH)
    assert len(bars) == 1
    assert follow(reg._runner, reg.core, ids[:5], True) is None  # already followed
    idle = wait_hook(reg._runner, reg.core, ids, None, lambda: None)
    assert idle is not None
    idle()
    assert len(bars) == 1
    for sid in ids:
        reg.cancel(sid)
    until(lambda: bars[0].disable)


def test_a_big_wait_shows_its_bar_at_its_first_slice(reg: SessionRegistry, bars: list[Any]) -> None:
    ids = reg.spawn_many([ASK] * MIN_BATCH, progress=False)
    idle = wait_hook(reg._runner, reg.core, ids, None, None)
    assert idle is not None
    assert bars == []  # nothing before the wait: one that ends at once shows no bar
    idle()
    assert len(bars) == 1
    until(lambda: bars[0].postfix == f"done=0, failed=0, cancelled=0, paused={MIN_BATCH}")
    for sid in ids:
        reg.cancel(sid)
    until(lambda: bars[0].disable)


def test_a_small_wait_shows_its_bar_only_after_show_after(
    reg: SessionRegistry, bars: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_progress, "SHOW_AFTER", 0.3)
    ids = [reg.spawn(ASK) for _ in range(3)]
    calls: list[float] = []
    idle = wait_hook(reg._runner, reg.core, ids, None, lambda: calls.append(time.monotonic()))
    assert idle is not None
    started = time.monotonic()
    idle()
    assert bars == []
    assert len(calls) == 1  # the comm pump runs at every slice
    until(lambda: (idle(), len(bars) == 1)[1], timeout=5)
    assert time.monotonic() - started >= 0.3
    idle()
    assert len(bars) == 1  # shown once
    for sid in ids:
        reg.cancel(sid)
    until(lambda: bars[0].disable)


def test_outside_a_kernel_no_bar_and_no_hook(reg: SessionRegistry) -> None:
    assert not _progress.in_notebook()
    comm = lambda: None  # noqa: E731
    assert wait_hook(reg._runner, reg.core, ["x"], True, comm) is comm  # the comm pump alone
    ids = reg.spawn_many(["return 1"] * MIN_BATCH, progress=True)
    assert not followed(reg.core, ids)
    assert wait_hook(reg._runner, reg.core, ids, True, None) is None
    assert [o.tag for o in reg.await_all(ids, timeout=5, progress=True)] == ["done"] * MIN_BATCH


# ------------------------------------------------------------------------------ a real kernel

pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")
pytest.importorskip("ipywidgets")

import test_kernel  # noqa: E402

kernel = test_kernel.kernel  # the fixture: a started kernel, shut down afterwards

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

BAR_STATE = """
import json
from ipywidgets.widgets.widget import _instances
def bar_state(model_id):
    text, bar, right = _instances[model_id].children
    return json.dumps([bar.value, bar.max, bar.bar_style, right.value.replace("\\u2007", " ")])
"""


def _outputs(kernel: test_kernel.Kernel, code: str) -> tuple[list[str], list[dict[str, Any]]]:
    cell = kernel.run(code, timeout=30)
    assert cell.status == "ok", f"{cell.ename}: {cell.evalue}\n{cell.stdout}"
    return cell.lines, cell.outputs


@pytest.mark.kernel
def test_in_a_kernel_spawn_many_shows_a_widget_bar_without_text(
    kernel: test_kernel.Kernel,
) -> None:
    kernel.ok(BAR_STATE)
    _, outputs = _outputs(
        kernel,
        f"""
        from algocline_nb import SessionRegistry
        reg = SessionRegistry()
        ids = reg.spawn_many(["return 1"] * {MIN_BATCH} + ['error("no")'] * 5)
        outcomes = reg.await_all(ids, timeout=10)
        """,
    )
    assert outputs == [{WIDGET_VIEW: outputs[0][WIDGET_VIEW]}]  # one bar, the widget alone
    model_id = outputs[0][WIDGET_VIEW]["model_id"]
    total = MIN_BATCH + 5
    deadline = time.monotonic() + 10
    while True:
        value, top, style, text = json.loads(kernel.ok(f"print(bar_state({model_id!r}))")[-1])
        if style == "success" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert (value, top, style) == (total, total, "success")
    assert text.strip().startswith(f"{total}/{total} [")
    assert text.endswith(f"done={MIN_BATCH}, failed=5, cancelled=0, paused=0]")
    lines, again = _outputs(kernel, "print(len(reg.await_all(ids)))")
    assert (lines, again) == ([str(total)], [])  # all had ended: no second bar
    kernel.ok("reg.close()")


@pytest.mark.kernel
def test_in_a_kernel_a_small_long_wait_shows_its_bar_after_a_second(
    kernel: test_kernel.Kernel,
) -> None:
    _, quick = _outputs(
        kernel,
        """
        import asyncio
        from algocline_nb import SessionRegistry
        async def slow(prompt):
            await asyncio.sleep(1.6)
            return "late"
        reg = SessionRegistry(responder=slow)
        ids = [reg.spawn('return alc.llm("q")') for _ in range(3)]
        print([o.value for o in reg.await_all(ids, timeout=10, progress=False)])
        ids = [reg.spawn("return 1") for _ in range(3)]
        print(len(reg.await_all(ids, timeout=10)))
        """,
    )
    assert quick == []  # progress=False, and a short wait: no bar
    lines, outputs = _outputs(
        kernel,
        """
        ids = [reg.spawn('return alc.llm("q")') for _ in range(3)]
        print([o.value for o in reg.await_all(ids, timeout=10)])
        reg.close()
        """,
    )
    assert lines == ["['late', 'late', 'late']"]
    assert len(outputs) == 1
    assert set(outputs[0]) == {WIDGET_VIEW}  # the bar, shown after SHOW_AFTER
