# The deliver controller image: `deliver run` (what charts/deliver runs), non-root, no compilers.
#
#   make image                 builds it here without a container daemon (buildah, chroot isolation,
#                              vfs storage) on a Debian base made by mmdebstrap; docs/install.md
#   buildah bud -t deliver .   or `docker build -t deliver .` with the default base from a registry
#
# BASE is any image with Python 3.11 and its venv module at the same path in both stages: the
# default python:3.11-slim-bookworm, or the Debian bookworm base `make image` makes (python3,
# python3-venv, ca-certificates, libstdc++6; no compiler either way).
# Pin it for a release: --build-arg BASE=docker.io/library/python:3.11-slim-bookworm@sha256:<digest>
# (the digest your registry resolves the tag to today; the tag alone moves). The default is left a
# tag: its digest cannot be resolved where this file is maintained (no registry is reachable), and a
# digest copied from elsewhere unverified would pin nothing trustworthy. `make image`'s own base is
# pinned by DELIVER_DEBIAN_SNAPSHOT and records its package versions (e2e/image.py).
ARG BASE=docker.io/library/python:3.11-slim-bookworm

# ---- build: a virtualenv with deliver and the dependency versions it is tested with (constraints.txt;
# wheels: the base has no compiler)
FROM ${BASE} AS build
# A package index and a CA bundle of the build machine's (e.g. behind a TLS-inspecting proxy; the
# bundle is mounted for the build only, never copied into the image). Unset: pip's defaults.
ARG PIP_INDEX_URL
ARG PIP_CERT
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY strategies ./strategies
COPY delivery ./delivery
RUN python3 -m venv /opt/deliver \
 && /opt/deliver/bin/pip install -c constraints.txt . \
 && /opt/deliver/bin/pip uninstall -y -q setuptools pip \
 && find /opt/deliver/lib -depth -type d -name tests -path '*/site-packages/*/*' -exec rm -rf {} + \
 && /opt/deliver/bin/python -c "import delivery.cli, scipy.special, numpy, kubernetes" \
 && /opt/deliver/bin/deliver --help > /tmp/help.txt && rm /tmp/help.txt

# ---- final: the base plus the virtualenv, run as an unprivileged user
FROM ${BASE}
LABEL org.opencontainers.image.title="deliver" \
      org.opencontainers.image.description="deliver controller: progressive delivery for Kubernetes Deployments" \
      org.opencontainers.image.source="https://deliver.dev"
COPY --from=build /opt/deliver /opt/deliver
ENV PATH=/opt/deliver/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080
ENTRYPOINT ["deliver"]
CMD ["run", "--all-namespaces"]
