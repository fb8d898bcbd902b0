"""The README quickstart: spawn Lua code, see it pause, resume it, read the result."""

from algocline_nb import SessionRegistry

code = """
local answer = alc.llm("What is 6 * 7? Reply with the number only.")
alc.log("info", "the model said " .. answer)
return {answer = tonumber(answer), checked = tonumber(answer) == 42}
"""

with SessionRegistry() as reg:
    sid = reg.spawn(code)  # returns at once; the strategy runs in the background
    paused = reg.wait_paused(sid)  # the strategy called alc.llm and now waits
    print(paused.tag, paused.prompts[0].prompt)
    print(reg.resume(sid, "42"))  # answer the pending query; the strategy continues
    outcome = reg.await_terminal(sid)
    print(outcome.tag, outcome.value)
    print([event.kind for event in reg.history(sid)])
