"""Child process of test_journal_crash: sessions on a journal, answered by hand, until killed.

argv: journal path, app dir, ack file, number of sessions. Prints "ready" once the registry
exists, then spawns the sessions and answers each pause with "<i>-<round>"; after every
``resume`` returns (the answer acknowledged) it appends "<sid> <round> <answer>" to the ack
file. The parent kills it with SIGKILL somewhere in the middle.
"""

from __future__ import annotations

import os
import sys

from algocline_nb import Run, SessionRegistry, SessionSpec

CODE = """
local a = alc.llm("p0 " .. ctx.i)
local b = alc.llm("p1 " .. a)
local c = alc.llm("p2 " .. b)
return {a, b, c}
"""


def answer(prompt: object) -> str:
    """The answer by hand above, as a responder: "<i>-<round>" read back from the prompt."""
    text = str(getattr(prompt, "prompt", ""))
    word, rest = text.split(" ", 1)
    i = rest.split("-")[0]
    return f"{i}-{int(word[1:])}"


def sweep(journal: str, app_dir: str, n: int) -> None:
    answer.inline = True  # type: ignore[attr-defined]
    reg = SessionRegistry(journal=journal, app_dir=app_dir, responder=answer)
    reg.sessions()
    print("ready", flush=True)
    ids = reg.spawn_many([SessionSpec(Run(CODE), ctx={"i": i}) for i in range(n)])
    reg.await_all(ids, timeout=120)
    print("finished", flush=True)
    reg.close()


def main() -> None:
    journal, app_dir, ack_path, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    if sys.argv[5:] == ["responder"]:  # a sweep answered by a responder: nobody acknowledges
        sweep(journal, app_dir, n)
        return
    reg = SessionRegistry(journal=journal, app_dir=app_dir)
    ack = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    reg.sessions()  # binds the registry (and its journal) before the parent starts counting
    print("ready", flush=True)
    sids = reg.spawn_many([SessionSpec(Run(CODE), ctx={"i": i}) for i in range(n)])
    for rnd in range(3):
        for i, sid in enumerate(sids):
            reg.wait_paused(sid, timeout=30)
            answer = f"{i}-{rnd}"
            reg.resume(sid, answer)
            os.write(ack, f"{sid} {rnd} {answer}\n".encode())
    for sid in sids:
        reg.await_terminal(sid, timeout=30)
    print("finished", flush=True)
    reg.close()


if __name__ == "__main__":
    main()
