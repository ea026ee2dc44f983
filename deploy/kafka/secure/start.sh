#!/bin/sh
# docker-compose.yml's Kafka: SASL_SSL + SCRAM-SHA-512 users + ACLs (see server.properties).
# Users and passwords: /etc/kafka/secrets/<user>.env (scripts/compose-secrets makes them).
set -eu
secrets=/etc/kafka/secrets
password() { sed -n 's/^CHOREO_KAFKA_SASL_PASSWORD=//p' "$secrets/$1.env"; }
admin=$(password admin)
config=/tmp/server.properties
cp /etc/kafka/secure/server.properties "$config"
cat >> "$config" <<PROPERTIES
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$admin";
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="$admin" user_admin="$admin";
PROPERTIES
/etc/kafka/secure/admin-properties.sh > /tmp/admin.properties
if [ ! -f /var/lib/kafka/data/meta.properties ]; then
  set --
  for file in "$secrets"/*.env; do
    user=$(basename "$file" .env)
    set -- "$@" --add-scram "SCRAM-SHA-512=[name=$user,password=$(password "$user")]"
  done
  /opt/kafka/bin/kafka-storage.sh format -t "${CLUSTER_ID:-KS0XJ_F_RE-eE6VLUKQOfw}" -c "$config" "$@"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$config"
