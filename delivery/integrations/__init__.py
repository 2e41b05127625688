"""What deliver says to, and asks of, the world outside the API server's objects.

hooks      webhooks a delivery calls before/after a step, and their answers
notify     notifications (Slack, webhooks), sent per namespace, round robin
egress     the operator's egress policy and the one bounded HTTP call both use
events     Kubernetes Events on the Deployment (Normal/Warning, CamelCase reasons)
metrics    the controller's HTTP endpoints: ``/metrics`` (behind TokenReview), ``/healthz``, ``/readyz``
helmhook   the Helm hook Job that runs ``deliver gate`` inside a release
"""
