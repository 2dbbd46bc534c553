"""PagerDuty: V3 webhook payloads (and, later, the sync connector) → canonical incidents."""

from heatlens.connectors.pagerduty.mapping import (
    Mapped,
    PagerDutyOptions,
    map_event,
)

__all__ = ["Mapped", "PagerDutyOptions", "map_event"]
