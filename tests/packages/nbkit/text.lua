--- nbkit.text: string helpers (loaded as nbkit/text.lua, a dotted module name).
local M = {}

function M.trim(s)
  return (tostring(s):gsub("^%s+", ""):gsub("%s+$", ""))
end

--- Non-empty trimmed lines of s, in order.
function M.lines(s)
  local out = {}
  for line in tostring(s):gmatch("[^\n]+") do
    line = M.trim(line)
    if line ~= "" then out[#out + 1] = line end
  end
  return out
end

return M
