package com.example.acme;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import io.cloudevents.CloudEvent;
import io.cloudevents.core.builder.CloudEventBuilder;
import io.cloudevents.core.message.Encoding;
import io.cloudevents.jackson.JsonCloudEventData;
import io.cloudevents.kafka.CloudEventSerializer;
import java.net.URI;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.List;
import java.util.Properties;
import java.util.UUID;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

/** Publishes one order.placed (version 2) to the "orders" topic and prints its id. */
public final class PlaceOrder {
  /** The payload, as in schemas/order.placed/v2.json (field names in snake_case). */
  public record OrderPlaced(
      String orderId, String customerId, List<OrderLine> lines, Address shipTo) {}

  public record OrderLine(String sku, int quantity, int unitPriceCents) {}

  public record Address(String country, String postalCode) {}

  private static final ObjectMapper JSON =
      new ObjectMapper().setPropertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE);

  public static void main(String[] args) throws Exception {
    Properties config = new Properties();
    config.put(
        ProducerConfig.BOOTSTRAP_SERVERS_CONFIG,
        System.getenv().getOrDefault("CHOREO_KAFKA_BOOTSTRAP", "127.0.0.1:9092"));
    config.put(ProducerConfig.CLIENT_ID_CONFIG, "acme-erp");
    config.put(ProducerConfig.ACKS_CONFIG, "all");
    config.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
    // The client's default partitioner hashes the key with murmur2, as choreokit's services do.
    config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
    config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, CloudEventSerializer.class);
    // Binary content mode: the payload is the value, the attributes are ce_* headers.
    config.put(CloudEventSerializer.ENCODING_CONFIG, Encoding.BINARY);

    OrderPlaced order =
        new OrderPlaced(
            "o-4001",
            "c-17",
            List.of(new OrderLine("SKU-5", 2, 1999)),
            new Address("DE", "20095"));
    String id = UUID.randomUUID().toString();
    CloudEvent event =
        CloudEventBuilder.v1()
            .withId(id)
            .withSource(URI.create("/partners/acme/erp"))
            .withType("order.placed")
            .withTime(OffsetDateTime.now(ZoneOffset.UTC))
            .withExtension("dataversion", "2") // ce_dataversion: the schema's major version
            .withExtension("correlationid", id) // ce_correlationid: a new flow, its own id
            .withData("application/json", JsonCloudEventData.wrap(JSON.valueToTree(order)))
            .build();

    try (KafkaProducer<String, CloudEvent> producer = new KafkaProducer<>(config)) {
      // The key is the correlation id; get() waits for the broker's acknowledgement.
      producer.send(new ProducerRecord<>("orders", id, event)).get();
    }
    System.out.println(id);
  }
}
