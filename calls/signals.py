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
"""

from django.dispatch import Signal

call_ended = Signal()
call_finalized = Signal()
call_alive = Signal()
