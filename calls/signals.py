"""Post-call hooks. Receivers get ``call`` (finalized: duration and totals set).

Post-call analysis, outbound webhooks and usage billing connect here, each in its own
app, so finalization does not need to know about them.
"""

from django.dispatch import Signal

call_finalized = Signal()
