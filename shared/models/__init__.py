"""All ORM tables; importing this module registers them on `Base.metadata`."""

from shared.models.base import Base, UTCDateTime, utcnow
from shared.models.lead import Lead, LeadEvent, LeadOffer, WebhookReceipt
from shared.models.outbox import DeadLetter, OutboxMessage, ProcessedEvent
from shared.models.partner import Partner, PartnerApiKey
from shared.models.routing import PartnerLoad, RoutingInputsVersion, RoutingState, RuleSet

__all__ = ["Base", "UTCDateTime", "utcnow", "Lead", "LeadEvent", "LeadOffer", "WebhookReceipt",
           "OutboxMessage", "ProcessedEvent", "DeadLetter", "Partner", "PartnerApiKey", "PartnerLoad",
           "RoutingInputsVersion", "RoutingState", "RuleSet"]
from shared.models.sla import SlaAlert, SlaClock, SlaPartner, SlaPolicy  # noqa: E402

__all__ += ["SlaAlert", "SlaClock", "SlaPartner", "SlaPolicy"]
from shared.models.notify import WebhookAttempt, WebhookDelivery  # noqa: E402

__all__ += ["WebhookAttempt", "WebhookDelivery"]
from shared.models.source import Source  # noqa: E402

__all__ += ["Source"]
