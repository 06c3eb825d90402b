"""Models of the overdrafts app."""
