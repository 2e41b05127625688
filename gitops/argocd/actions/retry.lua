-- deliver: the Argo CD resource action "retry" on a Deployment (argocd-cm key
-- resource.customizations.actions.apps_Deployment, definitions; docs/gitops.md).
-- Argo CD's contract: `obj` in, the modified `obj` out (Argo CD patches it onto the cluster).
-- It writes the request `deliver retry` writes: annotation deliver.dev/request =
-- {"verb": "retry", "id": <new id>, "at": <unix time>}; the controller takes it on its next pass.
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
local now = os.time()
local id = string.format("argocd-%s-%d", tostring(obj.metadata.resourceVersion or "0"), now)
obj.metadata.annotations["deliver.dev/request"] = string.format('{"verb": "retry", "id": "%s", "at": %d}', id, now)
return obj
