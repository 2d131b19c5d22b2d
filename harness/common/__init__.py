"""What every stage shares: the one user-facing error type, file helpers, timestamps."""
