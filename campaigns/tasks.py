from __future__ import annotations

import logging

from celery import shared_task

from campaigns import services
from campaigns.models import Campaign
from tenants.models import Organization

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def campaign_tick_task(*, organization_id: int, campaign_id: int) -> int:
    """Dial what the campaign may dial now. Safe to run twice, or concurrently: claims
    are made under the campaign's row lock, and each attempt's dial carries an
    idempotency key."""
    organization = Organization.objects.filter(pk=organization_id).first()
    campaign = (
        Campaign.objects.for_org(organization).filter(pk=campaign_id).first()
        if organization is not None
        else None
    )
    if campaign is None:
        logger.warning(
            "campaign_tick: no campaign %s in organization %s", campaign_id, organization_id
        )
        return 0
    return services.campaign_tick(campaign=campaign)


@shared_task
def campaigns_tick() -> int:
    return services.campaigns_tick_all()
