// Command place-order publishes one order.placed (version 2) to choreokit's
// "orders" topic with franz-go, in CloudEvents binary content mode, and prints
// the event's id.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kversion"
)

// OrderPlaced is the payload, as in schemas/order.placed/v2.json.
type OrderPlaced struct {
	OrderID    string      `json:"order_id"`
	CustomerID string      `json:"customer_id"`
	Lines      []OrderLine `json:"lines"`
	ShipTo     Address     `json:"ship_to"`
}

type OrderLine struct {
	SKU            string `json:"sku"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int    `json:"unit_price_cents"`
}

type Address struct {
	Country    string `json:"country"`
	PostalCode string `json:"postal_code"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "place-order:", err)
		os.Exit(1)
	}
}

func run() error {
	bootstrap := os.Getenv("CHOREO_KAFKA_BOOTSTRAP")
	if bootstrap == "" {
		bootstrap = "127.0.0.1:9092"
	}
	// franz-go's default partitioner hashes keys with Kafka's murmur2, as choreokit's
	// services do; the idempotent producer (with acks=all) is its default too.
	client, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(bootstrap, ",")...),
		kgo.ClientID("acme-fulfilment"),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// Speak at most the protocol of the Kafka you run (here 4.1). The embedded
		// broker needs this: it drops connections that send newer request fields.
		kgo.MaxVersions(kversion.V4_1_0()),
	)
	if err != nil {
		return err
	}
	defer client.Close()

	id := uuid.Must(uuid.NewV7()).String()
	value, err := json.Marshal(OrderPlaced{
		OrderID:    "o-5001",
		CustomerID: "c-23",
		Lines:      []OrderLine{{SKU: "SKU-6", Quantity: 3, UnitPriceCents: 850}},
		ShipTo:     Address{Country: "DE", PostalCode: "50667"},
	})
	if err != nil {
		return err
	}
	header := func(key, value string) kgo.RecordHeader {
		return kgo.RecordHeader{Key: key, Value: []byte(value)}
	}
	record := &kgo.Record{
		Topic: "orders",
		Key:   []byte(id), // the correlation id: this event starts a flow, so its own id
		Value: value,
		Headers: []kgo.RecordHeader{
			header("content-type", "application/json"),
			header("ce_specversion", "1.0"),
			header("ce_id", id),
			header("ce_source", "/partners/acme/fulfilment"),
			header("ce_type", "order.placed"),
			header("ce_dataversion", "2"),
			header("ce_time", time.Now().UTC().Format(time.RFC3339Nano)),
			header("ce_correlationid", id),
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := client.ProduceSync(ctx, record).FirstErr(); err != nil {
		return fmt.Errorf("not delivered: %w", err)
	}
	fmt.Println(id)
	return nil
}
