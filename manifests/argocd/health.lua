-- Argo CD health of kubeloop's custom resources: FeatureSet, TrainingRun, ModelVersion and
-- DriftMonitor (one script, registered for each kind in argocd-cm by kustomization.yaml).
-- Argo CD runs it with the live object as `obj`; it returns {status, message}.
--
-- The phase decides, once the operator has observed the current generation; an invalid spec
-- (condition Accepted=False) is Degraded whatever the phase. The phase tables list every
-- phase of each kind's status model (a test compares them with */api.py).

local PHASES = {
  FeatureSet = {
    Pending = "Progressing", Materializing = "Progressing", Ready = "Healthy", Failed = "Degraded",
  },
  TrainingRun = {
    Pending = "Progressing", Running = "Progressing", Succeeded = "Healthy", Failed = "Degraded",
    Suspended = "Suspended",
  },
  ModelVersion = {
    Pending = "Progressing", Registered = "Healthy", Deploying = "Progressing", Canary = "Progressing",
    Serving = "Healthy", GatesFailed = "Degraded", RolledBack = "Degraded", Retired = "Healthy",
    Failed = "Degraded",
  },
  DriftMonitor = {
    Pending = "Progressing", Healthy = "Healthy", InsufficientData = "Healthy", Drifted = "Degraded",
    Retraining = "Progressing", Failed = "Degraded",
  },
}

local function condition(status, type)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function health(obj)
  local status = obj.status
  if status == nil then
    return {status = "Progressing", message = "Waiting for the kubeloop operator"}
  end
  local generation = obj.metadata ~= nil and obj.metadata.generation or nil
  if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
    return {status = "Progressing",
            message = "Waiting for the kubeloop operator to observe generation " .. tostring(generation)}
  end
  local accepted = condition(status, "Accepted")
  if accepted ~= nil and accepted.status == "False" then
    return {status = "Degraded", message = accepted.message or "The spec is invalid"}
  end
  local phase = status.phase
  if phase == nil then
    return {status = "Progressing", message = "Waiting for the kubeloop operator"}
  end
  local phases = PHASES[obj.kind]
  local verdict = phases ~= nil and phases[phase] or nil
  if verdict == nil then
    return {status = "Unknown", message = obj.kind .. " has phase " .. phase .. ", unknown to this health check"}
  end
  local ready = condition(status, "Ready")
  local message = obj.kind .. " is " .. phase
  if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
    message = message .. ": " .. ready.message
  end
  return {status = verdict, message = message}
end

return health(obj)
