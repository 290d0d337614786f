"""Call lifecycle signals. Receivers get ``call``.

- ``call_ended``: the call is over (engine, status callback or sweep) and due to be
  finalized; ``calls.tasks`` schedules that once the transaction commits, so services
  never import the task module.
- ``call_finalized``: duration and totals are set. Post-call analysis, outbound webhooks
  and usage billing connect here, each in its own app, so finalization does not need to
  know about them.
- ``call_alive``: sent every ``CALL_HEARTBEAT_S`` by the process running the call's media
  stream; billing refreshes the call's concurrency lease here, so a process that dies
  stops vouching for its calls.
- ``call_started``: the call was answered and its media stream is running.
- ``turn_stored``: one turn's transcript line was stored (``call`` and ``turn``: the
  TranscriptTurn); receivers must be cheap (they run on the call's path).
- ``call_analyzed``: post-call analysis finished (or failed for good) and is stored on the call.
- ``call_sid_assigned``: an outbound call, placed under a placeholder SID, got its
  carrier SID (``previous_sid``: the placeholder); billing moves its concurrency slot.
- ``recording_ready``: the call's recording is finished and stored.
- ``call_deleting``: the call is about to be deleted (``DELETE /api/v1/calls/{id}/`` or the
  dashboard), inside the deleting transaction. Receivers remove what they keep outside
  the call's rows (the recording's file); raising aborts the deletion.
- ``recordings_expired``: the retention purge (calls/retention.py) found the organization
  keeps recordings ``days`` days: receivers delete the recordings of its calls that
  started before ``started_before`` and return how many they deleted. Sent with
  ``organization``, ``started_before`` and ``days`` (no ``call``).
- ``admission_abandoned``: a call was admitted (calls/admission.py) but no call was
  recorded under its SID after all (a webhook naming another tenant's call SID, an
  idempotent request that lost its race): what the checks took for it is released
  (billing: the concurrency slot). Sent with ``organization``, ``call_sid`` and
  ``carrier`` (no ``call``).

Outbound event webhooks connect to all of these in their own app; nothing here knows them.
"""

from django.dispatch import Signal

call_ended = Signal()
call_finalized = Signal()
call_alive = Signal()
call_started = Signal()
turn_stored = Signal()
call_analyzed = Signal()
recording_ready = Signal()
call_deleting = Signal()
recordings_expired = Signal()
call_sid_assigned = Signal()
admission_abandoned = Signal()
