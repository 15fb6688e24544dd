-- Health of an Argo CD Application, so an app-of-apps can hold a sync wave until a child
-- Application is synced and healthy (Argo CD has no built-in Application health check).
-- A requested or running sync is Progressing; a failed last sync is Degraded; otherwise the
-- child's own health. Runs in Argo CD's default Lua sandbox: no `string` or `math` library.
local hs = { status = "Progressing", message = "Waiting for the Application to report its health" }
local known = { Healthy = true, Progressing = true, Degraded = true, Suspended = true, Missing = true, Unknown = true }

local function text(value)
  if type(value) == "string" and value ~= "" then
    return value
  end
  return nil
end

if type(obj) ~= "table" then
  return hs
end
if type(obj.operation) == "table" then
  hs.message = "A sync operation is requested"
  return hs
end
if type(obj.status) ~= "table" then
  return hs
end
local status = obj.status

if type(status.operationState) == "table" then
  local phase = text(status.operationState.phase)
  local message = text(status.operationState.message)
  if phase == "Running" or phase == "Terminating" then
    hs.message = "Sync operation " .. phase
    if message ~= nil then
      hs.message = hs.message .. ": " .. message
    end
    return hs
  end
  if phase == "Failed" or phase == "Error" then
    hs.status = "Degraded"
    hs.message = "Last sync " .. phase
    if message ~= nil then
      hs.message = hs.message .. ": " .. message
    end
    return hs
  end
end

if type(status.health) == "table" then
  local health = text(status.health.status)
  if health ~= nil and known[health] then
    hs.status = health
    hs.message = text(status.health.message) or ("Application is " .. health)
  elseif health ~= nil then
    hs.status = "Unknown"
    hs.message = "Unknown health status " .. health
  end
end
return hs
