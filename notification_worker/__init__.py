"""The notification worker: renders order events and sends them through log, SMTP and webhook
channels, exactly once per event and channel in effect, with retries and scheduled sends held in
TTL tiers rather than in memory."""
