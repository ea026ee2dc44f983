"""The orders service: owns orders, confirms or cancels them as the flow unfolds."""
