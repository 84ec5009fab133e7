-- Auto-routing of chest radiographs to the monai-pneumonia listener (AE "PNEUMO" in DicomModalities).
--
-- Every CR or DX instance stored in Orthanc whose BodyPartExamined is CHEST (or absent: PACS exports often
-- leave it out), whose ViewPosition is PA or AP (or absent) and whose patient is a child by the header is sent to
-- the listener by C-STORE; the listener screens it again (the intended-use gate, docs/intended-use-gate.md) and
-- stores a Comprehensive SR back into the same study. The age comes from PatientAge (an Age String such as
-- "004Y"), else from PatientBirthDate and StudyDate (or AcquisitionDate); a header that says neither is routed
-- (the listener's atypicality gate still applies). The SRs (Modality SR) and the Grad-CAM Secondary Captures
-- (Modality OT) that come back are not routed again, and neither is anything Orthanc itself created from Lua.
--
-- Installed as /etc/orthanc/route-to-pneumo.lua ("LuaScripts" of orthanc.json); the integration tests start
-- Orthanc with this very file (tests/service/harness.py).

-- The intended population: under this age in years (the knob `ages` of monai_pneumonia.io.policy.XrayPolicy).
MAX_AGE_YEARS = 18

-- The patient's age in years at the film, or nil when the header does not say (or says it unreadably).
function AgeYears(tags)
  local count, unit = string.match(tags['PatientAge'] or '', '^(%d%d%d)([DWMY])$')
  if count then
    local years = {D = 1 / 365.25, W = 7 / 365.25, M = 1 / 12, Y = 1}
    return tonumber(count) * years[unit]
  end
  local pattern = '^(%d%d%d%d)(%d%d)(%d%d)$'
  local by, bm, bd = string.match(tags['PatientBirthDate'] or '', pattern)
  local ty, tm, td = string.match(tags['StudyDate'] or tags['AcquisitionDate'] or '', pattern)
  if not (by and ty) then
    return nil
  end
  local years = tonumber(ty) - tonumber(by)
  if tonumber(tm) * 100 + tonumber(td) < tonumber(bm) * 100 + tonumber(bd) then
    years = years - 1  -- no birthday yet in the year of the film
  end
  return years
end

function OnStoredInstance(instanceId, tags, metadata, origin)
  local modality = tags['Modality']
  local bodyPart = string.upper(tags['BodyPartExamined'] or '')
  local view = string.upper(tags['ViewPosition'] or '')
  local age = AgeYears(tags)
  if (modality == 'CR' or modality == 'DX')
      and (bodyPart == 'CHEST' or bodyPart == '')
      and (view == 'PA' or view == 'AP' or view == '')
      and (age == nil or age < MAX_AGE_YEARS)
      and origin['RequestOrigin'] ~= 'Lua' then
    SendToModality(instanceId, 'PNEUMO')
  end
end
