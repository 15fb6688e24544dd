-- Health of a notebook-gitops NotebookValidationJob (mlops.mlops.dev/v1alpha1).
-- Runs in Argo CD's default Lua sandbox: no `string` or `math` library, so only `..`,
-- `tostring` and comparisons are used. Every path returns a valid status.
local hs = { status = "Progressing", message = "Waiting for the validation to start" }

-- A non-empty string, or nil.
local function text(value)
  if type(value) == "string" and value ~= "" then
    return value
  end
  return nil
end

if type(obj) ~= "table" or type(obj.status) ~= "table" then
  return hs
end
local status = obj.status

-- The status describes an older spec: the new run has not been picked up yet.
local generation = nil
if type(obj.metadata) == "table" and type(obj.metadata.generation) == "number" then
  generation = obj.metadata.generation
end
local observed = status.observedGeneration
-- 0 is the CRD's default status, read until nvj-validator's first write.
if observed == 0 then
  return hs
end
if generation ~= nil and type(observed) == "number" and observed < generation then
  hs.message = "Waiting for the validator to pick up generation " .. tostring(generation)
    .. " (status describes generation " .. tostring(observed) .. ")"
  return hs
end

local phase = text(status.phase)
local message = text(status.message)
if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = message or "Validation succeeded"
  -- trigger-controller checked the served model after this run's restart and it answered
  -- wrongly (or not at all): what serves is not what the validation passed.
  local result = status.modelValidationResult
  if type(result) == "table" and result.success == false and type(obj.metadata) == "table"
    and type(obj.metadata.uid) == "string" and type(observed) == "number"
    and result.run == obj.metadata.uid .. "/" .. tostring(observed) then
    hs.status = "Degraded"
    hs.message = "Validation succeeded, but the served model failed its check: "
      .. (text(result.message) or "no message")
  end
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = message or "Validation failed"
  local retries = status.retryCount
  if type(retries) == "number" and retries > 0 then
    if retries == 1 then
      hs.message = hs.message .. " (after 1 retry)"
    else
      hs.message = hs.message .. " (after " .. tostring(retries) .. " retries)"
    end
  end
elseif phase ~= nil then
  -- Initializing, ValidationRunning, and the Go operator's Building, BuildComplete,
  -- Pending and Running.
  hs.message = "Phase " .. phase
  if message ~= nil then
    hs.message = hs.message .. ": " .. message
  end
end
return hs
