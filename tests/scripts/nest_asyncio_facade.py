"""The facade and its awaitable twins keep working after the user applied nest_asyncio.

Prints one ``ok <what>`` line per check and ``all ok`` at the end; exits non-zero on failure.
"""

from __future__ import annotations

import asyncio
import sys

import nest_asyncio

nest_asyncio.apply()  # what a user might do first, in their own process

from algocline_nb import SessionRegistry  # noqa: E402

CODE = 'local a = alc.llm("first")\nlocal b = alc.llm("second")\nreturn a .. "+" .. b'


def blocking(reg: SessionRegistry, tag: str) -> None:
    sid = reg.spawn(CODE)
    assert reg.wait_paused(sid, timeout=10).tag == "paused"
    reg.resume(sid, "1")
    assert reg.wait_paused(sid, timeout=10).tag == "paused"
    reg.resume(sid, "2")
    value = reg.await_terminal(sid, timeout=10).value
    assert value == "1+2", value
    print(f"ok {tag}", flush=True)


async def twins(reg: SessionRegistry, tag: str) -> None:
    sid = await reg.aspawn(CODE)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    async def answer_later() -> None:
        for text in ("a", "b"):
            await reg.await_paused(sid, timeout=10)
            await asyncio.sleep(0.1)
            await reg.aresume(sid, text)

    tick_task = asyncio.ensure_future(ticker())
    answer_task = asyncio.ensure_future(answer_later())
    before = ticks
    outcome = await reg.aawait_terminal(sid, timeout=10)
    during = ticks - before
    tick_task.cancel()
    await answer_task
    assert outcome.value == "a+b", outcome
    assert during >= 5, during
    assert (await reg.astate(sid)).tag == "done"
    print(f"ok {tag} ticks={during}", flush=True)


async def nested(reg: SessionRegistry) -> None:
    # inside a running loop: the blocking facade, and a nested run_until_complete of a twin
    blocking(reg, "blocking facade inside a running loop")
    loop = asyncio.get_running_loop()
    sid = reg.spawn('return alc.llm("q")')
    reg.wait_paused(sid, timeout=10)
    reg.resume(sid, "nested")
    outcome = loop.run_until_complete(reg.aawait_terminal(sid, timeout=10))
    assert outcome.value == "nested", outcome
    print("ok nested run_until_complete of a twin", flush=True)


def main() -> int:
    with SessionRegistry() as reg:
        blocking(reg, "blocking facade")
        asyncio.run(twins(reg, "twins under asyncio.run"))
        asyncio.run(nested(reg))
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(twins(reg, "twins under run_until_complete"))
        finally:
            loop.close()
    assert reg.closed
    print("all ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
