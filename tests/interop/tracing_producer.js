// Produce records with kafkajs, as a Node.js system would: node tracing_producer.js BOOTSTRAP TOPIC RECORDS_JSON
// RECORDS_JSON is a list of {key, value, headers} (strings). Exits non-zero on any failure.
const { Kafka, logLevel } = require("kafkajs");

async function main() {
  const [bootstrap, topic, recordsJson] = process.argv.slice(2);
  const kafka = new Kafka({ clientId: "interop-node", brokers: [bootstrap], logLevel: logLevel.NOTHING });
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  try {
    await producer.send({ topic, acks: -1, messages: JSON.parse(recordsJson) });
  } finally {
    await producer.disconnect();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
