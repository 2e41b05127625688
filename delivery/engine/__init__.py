"""The controller's engine: watch, observe, ask the planner, act, and keep the record.

    controller  informers, the work queue and the workers (``Controller``, ``Informer``)
    leader      leader election on a Lease
    holdpolicy  who holds a template change: the API server's policy, or deliver (``HoldWatch``)
    reconcile   one pass over one Deployment: observe -> plan (``strategies``) -> act
    observe     the world of one Deployment, read from the cache (pure reading, no writes)
    act         carries out the planner's actions, each a guarded write
    state       reads and writes the record (``deliver.dev/state``) and operator requests
    verdicts    the analyser the engine hands to a pass (Prometheus checks, built once)
    takeover    whether a Service may be taken over for this Deployment
    health      readiness and liveness of pods, from their status
    background  analyses off the reconcile path: a bounded pool; a later pass picks up the verdict

The engine imports the floors below it (integrations, the schema, routers, analysis, kube) and is
imported only by the gate-side readers above it and the CLI (``make check``'s ``delivery-floors``).
"""
