--- nbkit: small helpers shared by the test strategy packages (required by most of them).
local text = require("nbkit.text")

local M = {}

M.meta = {
  name = "nbkit",
  version = "0.1.0",
  description = "Shared helpers for algocline_nb's test strategies",
  category = "library",
}

M.trim = text.trim
M.lines = text.lines

--- ctx[key], or an error naming the missing input (level 2: the caller's line).
function M.need(ctx, key)
  local v = ctx[key]
  if v == nil then error("ctx." .. key .. " is required", 2) end
  return v
end

--- Fill "{name}" placeholders of a template from vars (missing ones stay as they are).
function M.fill(template, vars)
  return (template:gsub("{([%w_]+)}", function(k)
    local v = vars[k]
    if v == nil then return nil end
    return tostring(v)
  end))
end

--- Log one step of a strategy as "<pkg>: <msg>".
function M.step(pkg, msg)
  alc.log("info", pkg .. ": " .. msg)
end

--- Options merged over defaults (alc.tuning), read from ctx.
function M.opts(defaults, ctx)
  return alc.tuning(defaults, ctx)
end

return M
