-- The package searcher (package.searchers[2]), loaded on a session's first `require` without
-- the services, so a strategy that only requires packages keeps a small paused heap.
--
-- Run by bootstrap.lua as chunk(host, raw_load, sandbox, root_path); returns the searcher.
-- It replaces Lua's file searcher (and keeps working when the sandbox removes io): it searches
-- package.path the same way, but names a chunk after its file relative to the package root
-- ("@cot/init.lua", so errors read "cot/init.lua:12: ..."), and runs a module with no
-- arguments, as algocline's loader does. A miss lists every file it tried. The host compiles
-- the file's text once per process and hands its bytecode here.
local host, raw_load, sandbox, root_path = ...
local searchpath, sformat, concat, package_lib = package.searchpath, string.format, table.concat,
  package
local type, tostring, error = type, tostring, error

return function(name)
  -- sandboxed: the registry's roots, whatever the strategy wrote into package.path
  local path = sandbox and root_path or package_lib.path
  if type(path) ~= "string" then error("package.path must be a string", 0) end
  local tried = {}
  for template in path:gmatch("[^;]+") do
    local file, miss = searchpath(name, template)
    if file then
      local root = template:match("^[^?]*"):match("^(.*[/\\])") or ""
      local chunkname = "@" .. file:sub(#root + 1)
      local code, err = host("package", file, chunkname)
      local chunk
      if code then chunk, err = raw_load(code, chunkname, "b") end
      if not chunk then
        error(sformat("error loading module '%s' from file '%s':\n\t%s", name, file,
          tostring(err or "cannot read the file")), 0)
      end
      return function() return chunk() end, file
    end
    tried[#tried + 1] = miss
  end
  return concat(tried, "\n\t")
end
