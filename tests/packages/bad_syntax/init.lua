local M = {}

function M.run(ctx)
  return ctx +
end

return M
