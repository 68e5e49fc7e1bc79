"""Lead statuses and the steps allowed between them."""

from __future__ import annotations

RECEIVED, NURTURING, OFFERED, ACCEPTED, WORKING = "received", "nurturing", "offered", "accepted", "working"
WON, LOST, NO_DECISION, UNROUTABLE = "won", "lost", "no_decision", "unroutable"

STATUSES = (RECEIVED, NURTURING, OFFERED, ACCEPTED, WORKING, WON, LOST, NO_DECISION, UNROUTABLE)
OPEN_FOR_PARTNER = (OFFERED, ACCEPTED, WORKING)  # count against a partner's capacity
ROUTABLE = (RECEIVED,)  # the router decides only waiting leads; intake moves a re-scored nurturing lead back here
IN_HAND = (ACCEPTED, WORKING)                    # the partner may log activities and dispositions
FINAL = (WON, LOST, NO_DECISION)

REJECT_REASONS = ("not_in_territory", "no_capacity", "not_qualified", "duplicate", "bad_contact_data",
                  "existing_customer", "other")
