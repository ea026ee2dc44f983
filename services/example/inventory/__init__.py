"""The inventory service: reserves stock for orders, and releases it on cancellation."""
