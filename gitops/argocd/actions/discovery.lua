-- deliver: which resource actions a Deployment offers (argocd-cm key
-- resource.customizations.actions.apps_Deployment, discovery.lua; docs/gitops.md).
-- Argo CD's contract: `obj` in; a table of action name -> {disabled = bool} out.
-- An action is enabled in the phases where deliver takes that request (strategies/requests.py,
-- ALLOWED; tests/test_argocd.py checks the two agree): promote in Progressing and Paused; abort
-- also in Promoting; retry in RolledBack and Aborted when a failed revision is kept.
-- Only the base and table libraries (Argo CD opens no string library for actions).

local READ_BUDGET = 40000000 -- byte steps the record reader may take, as in the health check

-- #include json.lua
-- #include annotations.lua

local ALLOWED = {
  ["promote"] = { ["Progressing"] = true, ["Paused"] = true },
  ["abort"] = { ["Progressing"] = true, ["Paused"] = true, ["Promoting"] = true },
  ["retry"] = { ["RolledBack"] = true, ["Aborted"] = true },
}

local actions = {}
for name, _ in pairs(ALLOWED) do
  actions[name] = { ["disabled"] = true }
end
local annotations = (obj.metadata or {}).annotations or {}
if annotations["deliver.dev/strategy"] == nil or annotations["deliver.dev/state"] == nil then
  return actions
end
if annotation_problem(annotations) ~= nil then -- deliver takes no request then (the CLI refuses it too)
  return actions
end
local record = read_record(annotations["deliver.dev/state"], READ_BUDGET, obj)
if type(record) ~= "table" or record[1] ~= nil then
  return actions
end
local phase = record.phase or "Idle"
for name, phases in pairs(ALLOWED) do
  local enabled = phases[phase] == true
  if name == "retry" then
    enabled = enabled and (record.retryable == true or record.failedTemplate ~= nil or record.failedTemplatePacked ~= nil)
  end
  actions[name]["disabled"] = not enabled
end
return actions
