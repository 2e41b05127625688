"""The floor that talks to the Kubernetes API: nothing else in deliver imports ``kubernetes``.

client    the one client (``KubeClient`` over the official ``kubernetes`` package), the
          ``Kube`` protocol every other floor codes against, resources and patch types
wrapper   ``KubeWrapper``: a ``Kube`` around another that forwards every call; the wrappers
          (``CachedKube``, ``engine.leader.Fenced``) override only the calls they change
cache     informer stores trimmed to what deliver reads, and ``CachedKube`` reading through them
lease     the one ``coordination.k8s.io`` Lease implementation (leader election, wave locks)
"""
