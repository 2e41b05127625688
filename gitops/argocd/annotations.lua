-- deliver: the annotation checks the Argo CD scripts share (inlined where a script says
-- `-- #include annotations.lua`). The few of deliver's rules that are cheap to repeat here, so that
-- Argo CD shows the typos met most often; tests/test_argocd.py checks them against delivery/spec.py.
-- Every other invalid annotation is reported by the Warning Event InvalidAnnotation and `deliver lint`.

local STRATEGIES = { ["rolling"] = true, ["canary"] = true, ["blue-green"] = true, ["recreate"] = true }

-- Why deliver.dev/steps is invalid (deliver's own rule: percentages 1..100, increasing, `pause`
-- between them, never two pauses in a row, at least one percentage), or nil.
local function steps_problem(value)
  local empty = "'" .. value .. "' must be a comma-separated list with no empty items"
  if string.find(value, "^%s*$") then return empty end
  local last, pause, weights = 0, false, 0
  for token in string.gmatch(value .. ",", "([^,]*),") do
    token = string.match(token, "^%s*(.-)%s*$")
    if token == "" then return empty end
    if string.lower(token) == "pause" then
      if pause then return "two `pause` steps in a row" end
      pause = true
    else
      local digits = string.match(token, "^(%d+)%%?$")
      if digits == nil then return "'" .. token .. "' is not a percentage (in '" .. value .. "')" end
      local weight = tonumber(digits)
      if weight < 1 or weight > 100 then return weight .. " is outside 1..100" end
      if weight <= last then return "weights must increase: " .. weight .. " after " .. last end
      last, pause, weights = weight, false, weights + 1
    end
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
