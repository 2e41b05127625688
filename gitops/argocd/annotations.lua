-- deliver: the annotation checks the Argo CD scripts share (inlined where a script says
-- `-- #include annotations.lua`, after json.lua). The few of deliver's rules that are cheap to repeat
-- here, so that Argo CD shows the typos met most often; tests/test_argocd.py checks them against
-- delivery/spec.py. Every other invalid annotation is reported by the Warning Event
-- InvalidAnnotation and `deliver lint`. Only base and table functions (Argo CD's Lua has no string
-- library): the value is read as bytes (json.lua).

local STRATEGIES = { ["rolling"] = true, ["canary"] = true, ["blue-green"] = true, ["recreate"] = true }
local SPACE = { [9] = true, [10] = true, [11] = true, [12] = true, [13] = true, [32] = true }

-- The text of bytes list[first..last].
local function text_of(list, first, last)
  local parts = {}
  for i = first, last do table.insert(parts, BYTE[list[i]]) end
  return join(parts)
end

-- Whether bytes list[first..last] spell word (lower case letters), ignoring case.
local function is_word(list, first, last, word)
  local want = bytes_of(word, 16)
  if last - first + 1 ~= #want then return false end
  for i = first, last do
    local b = list[i]
    if b >= 65 and b <= 90 then b = b + 32 end
    if b ~= want[i - first + 1] then return false end
  end
  return true
end

-- Why deliver.dev/steps is invalid (deliver's own rule: percentages 1..100, increasing, `pause`
-- between them, never two pauses in a row, `match` and `mirror` once each before any percentage,
-- at least one percentage), or nil. A value longer than 1 KiB is left to deliver.
local function steps_problem(value)
  local list = bytes_of(value, 1024)
  if list == nil then return nil end
  local empty = "'" .. value .. "' must be a comma-separated list with no empty items"
  table.insert(list, 44) -- a comma ends the last item
  local items, start = {}, 1
  for i, b in ipairs(list) do
    if b == 44 then
      local first, last = start, i - 1
      while first <= last and SPACE[list[first]] do first = first + 1 end
      while last >= first and SPACE[list[last]] do last = last - 1 end
      table.insert(items, { first = first, last = last })
      start = i + 1
    end
  end
  for _, item in ipairs(items) do
    if item.first > item.last then return empty end
  end
  local last, previous, weights, seen = 0, nil, 0, {}
  for _, item in ipairs(items) do
    local first, stop = item.first, item.last
    local word = nil
    for _, kind in ipairs({ "match", "mirror", "pause" }) do
      if is_word(list, first, stop, kind) then word = kind end
    end
    if word == "match" or word == "mirror" then
      if weights > 0 or seen[word] then return "`" .. word .. "` must come before any percentage, once" end
      seen[word] = true
    elseif word == "pause" then
      if previous == "pause" then return "two `pause` steps in a row" end
    else
      local digits = stop
      if list[stop] == 37 then digits = stop - 1 end -- a trailing %
      local number = digits >= first
      for i = first, digits do
        if list[i] < 48 or list[i] > 57 then number = false end
      end
      if not number then
        return "'" .. text_of(list, first, stop) .. "' is not a percentage (in '" .. value .. "')"
      end
      local weight = tonumber(text_of(list, first, digits))
      if weight < 1 or weight > 100 then return weight .. " is outside 1..100" end
      if weight <= last then return "weights must increase: " .. weight .. " after " .. last end
      last, weights = weight, weights + 1
      word = "percentage"
    end
    previous = word
  end
  if weights == 0 then return "needs at least one percentage" end
  return nil
end

-- Why the deliver.dev annotations are invalid (one line, as deliver's Warning Event says it), or nil.
local function annotation_problem(annotations)
  local strategy = annotations["deliver.dev/strategy"]
  if not STRATEGIES[strategy] then
    return "invalid annotation deliver.dev/strategy: '" .. tostring(strategy) ..
        "' is not one of rolling, canary, blue-green, recreate; deliver takes no action"
  end
  if strategy == "canary" and annotations["deliver.dev/steps"] ~= nil then
    local problem = steps_problem(annotations["deliver.dev/steps"])
    if problem ~= nil then
      return "invalid annotation deliver.dev/steps: " .. problem .. "; deliver takes no action"
    end
  end
  return nil
end
