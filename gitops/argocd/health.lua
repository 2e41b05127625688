-- deliver: Argo CD health for apps/Deployment
-- (argocd-cm key resource.customizations.health.apps_Deployment; docs/gitops.md).
--
-- Argo CD's contract: the Deployment arrives as the table `obj`; the script returns a table with
-- `status` (Healthy | Progressing | Suspended | Degraded | Unknown) and `message`. Argo CD runs it
-- with the base, table and package libraries only (no string, no math; useOpenLibs is not needed).
--
-- A custom health script replaces Argo CD's built-in check for every Deployment of every
-- application, so a Deployment without deliver.dev/strategy gets exactly the built-in answer
-- (gitops-engine pkg/health/health_deployment.go, restated below). A Deployment managed by deliver
-- gets its health from deliver's record (annotation deliver.dev/state):
--   no record, Idle, Succeeded      at rest: the built-in answer as if not paused (Healthy when
--                                   every replica is updated and available)
--   Progressing, Promoting, RollingBack   Progressing (Suspended while held for the
--                                   confirm-promotion hook, hold AwaitingConfirmation)
--   Paused (a manual gate, `deliver pause`, an inconclusive analysis, a failed step kept for
--   the operator)                   Suspended
--   RolledBack, Aborted             Degraded while the Deployment is paused (held: the rejected
--                                   template is not rolled out); else the built-in answer
--   ProgressDeadlineExceeded        Degraded, in every phase (at rest as the built-in rules say it)
--   an invalid deliver.dev/strategy or deliver.dev/steps, an unreadable record   Degraded
--   a record too long to read here  Unknown

local STATE = "deliver.dev/state"
local STRATEGY = "deliver.dev/strategy"
local READ_BUDGET = 40000000 -- byte steps the record reader may take (about 0.3 s; they grow with the square of the bytes read)

-- #include json.lua
-- #include annotations.lua

-- The Progressing condition the built-in check reads (the first of that type), or nil.
local function progressing_condition(status)
  for _, condition in ipairs(status.conditions or {}) do
    if condition.type == "Progressing" then return condition end
  end
  return nil
end

-- Argo CD's built-in Deployment health (gitops-engine health_deployment.go), status and message
-- (nil when Healthy). ignore_paused: as if spec.paused were false.
local function builtin(dep, ignore_paused)
  local spec = dep.spec or {}
  local status = dep.status or {}
  if spec.paused == true and not ignore_paused then
    return "Suspended", "Deployment is paused"
  end
  if ((dep.metadata or {}).generation or 0) > (status.observedGeneration or 0) then
    return "Progressing", "Waiting for rollout to finish: observed deployment generation less than desired generation"
  end
  local condition = progressing_condition(status)
  local updated = status.updatedReplicas or 0
  local replicas = status.replicas or 0
  local available = status.availableReplicas or 0
  if condition ~= nil and condition.reason == "ProgressDeadlineExceeded" then
    return "Degraded", "Deployment \"" .. ((dep.metadata or {}).name or "") .. "\" exceeded its progress deadline"
  end
  if spec.replicas ~= nil and updated < spec.replicas then
    return "Progressing", "Waiting for rollout to finish: " .. updated .. " out of " .. spec.replicas ..
        " new replicas have been updated..."
  end
  if replicas > updated then
    return "Progressing", "Waiting for rollout to finish: " .. (replicas - updated) .. " old replicas are pending termination..."
  end
  if available < updated then
    return "Progressing", "Waiting for rollout to finish: " .. available .. " of " .. updated ..
        " updated replicas are available..."
  end
  return "Healthy", nil
end

local function health(dep)
  local hs = {}
  local annotations = (dep.metadata or {}).annotations or {}
  local strategy = annotations[STRATEGY]

  if strategy == nil then
    hs.status, hs.message = builtin(dep, false)
    return hs
  end

  local invalid = annotation_problem(annotations)
  if invalid ~= nil then
    hs.status = "Degraded"
    hs.message = "deliver: " .. invalid
    return hs
  end

  local raw = annotations[STATE]
  if raw == nil or raw == "" then
    -- deliver has not recorded this Deployment yet: at rest
    hs.status, hs.message = builtin(dep, true)
    return hs
  end
  local record, why, too_long = read_record(raw, READ_BUDGET, dep)
  if record == nil and too_long then
    hs.status = "Unknown"
    hs.message = "deliver: " .. STATE .. " is too long for Argo CD's Lua to read (" .. why ..
        ", before its phase); `deliver status` shows the delivery"
    return hs
  end
  if type(record) ~= "table" or record[1] ~= nil then
    hs.status = "Degraded"
    hs.message = "deliver: " .. STATE .. " is not a valid deliver record: " .. tostring(why or "not a JSON object")
    return hs
  end

  local phase = record.phase or "Idle"
  local hold = record.hold or ""
  local text = record.message or ""
  if type(phase) ~= "string" or type(hold) ~= "string" or type(text) ~= "string" then
    hs.status = "Degraded"
    hs.message = "deliver: " .. STATE .. " is not a valid deliver record: phase, hold and message must be strings"
    return hs
  end
  local summary = "deliver " .. strategy .. ": " .. phase
  if text ~= "" then summary = summary .. ": " .. text end

  local at_rest, at_rest_message = builtin(dep, true)
  local condition = progressing_condition(dep.status or {})
  if phase == "Idle" or phase == "Succeeded" then
    hs.status = at_rest
    hs.message = at_rest_message == nil and summary or summary .. "; " .. at_rest_message
  elseif condition ~= nil and condition.reason == "ProgressDeadlineExceeded" then
    hs.status = "Degraded"
    hs.message = summary .. "; Deployment \"" .. ((dep.metadata or {}).name or "") .. "\" exceeded its progress deadline"
  elseif phase == "Progressing" and hold == "AwaitingConfirmation" then
    -- an external approval gate (the confirm-promotion hook): waiting on someone, like a manual gate
    hs.status = "Suspended"
    hs.message = summary
  elseif phase == "Progressing" or phase == "Promoting" or phase == "RollingBack" then
    hs.status = "Progressing"
    hs.message = summary
  elseif phase == "Paused" then
    hs.status = "Suspended"
    hs.message = summary
  elseif phase == "RolledBack" or phase == "Aborted" then
    if (dep.spec or {}).paused == true then
      hs.status = "Degraded" -- held: the rejected template stays paused, not rolled out
      hs.message = summary
    else
      hs.status = at_rest
      hs.message = at_rest_message == nil and summary or summary .. "; " .. at_rest_message
    end
  else
    hs.status = "Degraded"
    hs.message = "deliver: " .. STATE .. " has an unknown phase '" .. phase .. "'"
  end
  return hs
end

-- never a Lua error: an object this script cannot read is Unknown, with why
local ok, result = pcall(health, obj)
if ok then return result end
return { status = "Unknown", message = "deliver: the health check could not read this Deployment: " .. tostring(result) }
