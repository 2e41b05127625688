-- deliver: the Argo CD resource action "abort" on a Deployment (argocd-cm key
-- resource.customizations.actions.apps_Deployment, definitions; docs/gitops.md).
-- Argo CD's contract: `obj` in, the modified `obj` out (Argo CD patches it onto the cluster).
-- It writes the request `deliver abort` writes: annotation deliver.dev/request =
-- {"verb": "abort", "id": <new id>, "at": <unix time>}; the controller takes it on its next pass.
-- Actions run with the base, table and package libraries only and os.time through require("os").
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
local now = os.time()
local id = "argocd-" .. tostring(obj.metadata.resourceVersion or "0") .. "-" .. tostring(now)
obj.metadata.annotations["deliver.dev/request"] = '{"verb": "abort", "id": "' .. id .. '", "at": ' .. tostring(now) .. "}"
return obj
