"""Traffic routers. ``kinds`` is the one registry (what each router is, importable without a client:
``delivery.spec`` reads it); ``base`` holds the ``Router`` interface and ``router_for``; one module
per router (``replica``, ``gateway``, ``istio``, ``nginx``, ``smi``) holds its client code, sharing
``patches``. This package imports nothing itself, so importing ``kinds`` never loads the client."""
