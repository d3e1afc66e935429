# A Prometheus image from this host's Debian `prometheus` package, for machines that cannot pull
# prom/prometheus. Laid out like prom/prometheus (entrypoint, /prometheus, user nobody), so the
# rendered compose file works with either. Built by docker/build-local-images; the context is a
# folder holding `prometheus`, `promtool` and `prometheus.yml`.
ARG BASE_IMAGE=llmctl-base:bookworm
FROM ${BASE_IMAGE}

COPY prometheus promtool /bin/
COPY prometheus.yml /etc/prometheus/prometheus.yml
RUN mkdir -p /prometheus \
 && chown -R nobody:nogroup /etc/prometheus /prometheus \
 && /bin/prometheus --version

USER nobody
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
