--- budgeted: answer sub-questions while the budget lasts; alc.llm_safe turns the
--- budget_exceeded error into a default answer, so the strategy degrades instead of failing.
local kit = require("nbkit")

local M = {}

M.meta = {
  name = "budgeted",
  version = "0.1.0",
  description = "Budget-limited fan-out that degrades gracefully",
  category = "budget",
}

function M.run(ctx)
  local task = kit.need(ctx, "task")
  local questions = ctx.questions or { "who", "what", "when", "where" }
  local answers, skipped = {}, 0
  for i, q in ipairs(questions) do
    local a = alc.llm_safe(q .. "? (" .. task .. ")", { max_tokens = 32 }, "(skipped)")
    if a == "(skipped)" then skipped = skipped + 1 end
    answers[i] = a
  end
  local left = alc.budget_remaining()
  ctx.result = {
    answers = answers,
    skipped = skipped,
    degraded = not alc.budget_check(),
    calls_left = left and left.llm_calls,
  }
  return ctx
end

return M
