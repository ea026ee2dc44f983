"""The payments service: authorizes payment for reserved orders, refunds cancelled ones."""
