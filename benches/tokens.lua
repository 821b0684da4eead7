-- wrk script for benches/load.sh: every request carries the next of COUNT tokens read from a
-- file (one a line, from line FIRST, counted from 0), so the gateway sees distinct tokens. Of
-- THREADS wrk threads, thread k takes every THREADS-th of them from the k-th; with "once" each
-- thread stops when it has had a response for each of its tokens, else it cycles them for wrk's
-- whole duration.
--   wrk -tTHREADS ... -s benches/tokens.lua URL -- TOKEN_FILE THREADS FIRST COUNT [once]

local threads = 0

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

local requests, next_request, budget, responses = {}, 1, 0, 0

local function count_response()
  responses = responses + 1
  if responses >= budget then
    wrk.thread:stop()
  end
end

function init(args)
  local file, stride = args[1], tonumber(args[2])
  local first, count = tonumber(args[3]), tonumber(args[4])
  local line_number = 0
  for token in io.lines(file) do
    if line_number >= first + count then
      break
    end
    if line_number >= first and (line_number - first) % stride == id then
      -- Formatted once here, so the timed loop only hands out prepared requests.
      requests[#requests + 1] = wrk.format(nil, nil, { Authorization = "Bearer " .. token })
    end
    line_number = line_number + 1
  end
  if #requests == 0 then
    error("no tokens for thread " .. id .. " in " .. file)
  end
  if args[5] == "once" then
    budget = #requests
    -- Defined only here: wrk parses response headers and bodies for Lua only when asked to.
    response = count_response
  end
end

function request()
  local prepared = requests[next_request]
  next_request = next_request % #requests + 1
  return prepared
end
