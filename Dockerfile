# The fleetway worker image: Python, a headless Java 17, the pinned Flyway, and fleetway's wheel.
# Build: docker build -t fleetway-worker .      Run: docker run --env-file worker.env fleetway-worker
# tests/test_installed_package.py follows this file's steps without a container engine: it copies what
# each stage copies, runs its pip lines as written, starts the ENTRYPOINT with the ENV below, and migrates
# tenants with it. Keep every step one it can follow (a COPY, a pip/mvn/apt-get/useradd RUN, an ENV).

# Stage 1: fleetway's wheel, built from the tree (setup.py finds every package; nothing is listed).
FROM python:3.11.11-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY activities ./activities
COPY workflows ./workflows
COPY worker ./worker
RUN pip wheel --no-cache-dir --no-deps --wheel-dir dist .

# Stage 2: Maven fetches exactly the jar set the tests ran against: the pom the wheel ships, fetched
# with the same mvn line as `fleetway flyway install` (worker/flyway/fetch.py).
FROM maven:3.9.9-eclipse-temurin-17 AS flyway
WORKDIR /build
COPY worker/flyway/pom.xml pom.xml
RUN mvn -B -q -f pom.xml dependency:copy-dependencies -DoutputDirectory=/opt/flyway/lib/flyway -DincludeScope=runtime

# Stage 3: the runtime. Debian's OpenJDK 17 JRE, the jars from stage 2, the wheel from stage 1 with
# every dependency at the version constraints.txt pins.
FROM python:3.11.11-slim-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless util-linux \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --create-home --home-dir /home/fleetway fleetway
WORKDIR /app
COPY --from=flyway /opt/flyway/lib/flyway /opt/flyway/lib/flyway
COPY constraints.txt ./
COPY --from=wheel /src/dist ./dist
RUN pip install --no-cache-dir -c constraints.txt dist/fleetway-*.whl
# No migration set is baked in: a worker without FLEETWAY_FLYWAY__LOCATIONS (or a set store) refuses
# to start, so a forgotten setting can never roll a demo schema onto real tenants.
ENV FLEETWAY_FLYWAY__LIB_DIR=/opt/flyway/lib/flyway \
    PYTHONUNBUFFERED=1
USER fleetway
ENTRYPOINT ["fleetway", "worker"]
