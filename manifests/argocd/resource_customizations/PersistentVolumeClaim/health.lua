-- Health of a PersistentVolumeClaim, for notebook-gitops deployments.
-- Unlike Argo CD's built-in check, a claim that waits for its first consumer
-- (StorageClass volumeBindingMode: WaitForFirstConsumer) is Healthy: its volume is provisioned
-- only once a pod that uses it is scheduled, so holding the sync wave for it would deadlock
-- (the pod is in a later wave). A claim that a provisioner has picked up is Progressing.
-- Runs in Argo CD's default Lua sandbox: no `string` or `math` library.
local hs = { status = "Progressing", message = "Waiting for the claim to be bound" }

if type(obj) ~= "table" or type(obj.status) ~= "table" then
  return hs
end

local annotations = {}
if type(obj.metadata) == "table" and type(obj.metadata.annotations) == "table" then
  annotations = obj.metadata.annotations
end

local phase = obj.status.phase
if phase == "Bound" then
  hs.status = "Healthy"
  hs.message = "Bound"
  if type(obj.spec) == "table" and type(obj.spec.volumeName) == "string" then
    hs.message = "Bound to " .. obj.spec.volumeName
  end
elseif phase == "Lost" then
  hs.status = "Degraded"
  hs.message = "The claim lost its volume"
elseif phase == "Pending" then
  local provisioning = annotations["volume.kubernetes.io/storage-provisioner"] ~= nil
    or annotations["volume.beta.kubernetes.io/storage-provisioner"] ~= nil
    or annotations["volume.kubernetes.io/selected-node"] ~= nil
  if provisioning then
    hs.message = "Waiting for the volume to be provisioned"
  else
    hs.status = "Healthy"
    hs.message = "Waiting for first consumer: the volume is provisioned when a pod using the claim is scheduled"
  end
end
return hs
