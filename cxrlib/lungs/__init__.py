"""lungs."""
