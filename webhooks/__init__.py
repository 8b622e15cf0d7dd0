"""Push delivery to webhook subscribers: subscriptions, Standard Webhooks signing, the retry policy and the
delivery worker (``kuailv webhooks run``). See docs/webhooks.md."""
