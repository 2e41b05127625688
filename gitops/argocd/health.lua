-- deliver: Argo CD health for apps/Deployment
-- (argocd-cm key resource.customizations.health.apps_Deployment; docs/gitops.md).
--
-- Argo CD's contract: the Deployment arrives as the table `obj`; the script returns a table with
-- `status` (Healthy | Progressing | Suspended | Degraded) and `message`.
--
-- A Deployment managed by deliver (annotation deliver.dev/strategy) is held with spec.paused at
-- rest, which Argo CD's built-in check reports as Suspended forever. Its health comes from
-- deliver's record (annotation deliver.dev/state) instead:
--   Idle, Succeeded                  Healthy (Progressing while its pods are not all updated and available)
--   Progressing, Promoting, RollingBack  Progressing
--   Progressing held for the confirm-promotion hook (hold AwaitingConfirmation; canary or blue-green)  Suspended
--   Paused (a manual gate, an operator's pause, an inconclusive analysis)  Suspended
--   Paused after a failed step (auto-rollback off), RolledBack, Aborted    Degraded
--   an invalid deliver.dev/strategy or deliver.dev/steps, an unreadable record  Degraded
-- A custom health script replaces Argo CD's built-in one for the kind, so every other Deployment
-- gets the built-in Deployment rules here (paused: Suspended; generation not observed, replicas
-- not updated or not available: Progressing; progress deadline exceeded: Degraded).

local STATE = "deliver.dev/state"
local STRATEGY = "deliver.dev/strategy"

-- #include json.lua
-- #include annotations.lua

-- Argo CD's built-in rules for a Deployment (gitops-engine health_deployment.go, as documented).
local function builtin(dep, ignore_paused)
  local spec = dep.spec or {}
  local status = dep.status or {}
  if spec.paused == true and not ignore_paused then
    return "Suspended", "Deployment is paused"
  end
  local generation = (dep.metadata or {}).generation or 0
  if generation > (status.observedGeneration or 0) then
    return "Progressing", "Waiting for rollout to finish: observed deployment generation less than desired generation"
  end
  if status.conditions ~= nil then
    for _, condition in ipairs(status.conditions) do
      if condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded" then
        return "Degraded", "Deployment \"" .. tostring((dep.metadata or {}).name) .. "\" exceeded its progress deadline"
      end
    end
  end
  local updated = status.updatedReplicas or 0
  if spec.replicas ~= nil and updated < spec.replicas then
    return "Progressing", string.format("Waiting for rollout to finish: %d out of %d new replicas have been updated...",
      updated, spec.replicas)
  end
  if (status.replicas or 0) > updated then
    return "Progressing", string.format("Waiting for rollout to finish: %d old replicas are pending termination...",
      (status.replicas or 0) - updated)
  end
  if (status.availableReplicas or 0) < updated then
    return "Progressing", string.format("Waiting for rollout to finish: %d of %d updated replicas are available...",
      status.availableReplicas or 0, updated)
  end
  return "Healthy", ""
end

local hs = {}
local annotations = (obj.metadata or {}).annotations or {}
local strategy = annotations[STRATEGY]

if strategy == nil then
  hs.status, hs.message = builtin(obj, false)
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
  -- deliver has not recorded this Deployment yet: it behaves as a plain Deployment until then
  hs.status, hs.message = builtin(obj, false)
  return hs
end
local record, why = json_object(raw)
if type(record) ~= "table" then
  hs.status = "Degraded"
  hs.message = "deliver: " .. STATE .. " is not a valid deliver record: " .. tostring(why)
  return hs
end

local phase = record.phase or "Idle"
local hold = record.hold or ""
local text = record.message or ""
local where = ""
if phase == "Progressing" or phase == "Paused" then
  where = string.format(" at step %d (%d%% of traffic)", (record.step or 0) + 1, record.weight or 0)
end
local summary = "deliver " .. strategy .. ": " .. phase .. where .. (text ~= "" and ": " .. text or "")

if phase == "Idle" or phase == "Succeeded" then
  local status, message = builtin(obj, true)
  hs.status = status
  hs.message = status == "Healthy" and summary or summary .. "; " .. message
elseif phase == "Progressing" and hold == "AwaitingConfirmation" then
  -- an external approval gate (the confirm-promotion hook): waiting on someone, like a manual gate
  hs.status = "Suspended"
  hs.message = summary
elseif phase == "Progressing" or phase == "Promoting" or phase == "RollingBack" then
  hs.status = "Progressing"
  hs.message = summary
elseif phase == "Paused" then
  hs.status = hold == "Failed" and "Degraded" or "Suspended"
  hs.message = summary
elseif phase == "RolledBack" or phase == "Aborted" then
  hs.status = "Degraded"
  hs.message = summary
else
  hs.status = "Degraded"
  hs.message = "deliver: " .. STATE .. " has an unknown phase '" .. tostring(phase) .. "'"
end
return hs
