#!/bin/sh
# Prints the admin's client properties (kafka-acls.sh, the healthcheck) from /etc/kafka/secrets.
set -eu
admin=$(sed -n 's/^CHOREO_KAFKA_SASL_PASSWORD=//p' /etc/kafka/secrets/admin.env)
cat <<PROPERTIES
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin";
ssl.truststore.type=PEM
ssl.truststore.location=/etc/kafka/secrets/ca.pem
PROPERTIES
