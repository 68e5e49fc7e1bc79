"""Partner notifications: signed webhooks for offers and recalls, staged with the state change, delivered
by a worker that retries for 24 hours, and a delivery log."""
