-- wrk: cycle through the requests listed in $PATHS_FILE, one per line: a path ("/fhir/...") for a
-- GET, or "POST<TAB>path<TAB>form body" for a POST _search. Non-2xx answers are counted by wrk.
local reqs = {}
local f = assert(io.open(os.getenv("PATHS_FILE"), "r"))
for line in f:lines() do
  if #line > 0 then
    local m, p, b = line:match("^(POST)\t([^\t]+)\t(.*)$")
    if m then
      reqs[#reqs + 1] = wrk.format("POST", p, { ["Content-Type"] = "application/x-www-form-urlencoded" }, b)
    else
      reqs[#reqs + 1] = wrk.format("GET", line)
    end
  end
end
f:close()
local i = 0
function init(args)
  -- each wrk thread starts at a different place in the list
  i = math.random(#reqs)
end
function request()
  i = i % #reqs + 1
  return reqs[i]
end
