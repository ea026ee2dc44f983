"""The test rig: real servers the tests start (Jaeger v2, built from its Go module)."""
