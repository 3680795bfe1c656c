"""Drop-in for LlamaMan 1.2.1: its records in our domain forms, handed to storage's imports."""
