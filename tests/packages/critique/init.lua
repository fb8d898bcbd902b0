--- critique: draft, then critique/revise until the critic's score reaches the threshold.
local kit = require("nbkit")

local M = {}

M.meta = {
  name = "critique",
  version = "0.1.0",
  description = "Critique/revise loop with early stop on a good score",
  category = "refinement",
}

function M.run(ctx)
  local task = kit.need(ctx, "task")
  local o = kit.opts({ max_rounds = 3, threshold = 8 }, ctx)
  local draft = kit.trim(alc.llm("Draft an answer.\nTask: " .. task))
  local rounds, score = 0, 0
  for round = 1, o.max_rounds do
    local critique = alc.llm(kit.fill("Critique this draft (SCORE: 1-10).\nTask: {task}\nDraft: {draft}",
      { task = task, draft = draft }))
    score = alc.parse_score(critique:match("SCORE:%s*(%S+)") or critique, 0)
    rounds = round
    kit.step("critique", "round " .. round .. " score " .. score)
    if score >= o.threshold then break end
    draft = kit.trim(alc.llm(kit.fill("Revise the draft.\nDraft: {draft}\nCritique: {critique}",
      { draft = draft, critique = critique })))
  end
  ctx.result = { answer = draft, rounds = rounds, score = score }
  return ctx
end

return M
