--- vote: self-consistency — n samples in one batch (alc.parallel), majority vote, then a
--- justification of the winner.
local kit = require("nbkit")

local M = {}

M.meta = {
  name = "vote",
  version = "0.1.0",
  description = "Self-consistency voting over parallel samples",
  category = "ensemble",
}

function M.run(ctx)
  local task = kit.need(ctx, "task")
  local n = ctx.n or 5
  local seeds = {}
  for i = 1, n do seeds[i] = i end
  local answers = alc.parallel(seeds, function(i)
    return "Sample " .. i .. ": solve and end with ANSWER: <x>.\nTask: " .. task
  end, {
    system = "You are careful.",
    post_fn = function(resp) return resp:match("ANSWER:%s*(%S+)") or "?" end,
  })
  local tally = alc.vote(answers)
  local why = alc.llm("Explain in one line why " .. tally.winner .. " is right.\nTask: " .. task)
  ctx.result = {
    answer = tally.winner,
    votes = tally.count,
    total = tally.total,
    samples = answers,
    why = kit.trim(why),
  }
  return ctx
end

return M
