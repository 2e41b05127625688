"""``deliver wave``: ship one change through several clusters, stage by stage, with the gate's semantics.

Each cluster's own deliver controller does each delivery; the wave only sequences them. No state
lives outside the clusters: the same command run again (after a crash, a killed CI job) observes the
same stages and goes on where the wave stands (``docs/waves.md``).

One module per concern, imports one way (``make check``'s ``wave-layers`` contract)::

    runner    the run: observe, plan, act, round after round (``WaveRunner``)
    lock      one wave per app: a Lease per stage (``WaveLocks``, on ``delivery.kube.lease``)
    writes    what the wave writes to a stage's Deployment: the change, the marker's times, an
              abort request, a previous template
    plan      the next move, from the observed stages (pure)
    report    the run's events, its stages' results, the JUnit report
    observe   where one stage stands, from its Deployment (pure; through ``delivery.gate.look``)
    clusters  one client per stage, reading a stage, the checks against the clusters (``preflight``)
    marker    the annotation ``wave.deliver.dev/stage`` the wave writes beside its change
    file      the wave file and the change (``--image``/``--manifest``), checked offline (pure)
    schema    what a wave file may hold: pydantic models, their JSON Schema, the file's problems (pure)

The gate is used only through its public surface (``delivery.gate.__all__``: ``wait``, ``look``,
``Pin``, the exit codes); ``tests/test_import_graph.py`` checks it.
"""
