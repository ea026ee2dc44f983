"""The shipping service: orchestrates quote, label and pickup, then reports one outcome."""
