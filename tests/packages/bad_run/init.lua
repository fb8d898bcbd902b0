--- bad_run: fails inside M.run (a test of tracebacks through packages).
local kit = require("nbkit")

local M = { meta = { name = "bad_run", version = "0.1.0" } }

local function inner(ctx)
  return ctx.missing.field
end

function M.run(ctx)
  kit.step("bad_run", "about to fail")
  local v = inner(ctx)
  ctx.result = v
  return ctx
end

return M
