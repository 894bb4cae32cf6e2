# ferry-demo-target image: the small HTTP service (internal/cmd/demo-target)
# that the container test and the compose demo put behind the tunnel.
FROM scratch
ARG VERSION=dev
COPY passwd group /etc/
COPY demo-target /usr/local/bin/demo-target
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/demo-target"]
CMD ["-listen", ":8080"]
LABEL org.opencontainers.image.title="ferry-demo-target" \
      org.opencontainers.image.version="${VERSION}"
