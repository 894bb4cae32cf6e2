# ferry-agent image: built by `make image` (configs/container/build.sh) from a
# context holding the static binary built on the host; nothing is pulled.
#
# Run it with a read-only root file system and a tmpfs on /run/ferry, where
# the single-instance lock lives:
#   docker run --read-only --tmpfs /run/ferry --cap-drop ALL \
#     -v ./agent.toml:/etc/ferry/agent.toml:ro -v ./agent.token:/etc/ferry/agent.token:ro \
#     ferry-agent:VERSION
# or configure it with FERRY_AGENT_<SECTION>_<KEY> variables and no file.
FROM scratch
ARG VERSION=dev
COPY passwd group /etc/
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# The single-instance lock goes to /run/ferry: mount a tmpfs (or emptyDir)
# there. /run/ferry is deliberately absent from the image: a tmpfs mounted on
# an existing directory takes its owner (root), one on a new mount point is
# world-writable. The environment wins over a config file, so change the
# path with this variable, not with [agent] lock_file.
ENV FERRY_AGENT_AGENT_LOCK_FILE=/run/ferry/agent.lock
COPY ferry-agent /usr/local/bin/ferry-agent
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/ferry-agent"]
CMD ["run"]
# Healthy while at least one tunnel is up (/readyz on [metrics] listen).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/ferry-agent", "healthcheck"]
LABEL org.opencontainers.image.title="ferry-agent" \
      org.opencontainers.image.description="Ferry agent: egress-only tunnel to a Ferry gateway" \
      org.opencontainers.image.version="${VERSION}"
