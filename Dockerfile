# The fleetway worker image: Python, a headless Java 17, and the pinned Flyway from flyway/pom.xml.
# Build: docker build -t fleetway-worker .      Run: docker run --env-file worker.env fleetway-worker

# Stage 1: Maven fetches exactly the jar set the tests ran against (flyway/pom.xml pins every version).
FROM maven:3.9.9-eclipse-temurin-17 AS flyway
WORKDIR /build
COPY flyway/pom.xml flyway/pom.xml
RUN mvn -B -q -f flyway/pom.xml dependency:copy-dependencies \
        -DoutputDirectory=/opt/flyway/lib/flyway -DincludeScope=runtime

# Stage 2: the runtime. Debian's OpenJDK 17 JRE, the jars from stage 1, fleetway from this repo.
FROM python:3.11.11-slim-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless util-linux \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --create-home --home-dir /home/fleetway fleetway
WORKDIR /app
COPY --from=flyway /opt/flyway/lib/flyway /opt/flyway/lib/flyway
COPY pyproject.toml README.md constraints.txt ./
COPY activities ./activities
COPY workflows ./workflows
COPY worker ./worker
RUN pip install --no-cache-dir -c constraints.txt .
# No migration set is baked in: a worker without FLEETWAY_FLYWAY__LOCATIONS (or a set store) refuses
# to start, so a forgotten setting can never roll a demo schema onto real tenants.
ENV FLEETWAY_FLYWAY__LIB_DIR=/opt/flyway/lib/flyway \
    PYTHONUNBUFFERED=1
USER fleetway
ENTRYPOINT ["fleetway", "worker"]
