"""The live view (DESIGN.md "Live view"): event publishing for the technician page and the customer display."""

from meterbench.web.publisher import EventPublisher, Publisher, Subscription

__all__ = ["EventPublisher", "Publisher", "Subscription"]
