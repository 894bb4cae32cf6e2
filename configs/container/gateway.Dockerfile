# ferry-gateway image: built by `make image` (configs/container/build.sh) from
# a context holding the static binary built on the host; nothing is pulled.
#
# State (SQLite database, self-signed certificate, generated admin token)
# goes to data_dir; mount a volume on /var/lib/ferry, the working directory,
# and set data_dir = "/var/lib/ferry" (or FERRY_GATEWAY_DATA_DIR).
FROM scratch
ARG VERSION=dev
COPY passwd group /etc/
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# Owned by ferry, so that a new named volume mounted here is writable.
COPY --chown=65532:65532 data/ /var/lib/ferry/
COPY ferry-gateway /usr/local/bin/ferry-gateway
USER 65532:65532
WORKDIR /var/lib/ferry
ENTRYPOINT ["/usr/local/bin/ferry-gateway"]
CMD ["serve"]
# Healthy while serving and not draining (/readyz on [listen] admin).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/ferry-gateway", "healthcheck"]
LABEL org.opencontainers.image.title="ferry-gateway" \
      org.opencontainers.image.description="Ferry gateway: accepts agent tunnels and proxies connections through them" \
      org.opencontainers.image.version="${VERSION}"
