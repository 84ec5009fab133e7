-- Auto-routing of chest radiographs to the monai-pneumonia listener (AE "PNEUMO" in DicomModalities).
--
-- Every CR or DX instance stored in Orthanc whose BodyPartExamined is CHEST (or absent: PACS exports often
-- leave it out) is sent to the listener by C-STORE; the listener screens it again and stores a Comprehensive SR
-- back into the same study. The SRs (Modality SR) and the Grad-CAM Secondary Captures (Modality OT) that come
-- back are not routed again, and neither is anything Orthanc itself created from Lua.
--
-- Installed as /etc/orthanc/route-to-pneumo.lua ("LuaScripts" of orthanc.json); the integration tests start
-- Orthanc with this very file (tests/service/harness.py).

function OnStoredInstance(instanceId, tags, metadata, origin)
  local modality = tags['Modality']
  local bodyPart = string.upper(tags['BodyPartExamined'] or '')
  if (modality == 'CR' or modality == 'DX')
      and (bodyPart == 'CHEST' or bodyPart == '')
      and origin['RequestOrigin'] ~= 'Lua' then
    SendToModality(instanceId, 'PNEUMO')
  end
end
