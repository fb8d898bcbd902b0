--- learner: solve with the lessons learned by earlier sessions (alc.state), then ask for a
--- new lesson and persist it; counts its runs with alc.state.incr.
local kit = require("nbkit")

local M = {}

M.meta = {
  name = "learner",
  version = "0.1.0",
  description = "A learning loop whose lessons persist across sessions in alc.state",
  category = "learning",
}

function M.run(ctx)
  local task = kit.need(ctx, "task")
  local lessons = alc.state.get("lessons", {})
  local hints = #lessons > 0 and table.concat(lessons, "; ") or "none"
  local answer = kit.trim(alc.llm("Solve: " .. task .. "\nHints: " .. hints))
  local lesson = kit.trim(alc.llm("State one lesson from solving '" .. task .. "' as: " .. answer))
  lessons[#lessons + 1] = lesson
  alc.state.set("lessons", lessons)
  local runs = alc.state.incr("runs")
  ctx.result = { answer = answer, hints = hints, lessons = #lessons, runs = runs }
  return ctx
end

return M
